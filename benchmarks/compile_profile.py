"""Where a run's start-up goes, per set of XLA compile options: trace, compile, run.

  python -m benchmarks.compile_profile [--quick] [--env hopper --backend positional]
      [--options '{}' '{"xla_cpu_use_fusion_emitters": false}' ...]

For each set of options, in a fresh process (no persistent compilation cache),
SAC at the time-to-solve settings (4 seeds, 16 envs per seed, 64×64, batch 128,
τ 0.02, 16 updates per vector step, prefill 2048, evaluation every 2048 env
steps; benchmarks/time_to_solve.py row 6) is built with
`training.Trainer(..., compiler_options=OPTIONS)`, and the script times tracing
(`lower`) and compiling of the init and interval programs one after the other,
the init run and two intervals. Then, in the same process, the two parts the
programs are made of, each jitted with the same options: a scan of 64 SAC
updates (batch 256, 11 observations, 3 actions; 64×64 and 256×256) and a
200-step rollout of 64 envs of the task with random actions (compile s and env
steps/s). `{}` is XLA's own; `training.FAST_COMPILE_OPTIONS` is the Trainer's
default (`TrainConfig.fast_compile`). Results:
benchmarks/results/compile_profile_<env>.{json,md}.
"""

import argparse
import json
import sys
import tempfile
import time
from typing import Any, Dict, List

from benchmarks import _common

NAME = "compile_profile"
FULL = dict(env="inverted_pendulum", backend="generalized", seeds=4, num_envs=16,
            hidden=(64, 64), batch_size=128, polyak=0.02, updates=16, prefill=2048,
            eval_every=2048, num_eval_envs=16, episode_length=1000, micro_updates=64,
            micro_hidden=((64, 64), (256, 256)), rollout_envs=64, rollout_steps=200)
QUICK = dict(env="pendulum", backend=None, seeds=2, num_envs=4, hidden=(16, 16),
             batch_size=32, updates=2, prefill=64, eval_every=64, num_eval_envs=2,
             episode_length=50, micro_updates=4, micro_hidden=((16, 16),), rollout_envs=4,
             rollout_steps=10)


def _child(spec: Dict[str, Any], options: Dict[str, Any]) -> Dict[str, Any]:
  """Every figure for one set of options (run in its own process)."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rlax_inf import envs  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import base, registry, sac, training  # pylint: disable=g-import-not-at-top
  out: Dict[str, Any] = {}

  def timed(key, fn):
    t = time.perf_counter()
    value = fn()
    jax.block_until_ready(value)
    out[key] = round(time.perf_counter() - t, 2)
    return value

  acfg = dataclasses.replace(registry.get("sac").config, hidden=tuple(spec["hidden"]),
                             polyak=spec["polyak"])
  cfg = training.TrainConfig(
      env=spec["env"], backend=spec["backend"], num_seeds=spec["seeds"],
      total_steps=spec["prefill"] + 2 * spec["eval_every"], num_envs=spec["num_envs"],
      batch_size=spec["batch_size"], grad_updates_per_step=spec["updates"],
      prefill_steps=spec["prefill"], eval_every=spec["eval_every"],
      num_eval_envs=spec["num_eval_envs"], episode_length=spec["episode_length"],
      fresh_resets=False, num_devices=1)
  trainer = training.Trainer(cfg, acfg, "sac", compiler_options=options)
  keys = trainer.seed_keys()
  lowered = timed("trace_init_s", lambda: trainer.init.lower(keys))
  init = timed("compile_init_s", lowered.compile)
  lowered = timed("trace_interval_s", lambda: trainer.run_interval.lower(trainer.abstract_state()))
  interval = timed("compile_interval_s", lowered.compile)
  ts = timed("run_init_s", lambda: init(keys))
  returns = []
  for i in range(2):
    ts, metrics = timed(f"run_interval{i}_s", lambda ts=ts: interval(ts))
    returns.append(np.asarray(metrics["eval_return"]).round(1).tolist())
  out["eval_returns"] = returns

  def jit(f):
    return jax.jit(f, compiler_options=options or None)

  k, b = spec["micro_updates"], 256
  ks = jax.random.split(jax.random.PRNGKey(1), 4)
  batch = base.Transition(
      obs=jax.random.normal(ks[0], (k, b, 11)),
      action=jnp.tanh(jax.random.normal(ks[1], (k, b, 3))),
      reward=jax.random.normal(ks[2], (k, b)), terminated=jnp.zeros((k, b)),
      done=jnp.zeros((k, b)), next_obs=jax.random.normal(ks[3], (k, b, 11)))
  spec_11_3 = types.SimpleNamespace(observation_size=11, action_size=3, discrete=False,
                                    name="profile")
  for hidden in spec["micro_hidden"]:
    agent = sac.make(sac.SACConfig(hidden=tuple(hidden)), spec_11_3)
    state = agent.init(ks[0])
    scan = jit(lambda s, bs, agent=agent: jax.lax.scan(lambda c, x: agent.update(c, *x), s, bs))
    run = lambda scan=scan, state=state: scan(state, (batch, jax.random.split(ks[0], k)))
    t = _common.time_interleaved({"u": run}, repeats=5, warmup=1)["u"]["min_s"]
    out[f"update_{hidden[0]}x{hidden[1]}_ms"] = round(1e3 * t / k, 3)

  env = envs.make(spec["env"], backend=spec["backend"], episode_length=spec["episode_length"])
  n, steps = spec["rollout_envs"], spec["rollout_steps"]

  def rollout(key):
    state = jax.vmap(env.reset)(jax.random.split(key, n))
    def body(s, k):
      a = jax.random.uniform(k, (n, env.spec.action_size), minval=-1.0, maxval=1.0)
      return jax.vmap(env.step)(s, a), None
    return jax.lax.scan(body, state, jax.random.split(key, steps))[0].obs

  key = jax.random.PRNGKey(0)
  compiled = timed("compile_rollout_s", lambda: jit(rollout).lower(key).compile())
  t = _common.time_interleaved({"r": lambda: compiled(key)}, repeats=3, warmup=1)["r"]["min_s"]
  out["rollout_env_steps_per_s"] = round(n * steps / t)
  return out


def _markdown(payload: Dict[str, Any]) -> str:
  rows = payload["rows"]
  cols = [k for k in rows[0]["result"] if k != "eval_returns"]
  lines = [f"# Compile profile: {payload['spec']['env']} ({payload['spec']['backend']})", "",
           f"Command: `{payload['command']}`", "",
           f"Machine: {payload['machine']['cpu']}, {payload['machine']['cores']} cores, "
           f"jax {payload['machine']['jax']}, backend {payload['machine']['backend']}. "
           "Each row is a fresh process, one after another; seconds unless named.", "",
           "| options | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
  for r in rows:
    lines.append(f"| `{json.dumps(r['options'])}` | "
                 + " | ".join(str(r["result"][c]) for c in cols) + " |")
  base, *others = rows
  lines.append("")
  for r in others:
    ratio = ((r["result"]["compile_init_s"] + r["result"]["compile_interval_s"])
             / (base["result"]["compile_init_s"] + base["result"]["compile_interval_s"]))
    lines.append(f"Compile (init + interval) with `{json.dumps(r['options'])}`: "
                 f"{ratio:.2f}x of `{json.dumps(base['options'])}`.")
  return "\n".join(lines) + "\n"


def main(argv: List[str] = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if argv and argv[0] == "--child":
    result = _child(json.loads(argv[1]), json.loads(argv[2]))
    print("PROFILE " + json.dumps(result), flush=True)
    return 0
  p = argparse.ArgumentParser(prog="python -m benchmarks.compile_profile",
                              description=__doc__.split("\n", 1)[0])
  p.add_argument("--quick", action="store_true", help="CI size on the pure-JAX pendulum")
  p.add_argument("--env", default=None)
  p.add_argument("--backend", default=None)
  p.add_argument("--options", nargs="+", default=None, metavar="JSON",
                 help="compile option sets, the first is the baseline "
                      "(default: {} and training.FAST_COMPILE_OPTIONS)")
  p.add_argument("--no-write", action="store_true", help="print only")
  args = p.parse_args(argv)
  spec = dict(FULL, **(QUICK if args.quick else {}))
  if args.env:
    spec.update(env=args.env, backend=args.backend)
  from rlax_inf.agents import training  # pylint: disable=g-import-not-at-top
  try:
    option_sets = ([json.loads(o) for o in args.options] if args.options
                   else [{}, dict(training.FAST_COMPILE_OPTIONS)])
  except json.JSONDecodeError as e:
    print(f"compile_profile: error: bad --options ({e})", file=sys.stderr)
    return 2
  rows = []
  for options in option_sets:
    with tempfile.TemporaryDirectory(prefix="compile_profile_") as cache_dir:  # cold, per row
      proc, wall, _ = _common.run_child(
          "benchmarks.compile_profile", ["--child", json.dumps(spec), json.dumps(options)],
          cache_dir)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("PROFILE ")]
    if proc.returncode != 0 or not lines:
      print(f"compile_profile: {options} failed (exit {proc.returncode}):\n"
            f"{proc.stderr[-2000:]}", file=sys.stderr)
      return 1
    result = json.loads(lines[-1][len("PROFILE "):])
    result["process_wall_s"] = round(wall, 1)
    rows.append(dict(options=options, result=result))
    print(f"{json.dumps(options)}: {result}", flush=True)
  payload = dict(command=_common.command(), machine=_common.machine(), spec=spec, rows=rows)
  markdown = _markdown(payload)
  if not (args.quick or args.no_write):
    _common.write_results(f"{NAME}_{spec['env']}", payload, markdown)
  print(markdown.strip().splitlines()[-1])
  return 0


if __name__ == "__main__":
  sys.exit(main())
