"""`rlax-inf`: train, evaluate, list and plot agents from the command line.

  rlax-inf train --agent NAME --env NAME [--backend B] --seeds S --steps N --out DIR
                 [--set key=value ...] [--resume]
  rlax-inf eval DIR            evaluate the latest checkpoint of a run
  rlax-inf plot DIR [DIR ...]  learning curves (mean ± std over seeds)
  rlax-inf list                agents, environments, backends, config keys
  rlax-inf main                the README's main job (SAC and SAC-FKL, several seeds)
  rlax-inf demo                exact tabular soft value iteration

Bad input (unknown agent, env, backend or config key, an existing --out
without --resume, a resume that would change the run's config, a run directory
that cannot be written or is in use) exits with code 2 and one line naming the
thing and the valid choices. A non-finite loss stops training with exit code 1,
saying which checkpoint is kept.
"""

import argparse
import os
import sys
from typing import List, Optional

from rlax_inf.agents import errors
from rlax_inf.agents.errors import EXIT_NONFINITE, EXIT_USAGE, UsageError

__all__ = ["main", "build_parser", "EXIT_USAGE", "EXIT_NONFINITE"]

#: Environment variable with the default of `--host-devices` ("auto" or N).
HOST_DEVICES_ENV = "RLAX_INF_HOST_DEVICES"
_TRAIN_DEFAULTS = dict(agent="sac", env="inverted_pendulum", seeds=1, seed=0, steps=50_000)


class _Parser(argparse.ArgumentParser):
  """argparse that reports errors in one line (no usage dump) with exit code 2."""

  def error(self, message):
    self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
  """Shows "(default: X)" where there is a fixed default (not for None, flags or lists)."""

  def _get_help_string(self, action):
    if action.default in (None, False, True, []) or action.help is None:
      return action.help
    return super()._get_help_string(action)


def _fail(message: str, code: int = EXIT_USAGE):
  print(f"rlax-inf: error: {message}", file=sys.stderr)
  return code


def _fraction(text: str) -> float:
  """An EMA smoothing factor in [0, 1)."""
  value = float(text)
  if not 0 <= value < 1:
    raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
  return value


def _positive(text: str) -> int:
  value = int(float(text)) if "e" in text.lower() else int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
  return value


def _maybe_distributed(args):
  """`jax.distributed.initialize` before anything touches a JAX backend (multi-host)."""
  flags = (args.coordinator, args.num_processes, args.process_id)
  if all(f is None for f in flags):
    return
  if any(f is None for f in flags):
    raise UsageError("multi-host training needs all of --coordinator HOST:PORT, "
                     "--num-processes P and --process-id I")
  if not 0 <= args.process_id < args.num_processes:
    raise UsageError(f"--process-id must be in [0, {args.num_processes}), "
                     f"got {args.process_id}")
  from rlax_inf.agents import distributed  # pylint: disable=g-import-not-at-top
  distributed.initialize(args.coordinator, args.num_processes, args.process_id)


def _host_devices(args) -> None:
  """Split the host CPU into `--host-devices` XLA devices, before a backend starts.

  XLA:CPU runs one device's program on about one core, so the seed axis (sharded
  over devices, `num_devices=0`: as many as divide `--seeds`) uses the other cores
  only when the CPU is split into several devices: 4 seeds on 2 host devices train
  2.8x faster than on one (benchmarks/results/seeds_scaling.md). Without the flag:
  $RLAX_INF_HOST_DEVICES, else "auto", one device per usable core; either leaves
  a count that XLA_FLAGS already sets, and auto leaves a multi-host run
  (`--coordinator`) alone. Accelerator backends are unaffected (their devices are
  the accelerators). Only for a real command line (`main()` with argv None):
  `main(argv)` called from Python leaves the caller's process as it is.
  """
  if not getattr(args, "command_line", False):
    return
  explicit = getattr(args, "host_devices", None)
  try:
    value = _host_devices_arg(explicit or os.environ.get(HOST_DEVICES_ENV, "auto"))
  except argparse.ArgumentTypeError as e:
    raise UsageError(f"${HOST_DEVICES_ENV} {e}") from None
  from rlax_inf.agents import distributed  # pylint: disable=g-import-not-at-top
  flag = distributed.HOST_DEVICE_COUNT_FLAG
  flags = os.environ.get("XLA_FLAGS", "")
  if flag in flags and explicit is None:
    return
  if value == "auto":
    if getattr(args, "coordinator", None) is not None:
      return
    count = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1)
  else:
    count = int(value)
  if count <= 1 and flag not in flags:
    return
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  if xla_bridge.backends_are_initialized():  # too late to change the devices
    return
  distributed.split_host_cpu(count)


def _host_devices_arg(text: str) -> str:
  if text == "auto":
    return text
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be 'auto' or an integer >= 1, got {text}")
  return str(value)


def _add_host_devices_flag(p) -> None:
  p.add_argument("--host-devices", type=_host_devices_arg, default=None, metavar="N|auto",
                 help="split the host CPU into N XLA devices for the seeds to be sharded "
                      "over; auto: one per usable core (no effect on GPU/TPU; 1 turns it "
                      f"off). Default: ${HOST_DEVICES_ENV}, else auto")


def _compilation_cache(args) -> None:
  from rlax_inf.agents import compile_cache  # pylint: disable=g-import-not-at-top
  compile_cache.configure(args.compilation_cache)


def _cmd_train(args) -> int:
  from rlax_inf.agents import report, run, run_config  # pylint: disable=g-import-not-at-top
  _host_devices(args)
  _maybe_distributed(args)
  sets = run_config.parse_sets(args.set)
  agent, train_cfg, agent_cfg = run.requested_configs(
      args.out, args.resume, args.agent, sets,
      defaults=dict(env=_TRAIN_DEFAULTS["env"], num_seeds=_TRAIN_DEFAULTS["seeds"],
                    seed=_TRAIN_DEFAULTS["seed"], total_steps=_TRAIN_DEFAULTS["steps"]),
      env=args.env, backend=args.backend, num_seeds=args.seeds, seed=args.seed,
      total_steps=args.steps)
  _compilation_cache(args)
  summary = run.train_run(args.out, agent, train_cfg, agent_cfg, resume=args.resume,
                          progress=not args.no_progress)
  print(report.summary_table([summary]))
  return 0


def _cmd_eval(args) -> int:
  from rlax_inf.agents import run  # pylint: disable=g-import-not-at-top
  _compilation_cache(args)
  rows = run.evaluate_run(args.dir)
  print(f"{'seed':>4} {'step':>9} {'return (det)':>13} {'length':>7} "
        f"{'return (stoch)':>15} {'length':>7}")
  for r in rows:
    stoch = (f"{r['eval_return_stochastic']:>15.1f} {r['eval_length_stochastic']:>7.0f}"
             if "eval_return_stochastic" in r else f"{'-':>15} {'-':>7}")  # eval_stochastic=False
    print(f"{r['seed']:>4} {r['step']:>9,} {r['eval_return']:>13.1f} {r['eval_length']:>7.0f} "
          f"{stoch}")
  return 0


def _cmd_plot(args) -> int:
  from rlax_inf.agents import plotting, run_dir  # pylint: disable=g-import-not-at-top
  out = args.out or os.path.join(args.dirs[0], run_dir.PLOT_FILE)
  plotting.plot_runs(args.dirs, out, key=args.key, smoothing=args.ema)
  print(out)
  return 0


def _cmd_list(args) -> int:
  from rlax_inf import envs  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import config as config_lib  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import registry as agents  # pylint: disable=g-import-not-at-top
  names = agents.names()
  if args.agent is not None:
    if args.agent not in names:
      raise UsageError(f"unknown agent {args.agent!r}; valid agents: {', '.join(names)}")
    names = (args.agent,)
  # Static tables: builds no environment and imports neither Brax nor Playground.
  registry = envs.registry()
  usable = _usable_backends()
  print("Agents (`--agent NAME`), the envs each takes, and their config keys "
        "(`--set key=value`; `key=default  meaning`):")
  for name in names:
    entry = agents.get(name)
    print(f"\n{name}: {entry.description}")
    print(f"  loop: {entry.loop.replace('_', '-')}; envs: {_agent_envs(entry, registry)}")
    _print_keys(entry.config_class, entry.config)
  print("\nLoop config keys, shared by every agent (`--set key=value` as well; "
        "`train` flags set env, backend, num_seeds, seed and total_steps):")
  _print_keys(config_lib.TrainConfig, config_lib.TrainConfig())
  print("\nBackends usable here: " + ", ".join(
      sorted({b for e in registry.values() for b in e["backends"] if b in usable})) +
        ("" if "warp" in usable else " ('warp', Playground on NVIDIA GPUs, is not)"))
  print("\nEnvs (continuous actions in [-1, 1]; obs / action sizes; d = differentiable step;"
        " cheap = pure JAX, compiles in seconds on a CPU; the others are physics and "
        "compile in minutes on a CPU):")
  for env_name, e in registry.items():
    if not e["discrete"]:
      flag = "" if e.get("available", True) else "  [needs the playground extra]"
      diff = "d" if e["differentiable"] else " "
      backends = ", ".join(b for b in e["backends"] if b in usable)
      print(f"  {env_name:<26} {e['observation_size']:>4} {e['action_size']:>3} {diff}  "
            f"backends: {backends}{'  cheap' if _cheap(e) else ''}{flag}")
  print("Envs (discrete actions, all cheap; obs size, number of actions): " + ", ".join(
      f"{n} ({e['observation_size']}, {e['action_size']})"
      for n, e in registry.items() if e["discrete"]))
  return 0


def _cheap(env_entry) -> bool:
  """Pure-JAX envs (classic control, tabular): they compile in seconds on a CPU."""
  return env_entry["suite"] in ("classic", "tabular")


def _usable_backends(platform: Optional[str] = None) -> frozenset:
  """Every backend but 'warp' (Playground's NVIDIA-only MuJoCo Warp), which needs a GPU and warp.

  Args:
    platform: JAX's default platform; None asks JAX (starts its CPU or GPU backend).
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  from rlax_inf import envs  # pylint: disable=g-import-not-at-top
  if platform is None:
    import jax  # pylint: disable=g-import-not-at-top
    platform = jax.default_backend()
  every = {b for e in envs.registry().values() for b in e["backends"]}
  if platform != "gpu" or importlib.util.find_spec("warp") is None:
    every.discard("warp")
  return frozenset(every)


def _agent_envs(entry, registry) -> str:
  """Which envs an agent takes (by action space), the cheap ones named."""
  from rlax_inf.agents import base  # pylint: disable=g-import-not-at-top
  parts = []
  for space in entry.action_spaces:
    discrete = space == base.DISCRETE
    matching = [n for n, e in registry.items() if e["discrete"] == discrete]
    cheap = [n for n in matching if _cheap(registry[n])]
    if discrete:
      parts.append(f"discrete ({', '.join(matching)}; all cheap)")
    else:
      parts.append(f"continuous ({len(matching)} envs; cheap on a CPU: {', '.join(cheap)})")
  return " and ".join(parts)


def _print_keys(cls, instance) -> None:
  import dataclasses  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import registry as agents  # pylint: disable=g-import-not-at-top
  meanings = agents.key_meanings(cls)
  fields = sorted(dataclasses.fields(cls), key=lambda f: f.name)
  width = max(len(f"{f.name}={_show(getattr(instance, f.name))}") for f in fields)
  import textwrap  # pylint: disable=g-import-not-at-top
  for f in fields:
    shown = f"{f.name}={_show(getattr(instance, f.name))}"
    print(textwrap.fill(meanings[f.name], width=max(100, width + 50),
                        initial_indent=f"    {shown:<{width}}  ",
                        subsequent_indent=" " * (width + 6)))


def _show(value) -> str:
  """A config value as `--set` takes it."""
  if isinstance(value, tuple):
    return ",".join(map(str, value))
  return str(value)


def _cmd_demo(args) -> int:
  from rlax_inf.agents import demo  # pylint: disable=g-import-not-at-top
  return demo.main(args.rest) or 0


def _cmd_main(args) -> int:
  from rlax_inf.agents import main_job, run_config  # pylint: disable=g-import-not-at-top
  _host_devices(args)
  sets = run_config.parse_sets(args.set)
  _compilation_cache(args)
  return main_job.main(args, sets)


def _add_cache_flag(p) -> None:
  p.add_argument("--compilation-cache", default=None, metavar="DIR|off",
                 help="persistent XLA compilation cache (default: $RLAX_INF_COMPILATION_CACHE,"
                      " else ~/.cache/rlax-inf/jax); 'off' disables it")


def build_parser() -> argparse.ArgumentParser:
  from rlax_inf.agents import registry  # pylint: disable=g-import-not-at-top
  p = _Parser(prog="rlax-inf", description="RL as inference in JAX: train and inspect agents.")
  sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
  fmt = _Help

  t = sub.add_parser("train", help="train an agent on several seeds in one program",
                     formatter_class=fmt,
                     description="Train a new run into --out, or continue it with --resume "
                                 "(then flags left out keep the run's values; only --steps "
                                 "may change, to extend it).")
  d = _TRAIN_DEFAULTS
  t.add_argument("--agent", default=None,
                 help=f"one of {', '.join(registry.names())} (default {d['agent']})")
  t.add_argument("--env", default=None,
                 help=f"see `rlax-inf list` (default {d['env']})")
  t.add_argument("--backend", default=None, help="physics backend (default: the env's first)")
  t.add_argument("--seeds", type=_positive, default=None,
                 help=f"independent seeds, vmapped (default {d['seeds']})")
  t.add_argument("--seed", type=int, default=None, help=f"first seed (default {d['seed']})")
  t.add_argument("--steps", type=_positive, default=None,
                 help=f"env steps per seed (default {d['steps']:,}); the schedule rounds it "
                      "up to prefill + whole evaluation intervals, and says so before starting")
  t.add_argument("--out", required=True, help="run directory")
  t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config key (see `rlax-inf list`)")
  t.add_argument("--resume", action="store_true", help="continue the run in --out")
  t.add_argument("--no-progress", action="store_true", help="no progress bar")
  _add_cache_flag(t)
  _add_host_devices_flag(t)
  t.add_argument("--coordinator", default=None,
                 help="multi-host: jax.distributed coordinator address host:port")
  t.add_argument("--num-processes", type=int, default=None)
  t.add_argument("--process-id", type=int, default=None)
  t.set_defaults(fn=_cmd_train)

  e = sub.add_parser("eval", help="evaluate the latest checkpoint of a run", formatter_class=fmt)
  e.add_argument("dir")
  _add_cache_flag(e)
  e.set_defaults(fn=_cmd_eval)

  pl = sub.add_parser("plot", help="plot learning curves of one or more runs",
                      formatter_class=fmt)
  pl.add_argument("dirs", nargs="+")
  pl.add_argument("--out", default=None, help="PNG path (default DIR/learning_curves.png)")
  pl.add_argument("--ema", type=_fraction, default=0.0, help="EMA smoothing in [0, 1)")
  pl.add_argument("--key", default="eval_return", help="a metric of metrics.jsonl")
  pl.set_defaults(fn=_cmd_plot)

  ls = sub.add_parser("list", help="agents, environments, backends and config keys",
                      description="Every agent with the envs it takes and each config key's "
                                  "default and meaning; the loop's keys; usable backends; envs.")
  ls.add_argument("agent", nargs="?", default=None, help="show only this agent")
  ls.set_defaults(fn=_cmd_list)

  m = sub.add_parser("main", help="the README's main job: SAC and SAC-FKL, several seeds",
                     formatter_class=fmt)
  m.add_argument("--out", default="runs/main", help="directory of both runs")
  m.add_argument("--env", default="inverted_pendulum")
  m.add_argument("--backend", default=None,
                 help="physics backend (default: positional for inverted_pendulum)")
  m.add_argument("--seeds", type=_positive, default=4)
  m.add_argument("--steps", type=_positive, default=None,
                 help="env steps per seed (default 30,000; on --resume the run's)")
  m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override one of the main job's settings (both agents)")
  m.add_argument("--resume", action="store_true", help="continue the runs in --out")
  _add_cache_flag(m)
  _add_host_devices_flag(m)
  m.set_defaults(fn=_cmd_main)

  dm = sub.add_parser("demo", help="exact tabular soft value iteration demo")
  dm.add_argument("rest", nargs=argparse.REMAINDER)
  dm.set_defaults(fn=_cmd_demo)
  return p


def main(argv: Optional[List[str]] = None) -> int:
  """Entry point of the `rlax-inf` console script; returns the exit code."""
  command_line = argv is None
  argv = sys.argv[1:] if argv is None else argv
  if argv and argv[0] in ("train", "main", "eval") and not {"-h", "--help"} & set(argv):
    # The first thing a run says: importing JAX, Flax and the agents takes seconds.
    print("rlax-inf: starting (importing JAX and the agents)", file=sys.stderr, flush=True)
  args = build_parser().parse_args(argv)
  args.command_line = command_line
  from rlax_inf.agents import quiet  # pylint: disable=g-import-not-at-top
  quiet.silence_warnings()
  try:
    return args.fn(args)
  except errors.UsageError as e:
    return _fail(str(e))
  except errors.NonFiniteError as e:
    return _fail(f"training stopped: {e}", EXIT_NONFINITE)
  except OSError as e:  # a path the user named cannot be read or written
    where = e.filename if e.filename is not None else "a file"
    return _fail(f"cannot use {where}: {e.strerror or e}")
  except KeyboardInterrupt:
    return _fail("interrupted", 130)


if __name__ == "__main__":
  sys.exit(main())
