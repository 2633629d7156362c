"""Wall clock from command start to a solved task, compile included: rlax_inf vs brax.training.

  python -m benchmarks.time_to_solve [--quick] [--sides ours-sac,brax-sac,...]
                                     [--cache cold|warm|both] [--repeats R]

Each side runs in its own fresh Python process (a cold start: imports, env
construction, compiling and training all count). The clock starts when the
parent launches the process and stops at the end of the evaluation at which
the last seed first reaches the target with its deterministic eval return
(each seed counts from its first hit, the same on both sides); the child then
exits. Ours trains the seeds vmapped in one program; brax.training trains
one seed per `train` call, so its S seeds run one after another in the same
process and its time is the sum (each call compiles again: brax builds its
programs inside `train`).

Cache modes: `cold` gives each process an empty persistent XLA compilation
cache (nothing compiled before); `warm` points both sides at a cache that a
previous identical run filled (JAX's own persistent cache, which brax.training
can use as well as we can), so it measures a second run of the same command.

Settings per side are in `SIDES`; both SAC sides share the network, batch,
update-to-data ratio, envs, prefill, evaluation interval and eval envs unless a
side's entry says otherwise. `--set KEY=JSON` overrides a setting of every side:
`critic_layer_norm` (both SAC sides: ours' `SACConfig.critic_layer_norm`, brax's
`q_network_layer_norm`), `devices` (host devices for both), `first_seed`,
`eval_stochastic` (ours only: false scores only the deterministic policy, as
brax.training's evaluator with `deterministic_eval=True` always does; true, the
default, also samples on as many more envs) and `fast_compile` (ours only;
brax.training gets XLA options only from `XLA_FLAGS`, which both sides inherit and
each record keeps). `--side-set SIDE:KEY=JSON` overrides a setting of one side only,
after `--set` (each side at its own best settings in one paired run). Each invocation writes
runs/time_to_solve/NAME.{json,md,png} (`--out NAME`, default a time stamp);
benchmarks/results/time_to_solve.md is the committed reading of such runs.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from benchmarks import _common

RESULTS = "time_to_solve"

# The small settings (the main job's shape): 16 envs, 64×64, batch 256,
# 16 updates per vector step, prefill 2048, generalized backend; evaluation every
# 2048 env steps on 16 envs (a multiple of 16 envs so both sides evaluate at the
# same env steps).
COMMON = dict(env="inverted_pendulum", backend="generalized", target=950.0, seeds=4,
              max_steps=50_000, num_envs=16, hidden=(64, 64), batch_size=256,
              grad_updates_per_step=16, prefill=2048, eval_every=2048, num_eval_envs=16,
              episode_length=1000, learning_rate=3e-4, polyak=0.005,
              critic_layer_norm=False, fast_compile=True, first_seed=0,
              eval_stochastic=True)

SIDES: Dict[str, Dict[str, Any]] = {
    "ours-sac": dict(kind="ours", agent="sac"),
    "ours-sac-fkl": dict(kind="ours", agent="sac-fkl"),
    # klpg at the settings of its own benchmark (benchmarks/klpg.py's inverted_pendulum).
    "ours-klpg": dict(kind="ours", agent="klpg", num_envs=128, eval_every=20_480,
                      max_steps=400_000, agent_sets=dict(hidden=(64, 64), reward_scale=0.1,
                                                         temperature=0.05, policy_lr=1e-4)),
    "brax-sac": dict(kind="brax-sac"),
    "brax-ppo": dict(kind="brax-ppo", num_envs=128, eval_every=20_480, max_steps=400_000),
}

# CI size: every side on a tiny budget with no target (solved at its first
# evaluation); ours on the pure-JAX pendulum, brax.training's on Brax.
QUICK = dict(max_steps=1024, prefill=256, eval_every=512, num_eval_envs=2, episode_length=50,
             seeds=2, target=-float("inf"), hidden=(16, 16), grad_updates_per_step=2)
QUICK_OURS_ENV = dict(env="pendulum", backend=None)


def _spec(side: str, quick: bool, overrides: Dict[str, Any],
          side_overrides: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[str, Any]:
  spec = dict(COMMON)
  spec.update({k: v for k, v in SIDES[side].items()})
  spec.update(overrides)
  spec.update((side_overrides or {}).get(side, {}))
  if quick:
    spec.update(QUICK)
    if spec["kind"] in ("brax-ppo",) or spec.get("agent") == "klpg":
      spec.update(num_envs=16, eval_every=512, max_steps=1024)
    if spec["kind"] == "ours":
      spec.update(QUICK_OURS_ENV)
  spec["side"] = side
  return spec


# --- children: one process per side ------------------------------------------

def _emit(record: Dict[str, Any]) -> None:
  print("TTS " + json.dumps(record), flush=True)


def _child_ours(spec: Dict[str, Any], t0: float) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import registry, training  # pylint: disable=g-import-not-at-top
  import dataclasses  # pylint: disable=g-import-not-at-top
  entry = registry.get(spec["agent"])
  agent_sets = dict(hidden=tuple(spec["hidden"]))
  if spec["agent"] in ("sac", "sac-fkl"):
    lr = spec["learning_rate"]
    agent_sets.update(actor_lr=lr, critic_lr=lr, alpha_lr=lr, polyak=spec["polyak"],
                      critic_layer_norm=spec["critic_layer_norm"])
  agent_sets.update(spec.get("agent_sets", {}))
  agent_cfg = dataclasses.replace(entry.config, **agent_sets)
  cfg = training.TrainConfig(
      env=spec["env"], backend=spec["backend"], num_seeds=spec["seeds"], seed=spec["first_seed"],
      total_steps=spec["max_steps"], num_envs=spec["num_envs"], batch_size=spec["batch_size"],
      grad_updates_per_step=spec["grad_updates_per_step"], prefill_steps=spec["prefill"],
      eval_every=spec["eval_every"], num_eval_envs=spec["num_eval_envs"],
      episode_length=spec["episode_length"], fresh_resets=spec.get("fresh_resets", False),
      num_devices=spec.get("devices", 1), fast_compile=spec["fast_compile"],
      eval_stochastic=spec["eval_stochastic"], **spec.get("loop_sets", {}))
  trainer = training.Trainer(cfg, agent_cfg, spec["agent"])
  trainer.compile()  # init and interval side by side, as the CLI does
  ts = trainer.init(trainer.seed_keys())
  steps = None
  hit = np.zeros(spec["seeds"], bool)
  for i in range(trainer.schedule.num_intervals):
    ts, m = trainer.run_interval(ts)
    ret = np.asarray(jax.device_get(m["eval_return"]))
    steps = int(np.asarray(jax.device_get(ts.env_steps))[0])
    hit |= ret >= spec["target"]
    _emit(dict(event="eval", t=time.time() - t0, env_steps=steps, returns=ret.tolist(),
               interval=i))
    # Solved as brax.training's side is: every seed has reached the target at one of
    # its evaluations (brax trains its seeds one after another, each until it hits).
    if np.all(hit):
      _emit(dict(event="solved", t=time.time() - t0, env_steps=steps,
                 all_at_once=bool(np.all(ret >= spec["target"]))))
      return
  _emit(dict(event="unsolved", t=time.time() - t0, env_steps=steps))


class _Solved(Exception):
  pass


def _child_brax(spec: Dict[str, Any], t0: float) -> None:
  import functools  # pylint: disable=g-import-not-at-top
  from benchmarks import sac as sac_bench  # pylint: disable=g-import-not-at-top
  sac_bench._install_brax_shim()  # pylint: disable=protected-access
  from brax import envs as brax_envs  # pylint: disable=g-import-not-at-top
  env = brax_envs.get_environment(spec["env"], backend=spec["backend"])
  solved_all = True
  last_steps = 0
  for seed in range(spec["first_seed"], spec["first_seed"] + spec["seeds"]):
    def progress(step, metrics, seed=seed):
      nonlocal last_steps
      if "eval/episode_reward" not in metrics:
        return
      ret = float(metrics["eval/episode_reward"])
      last_steps = int(step)
      # brax.training's own training env steps/s (its evaluations excluded).
      sps = metrics.get("training/sps")
      _emit(dict(event="eval", t=time.time() - t0, env_steps=int(step), returns=[ret],
                 seed=seed, sps=None if sps is None else float(sps)))
      if step > 0 and ret >= spec["target"]:
        raise _Solved()

    num_evals = max(spec["max_steps"] // spec["eval_every"], 1) + 1
    try:
      if spec["kind"] == "brax-sac":
        from brax.training.agents.sac import networks as nets  # pylint: disable=g-import-not-at-top
        from brax.training.agents.sac import train as sac_train  # pylint: disable=g-import-not-at-top
        sac_train.train(
            environment=env, num_timesteps=spec["max_steps"],
            episode_length=spec["episode_length"], num_envs=spec["num_envs"],
            num_eval_envs=spec["num_eval_envs"], learning_rate=spec["learning_rate"],
            discounting=0.99,
            seed=seed, batch_size=spec["batch_size"], num_evals=num_evals,
            normalize_observations=True, min_replay_size=spec["prefill"],
            max_replay_size=spec["max_steps"], tau=spec["polyak"],
            grad_updates_per_step=spec["grad_updates_per_step"], deterministic_eval=True,
            network_factory=functools.partial(
                nets.make_sac_networks, hidden_layer_sizes=tuple(spec["hidden"]),
                q_network_layer_norm=spec["critic_layer_norm"]),
            progress_fn=progress)
      else:
        from brax.training.agents.ppo import networks as nets  # pylint: disable=g-import-not-at-top
        from brax.training.agents.ppo import train as ppo_train  # pylint: disable=g-import-not-at-top
        ppo_train.train(
            environment=env, num_timesteps=spec["max_steps"],
            episode_length=spec["episode_length"], num_envs=spec["num_envs"],
            num_eval_envs=spec["num_eval_envs"], learning_rate=spec["learning_rate"],
            discounting=0.97,
            entropy_cost=1e-2, unroll_length=spec.get("unroll_length", 5),
            batch_size=spec.get("ppo_batch_size", 64),
            num_minibatches=spec.get("num_minibatches", 4),
            num_updates_per_batch=spec.get("num_updates_per_batch", 4),
            reward_scaling=spec.get("reward_scaling", 10.0),
            normalize_observations=True, seed=seed, num_evals=num_evals,
            deterministic_eval=True,
            network_factory=functools.partial(
                nets.make_ppo_networks, policy_hidden_layer_sizes=tuple(spec["hidden"]),
                value_hidden_layer_sizes=tuple(spec["hidden"])),
            progress_fn=progress)
      solved_all = False
      break
    except _Solved:
      continue
  if solved_all:
    _emit(dict(event="solved", t=time.time() - t0, env_steps=last_steps))
  else:
    _emit(dict(event="unsolved", t=time.time() - t0, env_steps=last_steps))


def child(argv: List[str]) -> int:
  spec = json.loads(argv[0])
  t0 = float(argv[1])
  if spec["kind"] == "ours":
    _child_ours(spec, t0)
  else:
    _child_brax(spec, t0)
  return 0


# --- parent --------------------------------------------------------------------

def run_side(spec: Dict[str, Any], cache_dir: str) -> Dict[str, Any]:
  """Launches one side in a fresh process; its records and wall/CPU seconds."""
  before = os.times()
  proc, wall, _ = _common.run_child("benchmarks.time_to_solve", ["--child", json.dumps(spec)],
                                    cache_dir, spec.get("devices", 1))
  after = os.times()
  records = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("TTS ")]
  if proc.returncode != 0:
    raise RuntimeError(f"{spec['side']} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
  end = records[-1] if records else dict(event="unsolved", t=wall, env_steps=0)
  return dict(side=spec["side"], spec=spec, solved=end["event"] == "solved",
              t_solved=end["t"] if end["event"] == "solved" else None,
              env_steps=end["env_steps"], process_wall_s=wall,
              process_cpu_s=(after.children_user - before.children_user)
              + (after.children_system - before.children_system),
              evals=[r for r in records if r["event"] == "eval"])


def _plot(results: List[Dict[str, Any]], path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4))
  for r in results:
    if not r["evals"]:
      continue
    t = [e["t"] for e in r["evals"]]
    y = [min(e["returns"]) for e in r["evals"]]
    ax.plot(t, y, marker=".", label=f"{r['side']} ({r['cache']})")
  ax.axhline(results[0]["spec"]["target"], color="k", lw=0.5, ls="--")
  ax.set_xlabel("seconds since command start (compile included)")
  ax.set_ylabel("eval return (min over the seeds of the current run)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _setting(text: str) -> Tuple[str, Any]:
  """(KEY, value) of a `KEY=JSON` setting (`--set`, `--side-set`); ValueError if not one."""
  key, eq, value = text.partition("=")
  if not key or not eq:
    raise ValueError(f"{text!r} is not KEY=JSON")
  return key, json.loads(value)


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv and argv[0] == "--child":
    return child(argv[1:])
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="CI size: tiny budget, no target")
  p.add_argument("--sides", default=None,
                 help=f"comma-separated, of {', '.join(SIDES)}")
  p.add_argument("--cache", choices=("cold", "warm", "both"), default="cold")
  p.add_argument("--repeats", type=int, default=1)
  p.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                 help="override a setting of every side, e.g. --set grad_updates_per_step=8")
  p.add_argument("--side-set", action="append", default=[], metavar="SIDE:KEY=JSON",
                 help="override a setting of one side, after --set, "
                      "e.g. --side-set brax-sac:batch_size=128")
  p.add_argument("--out", default=None,
                 help="name of the runs/time_to_solve/NAME.* files (default: a time stamp)")
  args = p.parse_args(argv)
  sides = [s for s in (args.sides or ("ours-sac" if args.quick else "ours-sac,brax-sac")
                       ).split(",") if s]
  unknown = [s for s in sides if s not in SIDES]
  if unknown:
    print(f"time_to_solve: error: unknown side(s) {unknown}; known: {', '.join(SIDES)}",
          file=sys.stderr)
    return 2
  if args.repeats < 1:
    print("time_to_solve: error: --repeats must be >= 1", file=sys.stderr)
    return 2
  try:
    overrides = dict(_setting(s) for s in args.set)
  except ValueError as e:
    print(f"time_to_solve: error: bad --set ({e}); use KEY=JSON", file=sys.stderr)
    return 2
  side_overrides: Dict[str, Dict[str, Any]] = {}
  for item in args.side_set:
    side, _, setting = item.partition(":")
    try:
      if side not in sides:
        raise ValueError(f"SIDE must be one of --sides ({', '.join(sides)})")
      key, value = _setting(setting)
    except ValueError as e:
      print(f"time_to_solve: error: bad --side-set {item!r} ({e}); use SIDE:KEY=JSON",
            file=sys.stderr)
      return 2
    side_overrides.setdefault(side, {})[key] = value
  modes = ["cold", "warm"] if args.cache == "both" else [args.cache]
  results = []
  for rep in range(args.repeats):
    for side in sides:
      spec = _spec(side, args.quick, overrides, side_overrides)
      cache = tempfile.mkdtemp(prefix="tts_cache_")
      try:
        for mode in ("cold", "warm"):
          if mode == "warm" and "warm" not in modes:
            break
          try:
            r = run_side(spec, cache)
          except RuntimeError as e:  # one side failing keeps the others' records
            print(f"{side:14s} {mode:5s} rep {rep}: FAILED ({str(e).splitlines()[-1]})",
                  flush=True)
            results.append(dict(side=side, spec=spec, solved=False, t_solved=None,
                                env_steps=0, process_wall_s=None, process_cpu_s=0.0,
                                evals=[], cache=mode, repeat=rep, error=str(e)[-2000:]))
            break
          if mode in modes:
            r.update(cache=mode, repeat=rep)
            results.append(r)
            t = f"{r['t_solved']:.1f} s" if r["solved"] else "not solved"
            print(f"{side:14s} {mode:5s} rep {rep}: {t} at {r['env_steps']} env steps "
                  f"(process {r['process_wall_s']:.1f} s wall, {r['process_cpu_s']:.0f} CPU s)",
                  flush=True)
      finally:
        shutil.rmtree(cache, ignore_errors=True)
  if args.quick and args.out is None:
    print(f"quick: {len(results)} runs finished")
    return 0
  # Each invocation writes runs/time_to_solve/NAME.{json,md,png} (not committed);
  # benchmarks/results/time_to_solve.md is the curated reading of such runs.
  name = args.out or time.strftime("%Y%m%d-%H%M%S")
  out_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runs",
                         RESULTS)
  os.makedirs(out_dir, exist_ok=True)
  payload = dict(command=_common.command(), machine=_common.machine(),
                 xla_flags=os.environ.get("XLA_FLAGS", ""), results=results)
  md = _markdown(payload)
  with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
    json.dump(payload, f, indent=1)
  with open(os.path.join(out_dir, f"{name}.md"), "w") as f:
    f.write(md)
  _plot(results, os.path.join(out_dir, f"{name}.png"))
  print(f"written: {os.path.join(out_dir, name)}.{{json,md,png}}")
  print(md.splitlines()[-1])
  return 0


def _median(xs):
  xs = [x for x in xs if x is not None]
  return float(np.median(xs)) if xs else None


def _markdown(payload: Dict[str, Any]) -> str:
  rows = ["| side | cache | runs | solved | median s to solve | env steps at solve | "
          "process CPU s |", "|---|---|---|---|---|---|---|"]
  by = {}
  for r in payload["results"]:
    by.setdefault((r["side"], r["cache"]), []).append(r)
  for (side, cache), rs in by.items():
    t = _median([r["t_solved"] for r in rs])
    rows.append(f"| {side} | {cache} | {len(rs)} | {sum(r['solved'] for r in rs)}/{len(rs)} | "
                f"{'—' if t is None else f'{t:.1f}'} | "
                f"{', '.join(str(r['env_steps']) for r in rs)} | "
                f"{', '.join('%.0f' % r['process_cpu_s'] for r in rs)} |")
  head = [f"# Time to solve", "", f"Command: `{payload['command']}`", "",
          f"Machine: {payload['machine']}", ""]
  ratio = []
  for cache in ("cold", "warm"):  # every side of ours against every side of brax.training
    medians = {side: _median([r["t_solved"] for r in rs])
               for (side, c), rs in by.items() if c == cache}
    for o, to in medians.items():
      for b, tb in medians.items():
        if o.startswith("ours-") and b.startswith("brax-") and to and tb:
          ratio.append(f"{cache}: {o} / {b} = {to / tb:.2f}")
  return "\n".join(head + rows + ["", "Headline: " + ("; ".join(ratio) or "no ratio")]) + "\n"


if __name__ == "__main__":
  sys.exit(main())
