"""`rlax-inf`: train, evaluate, list and plot agents from the command line.

  rlax-inf train --agent NAME --env NAME [--backend B] --seeds S --steps N --out DIR
                 [--set key=value ...] [--resume]
  rlax-inf eval DIR            evaluate the latest checkpoint of a run
  rlax-inf plot DIR [DIR ...]  learning curves (mean ± std over seeds)
  rlax-inf list                agents, environments, backends, config keys
  rlax-inf main                the README's main job (SAC and SAC-FKL, several seeds)
  rlax-inf demo                exact tabular soft value iteration

Bad input (unknown agent, env, backend or config key, an existing --out
without --resume) exits with code 2 and one line naming the valid choices.
A non-finite loss stops training with exit code 1, keeping the last good
checkpoint.
"""

import argparse
import os
import sys
from typing import List, Optional

EXIT_USAGE = 2
EXIT_NONFINITE = 1


class _Parser(argparse.ArgumentParser):
  """argparse that reports errors in one line (no usage dump) with exit code 2."""

  def error(self, message):
    self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _fail(message: str, code: int = EXIT_USAGE):
  print(f"rlax-inf: error: {message}", file=sys.stderr)
  return code


def _parse_sets(items: List[str]):
  from rlax_inf.agents import run  # pylint: disable=g-import-not-at-top
  out = {}
  for item in items or []:
    if "=" not in item:
      raise run.UsageError(f"--set expects key=value, got {item!r}")
    k, v = item.split("=", 1)
    out[k.strip().replace("-", "_")] = v.strip()
  return out


def _maybe_distributed(args):
  """`jax.distributed.initialize` before anything touches a JAX backend (multi-host)."""
  from rlax_inf.agents import run  # pylint: disable=g-import-not-at-top
  flags = (args.coordinator, args.num_processes, args.process_id)
  if all(f is None for f in flags):
    return
  if any(f is None for f in flags):
    raise run.UsageError("multi-host training needs all of --coordinator HOST:PORT, "
                         "--num-processes P and --process-id I")
  if not 0 <= args.process_id < args.num_processes:
    raise run.UsageError(f"--process-id must be in [0, {args.num_processes}), "
                         f"got {args.process_id}")
  from rlax_inf.agents import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def _cmd_train(args) -> int:
  from rlax_inf.agents import run  # pylint: disable=g-import-not-at-top
  _maybe_distributed(args)
  if args.resume and os.path.exists(os.path.join(args.out, run.CONFIG_FILE)):
    agent, train_cfg, agent_cfg = run.load_config(args.out)
  else:
    fields = dict(env=args.env, backend=args.backend, num_seeds=args.seeds,
                  total_steps=args.steps, seed=args.seed)
    agent, (train_cfg, agent_cfg) = args.agent, run.make_configs(
        args.agent, _parse_sets(args.set), **fields)
    run.validate_env(train_cfg, agent)
  summary = run.train_run(args.out, agent, train_cfg, agent_cfg, resume=args.resume,
                          progress=not args.no_progress)
  _print_summary([summary])
  return 0


def _print_summary(summaries):
  import numpy as np  # pylint: disable=g-import-not-at-top
  print(f"{'agent':<10} {'env':<20} {'seeds':>5} {'env steps':>10} "
        f"{'final eval return':>22} {'min':>8} {'wall s':>8}")
  for s in summaries:
    r = np.asarray(s["final_returns"], float)
    print(f"{s['agent']:<10} {s['env']:<20} {len(s['seeds']):>5} {s['step']:>10,} "
          f"{r.mean():>12.1f} ± {r.std():>7.1f} {r.min():>8.1f} {s['wall_s']:>8.1f}")


def _cmd_eval(args) -> int:
  from rlax_inf.agents import run  # pylint: disable=g-import-not-at-top
  rows = run.evaluate_run(args.dir)
  print(f"{'seed':>4} {'step':>9} {'return (det)':>13} {'length':>7} "
        f"{'return (stoch)':>15} {'length':>7}")
  for r in rows:
    print(f"{r['seed']:>4} {r['step']:>9,} {r['eval_return']:>13.1f} {r['eval_length']:>7.0f} "
          f"{r['eval_return_stochastic']:>15.1f} {r['eval_length_stochastic']:>7.0f}")
  return 0


def _cmd_plot(args) -> int:
  from rlax_inf.agents import plotting, run  # pylint: disable=g-import-not-at-top
  for d in args.dirs:
    if not run.read_metrics(d):
      raise run.UsageError(f"{d!r} has no {run.METRICS_FILE}")
  out = args.out or os.path.join(args.dirs[0], run.PLOT_FILE)
  plotting.plot_runs(args.dirs, out, key=args.key, smoothing=args.ema)
  print(out)
  return 0


def _cmd_list(args) -> int:
  del args
  from rlax_inf import envs  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import registry as agents  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import run  # pylint: disable=g-import-not-at-top
  # Static tables: builds no environment and imports neither Brax nor Playground.
  registry = envs.registry()
  print("agents (loop; action spaces):")
  for name in agents.names():
    e = agents.get(name)
    print(f"  {name:<10} {e.loop:<10} {'/'.join(e.action_spaces):<21} {e.description}")
  print("backends: " + ", ".join(sorted({b for e in registry.values()
                                         for b in e["backends"]})))
  print("envs (continuous actions in [-1, 1]; obs / action sizes; "
        "d = differentiable step):")
  for name, e in registry.items():
    if not e["discrete"]:
      flag = "" if e.get("available", True) else "  [needs the playground extra]"
      diff = "d" if e["differentiable"] else " "
      print(f"  {name:<26} {e['observation_size']:>4} {e['action_size']:>3} {diff}  "
            f"backends: {', '.join(e['backends'])}{flag}")
  print("envs (discrete actions; obs size, number of actions): " + ", ".join(
      f"{n} ({e['observation_size']}, {e['action_size']})"
      for n, e in registry.items() if e["discrete"]))
  keys = run.config_keys(agents.names()[0])
  print("loop config keys (--set key=value): " + ", ".join(
      sorted(k for k, (which, _) in keys.items() if which == "train")))
  for name in agents.names():
    own = sorted(k for k, (which, _) in run.config_keys(name).items() if which == "agent")
    print(f"{name} config keys: " + ", ".join(own))
  return 0


def _cmd_demo(args) -> int:
  from rlax_inf.agents import demo  # pylint: disable=g-import-not-at-top
  return demo.main(args.rest) or 0


def _cmd_main(args) -> int:
  from rlax_inf.agents import main_job  # pylint: disable=g-import-not-at-top
  return main_job.main(args, _parse_sets(args.set))


def build_parser() -> argparse.ArgumentParser:
  from rlax_inf.agents import registry  # pylint: disable=g-import-not-at-top
  p = _Parser(prog="rlax-inf", description="RL as inference in JAX: train and inspect agents.")
  sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

  t = sub.add_parser("train", help="train an agent on several seeds in one program")
  t.add_argument("--agent", default="sac", help=f"one of {', '.join(registry.names())}")
  t.add_argument("--env", default="inverted_pendulum")
  t.add_argument("--backend", default=None)
  t.add_argument("--seeds", type=int, default=1, help="independent seeds (vmapped)")
  t.add_argument("--seed", type=int, default=0, help="first seed")
  t.add_argument("--steps", type=int, default=50_000, help="env steps per seed")
  t.add_argument("--out", required=True, help="run directory")
  t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config key (see `rlax-inf list`)")
  t.add_argument("--resume", action="store_true", help="continue the run in --out")
  t.add_argument("--no-progress", action="store_true")
  t.add_argument("--coordinator", default=None,
                 help="multi-host: jax.distributed coordinator address host:port")
  t.add_argument("--num-processes", type=int, default=None)
  t.add_argument("--process-id", type=int, default=None)
  t.set_defaults(fn=_cmd_train)

  e = sub.add_parser("eval", help="evaluate the latest checkpoint of a run")
  e.add_argument("dir")
  e.set_defaults(fn=_cmd_eval)

  pl = sub.add_parser("plot", help="plot learning curves of one or more runs")
  pl.add_argument("dirs", nargs="+")
  pl.add_argument("--out", default=None, help="PNG path (default DIR/learning_curves.png)")
  pl.add_argument("--ema", type=float, default=0.0, help="EMA smoothing in [0, 1)")
  pl.add_argument("--key", default="eval_return")
  pl.set_defaults(fn=_cmd_plot)

  ls = sub.add_parser("list", help="agents, environments, backends and config keys")
  ls.set_defaults(fn=_cmd_list)

  m = sub.add_parser("main", help="the README's main job: SAC and SAC-FKL, several seeds")
  m.add_argument("--out", default="runs/main")
  m.add_argument("--env", default="inverted_pendulum")
  m.add_argument("--backend", default=None)
  m.add_argument("--seeds", type=int, default=4)
  m.add_argument("--steps", type=int, default=None, help="env steps per seed")
  m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override one of the main job's settings (both agents)")
  m.add_argument("--resume", action="store_true")
  m.set_defaults(fn=_cmd_main)

  d = sub.add_parser("demo", help="exact tabular soft value iteration demo")
  d.add_argument("rest", nargs=argparse.REMAINDER)
  d.set_defaults(fn=_cmd_demo)
  return p


def main(argv: Optional[List[str]] = None) -> int:
  """Entry point of the `rlax-inf` console script; returns the exit code."""
  args = build_parser().parse_args(argv)
  from rlax_inf.agents import run  # pylint: disable=g-import-not-at-top
  try:
    return args.fn(args)
  except run.UsageError as e:
    return _fail(str(e))
  except run.NonFiniteError as e:
    out = getattr(args, "out", "")
    return _fail(f"training stopped: {e}; the last good checkpoint is kept in "
                 f"{os.path.join(out, 'checkpoints')}", EXIT_NONFINITE)
  except KeyboardInterrupt:
    return _fail("interrupted", 130)


if __name__ == "__main__":
  sys.exit(main())
