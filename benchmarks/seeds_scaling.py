"""Multi-seed scaling: S seeds vmapped in one program vs S sequential runs, and seeds over devices.

  python -m benchmarks.seeds_scaling [--quick] [--seeds 1,2,4,8,16] [--devices 1,2,4]

Every run is a fresh Python process timed from launch to exit (imports,
compiling, training and evaluation included), SAC at the time-to-solve
settings (benchmarks/time_to_solve.py: inverted_pendulum, generalized backend,
16 envs per seed, 64×64, batch 256, 16 updates per vector step, prefill 2048)
for a fixed budget of env steps per seed.

* vmapped: one process trains seeds 0..S−1 in one program (`num_seeds=S`),
  with an empty persistent compilation cache (cold).
* sequential: S processes, one per seed, one after another, as a user would
  run `rlax-inf train --seed i` in a loop: the first compiles (cold cache), the
  later ones read the programs from the persistent cache the first filled (the
  CLI's default). Seed i of a vmapped run computes exactly what the single run
  with seed i computes, so both do the same work. The S = 16 sequential time
  is measured for the first `--max-sequential` runs and the rest added at the
  mean of the warm ones measured (the table says so).
* devices: S seeds sharded over D host devices
  (`--xla_force_host_platform_device_count=D`, `num_devices=D`).

The table gives wall time and its ratio to sequential, and training env steps/s
after compile (all seeds together) with its efficiency: env steps/s at S over
S × env steps/s at S = 1 (1.0 = each seed as fast as a run alone; on a fixed
machine vmapping gains wherever this exceeds 1 / S). Results:
benchmarks/results/seeds_scaling.{json,md,png}; the md keeps its hand-written
reading (from `_common.READING_MARK` on) when rewritten. The headline is printed last.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List

import numpy as np

from benchmarks import _common

RESULTS = "seeds_scaling"

SETTINGS = dict(env="inverted_pendulum", backend="generalized", num_envs=16, hidden=(64, 64),
                batch_size=256, grad_updates_per_step=16, prefill=2048, eval_every=2048,
                num_eval_envs=16, episode_length=1000, steps=2048 + 2 * 2048)
QUICK = dict(env="pendulum", backend=None, hidden=(16, 16), grad_updates_per_step=2,
             prefill=256, eval_every=256, num_eval_envs=2, episode_length=50, steps=768)


def _child(spec: Dict[str, Any], t0: float) -> None:
  import dataclasses  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import registry, training  # pylint: disable=g-import-not-at-top
  entry = registry.get("sac")
  cfg = training.TrainConfig(
      env=spec["env"], backend=spec["backend"], num_seeds=spec["num_seeds"], seed=spec["seed"],
      total_steps=spec["steps"], num_envs=spec["num_envs"], batch_size=spec["batch_size"],
      grad_updates_per_step=spec["grad_updates_per_step"], prefill_steps=spec["prefill"],
      eval_every=spec["eval_every"], num_eval_envs=spec["num_eval_envs"],
      episode_length=spec["episode_length"], fresh_resets=False, num_devices=spec["devices"])
  trainer = training.Trainer(cfg, dataclasses.replace(entry.config, hidden=tuple(spec["hidden"])),
                             "sac")
  trainer.compile()
  t_compiled = time.time() - t0
  ts = trainer.init(trainer.seed_keys())
  jax.block_until_ready(ts)
  intervals, returns = [], []
  for _ in range(trainer.schedule.num_intervals):
    t = time.time()
    ts, m = trainer.run_interval(ts)
    returns.append(np.asarray(jax.device_get(m["eval_return"])).tolist())
    intervals.append(time.time() - t)
  print("SCALING " + json.dumps(dict(
      compiled_s=t_compiled, intervals_s=intervals, returns=returns,
      interval_env_steps=trainer.env_steps_per_interval * spec["num_seeds"],
      devices=len(trainer.mesh.devices.flat))), flush=True)


def run(spec: Dict[str, Any], cache_dir: str) -> Dict[str, Any]:
  """One fresh process; its wall seconds from launch to exit and the child's record."""
  proc, wall, _ = _common.run_child("benchmarks.seeds_scaling", ["--child", json.dumps(spec)],
                                    cache_dir, spec["devices"])
  if proc.returncode != 0:
    raise RuntimeError(f"run {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
  rec = [json.loads(l[8:]) for l in proc.stdout.splitlines() if l.startswith("SCALING ")][-1]
  # env steps/s of training after compile: the intervals after the first (the first
  # also pays the first-call dispatch), all seeds together.
  later = rec["intervals_s"][1:] or rec["intervals_s"]
  rec.update(wall_s=wall, env_steps_per_s=rec["interval_env_steps"] * len(later) / sum(later),
             spec=spec)
  return rec


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv and argv[0] == "--child":
    _child(json.loads(argv[1]), float(argv[2]))
    return 0
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="CI size: pure-JAX pendulum, S ≤ 2")
  p.add_argument("--seeds", default=None, help="comma-separated S (default 1,2,4,8,16)")
  p.add_argument("--devices", default=None, help="comma-separated D for the sharding runs")
  p.add_argument("--device-seeds", type=int, default=4, help="S of the sharding runs")
  p.add_argument("--max-sequential", type=int, default=8,
                 help="sequential runs measured; more are added at the measured warm mean")
  p.add_argument("--name", default=RESULTS,
                 help="results file name in benchmarks/results (e.g. seeds_scaling_gpu)")
  args = p.parse_args(argv)
  try:
    seeds = [int(s) for s in (args.seeds or ("1,2" if args.quick else "1,2,4,8,16")).split(",")]
    devices = [int(d) for d in (args.devices or ("1,2" if args.quick else "1,2,4")).split(",")]
  except ValueError as e:
    print(f"seeds_scaling: error: --seeds/--devices take comma-separated integers ({e})",
          file=sys.stderr)
    return 2
  if min(seeds) < 1 or min(devices) < 1 or args.max_sequential < 2:
    print("seeds_scaling: error: seeds and devices must be >= 1, --max-sequential >= 2",
          file=sys.stderr)
    return 2
  if args.device_seeds % max(devices):
    print(f"seeds_scaling: error: --device-seeds {args.device_seeds} must be divisible by "
          f"every device count {devices}", file=sys.stderr)
    return 2
  base = dict(SETTINGS, **(QUICK if args.quick else {}))

  def spec(num_seeds, seed=0, devices_=1):
    return dict(base, num_seeds=num_seeds, seed=seed, devices=devices_)

  def fresh_cache():
    return tempfile.mkdtemp(prefix="seeds_scaling_")

  caches = []
  try:
    # Sequential single-seed runs sharing one cache: seed 0 cold, then warm.
    caches.append(fresh_cache())
    n_seq = min(max(seeds), args.max_sequential)
    single = []
    for i in range(n_seq):
      r = run(spec(1, seed=i), caches[-1])
      single.append(r)
      print(f"single seed {i}: {r['wall_s']:.1f} s ({'cold' if i == 0 else 'warm cache'})",
            flush=True)
    warm_mean = float(np.mean([r["wall_s"] for r in single[1:]]))
    vmapped = {}
    for s in seeds:
      caches.append(fresh_cache())
      vmapped[s] = run(spec(s), caches[-1])
      print(f"vmapped S={s}: {vmapped[s]['wall_s']:.1f} s, "
            f"{vmapped[s]['env_steps_per_s']:.0f} env steps/s", flush=True)
    sharded = {}
    for d in devices:
      if d == 1 and args.device_seeds in vmapped:  # the same run as vmapped S
        sharded[d] = vmapped[args.device_seeds]
        continue
      caches.append(fresh_cache())
      sharded[d] = run(spec(args.device_seeds, devices_=d), caches[-1])
      print(f"S={args.device_seeds} over {d} devices: {sharded[d]['wall_s']:.1f} s, "
            f"{sharded[d]['env_steps_per_s']:.0f} env steps/s", flush=True)
  finally:
    for c in caches:
      shutil.rmtree(c, ignore_errors=True)

  rows = []
  for s in seeds:
    measured = [r["wall_s"] for r in single[:s]]
    seq = sum(measured) + max(s - len(measured), 0) * warm_mean
    seq_cold = s * single[0]["wall_s"]
    v = vmapped[s]
    rows.append(dict(seeds=s, vmapped_wall_s=v["wall_s"], vmapped_compiled_s=v["compiled_s"],
                     vmapped_env_steps_per_s=v["env_steps_per_s"], sequential_wall_s=seq,
                     sequential_measured_runs=min(s, len(measured)),
                     sequential_all_cold_s=seq_cold, ratio=v["wall_s"] / seq,
                     efficiency=v["env_steps_per_s"] / (s * vmapped[min(seeds)]["env_steps_per_s"]
                                                         / min(seeds)),
                     ratio_all_cold=v["wall_s"] / seq_cold))
  payload = dict(command=_common.command(), machine=_common.machine(), settings=base,
                 single=single, vmapped={str(k): v for k, v in vmapped.items()},
                 sharded={str(k): v for k, v in sharded.items()}, rows=rows,
                 device_seeds=args.device_seeds)
  if args.quick:
    print(f"quick: {len(rows)} scaling rows, {len(sharded)} device rows")
    return 0
  md = _markdown(payload)
  _common.write_results(args.name, payload, md, keep_reading=True)
  _plot(payload, os.path.join(_common.RESULTS_DIR, f"{args.name}.png"))
  print(md.strip().splitlines()[-1])
  return 0


def _markdown(payload: Dict[str, Any]) -> str:
  lines = ["# Multi-seed scaling: vmapped seeds vs sequential runs", "",
           f"Command: `{payload['command']}`", "", f"Machine: {payload['machine']}", "",
           f"Settings: {payload['settings']}", "",
           "| S | vmapped wall s | of which to compiled s | vmapped env steps/s (all seeds) | "
           "efficiency | "
           "sequential wall s (runs measured) | vmapped / sequential | "
           "sequential, every run cold, s | vmapped / that |", "|---|---|---|---|---|---|---|---|---|"]
  for r in payload["rows"]:
    lines.append(
        f"| {r['seeds']} | {r['vmapped_wall_s']:.1f} | {r['vmapped_compiled_s']:.1f} | "
        f"{r['vmapped_env_steps_per_s']:.0f} | {r['efficiency']:.2f} | "
        f"{r['sequential_wall_s']:.1f} "
        f"({r['sequential_measured_runs']}) | {r['ratio']:.2f} | "
        f"{r['sequential_all_cold_s']:.1f} | {r['ratio_all_cold']:.2f} |")
  lines += ["", f"Seeds over host devices (S = {payload['device_seeds']}):", "",
            "| devices | wall s | of which to compiled s | env steps/s (all seeds) |",
            "|---|---|---|---|"]
  for d, r in payload["sharded"].items():
    lines.append(f"| {d} | {r['wall_s']:.1f} | {r['compiled_s']:.1f} | "
                 f"{r['env_steps_per_s']:.0f} |")
  eight = [r for r in payload["rows"] if r["seeds"] == 8]
  head = (f"8 vmapped seeds took {eight[0]['ratio']:.2f}× the wall time of 8 sequential runs "
          f"(target ≤ 0.6)" if eight else "no S = 8 row")
  return "\n".join(lines + ["", "Headline: " + head]) + "\n"


def _plot(payload: Dict[str, Any], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = payload["rows"]
  s = [r["seeds"] for r in rows]
  fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
  a.plot(s, [r["vmapped_wall_s"] for r in rows], "o-", label="vmapped (one process)")
  a.plot(s, [r["sequential_wall_s"] for r in rows], "s-", label="sequential (cache warm after 1)")
  a.plot(s, [r["sequential_all_cold_s"] for r in rows], "^--", label="sequential, all cold")
  a.set_xscale("log", base=2)
  a.set_xlabel("seeds S")
  a.set_ylabel("wall s, launch to exit")
  a.legend(fontsize=7)
  b.plot(s, [r["vmapped_env_steps_per_s"] for r in rows], "o-")
  b.set_xscale("log", base=2)
  b.set_xlabel("seeds S")
  b.set_ylabel("training env steps/s, all seeds")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  sys.exit(main())
