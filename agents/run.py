"""A training run in a directory: the one place that opens, validates, resumes and writes a run.

`train_run` drives `training.Trainer`: one compiled call per evaluation
interval, one JSON line per evaluation and seed appended to metrics.jsonl, an
orbax checkpoint every `checkpoint_every` evaluations, and `resume=True` to
continue from the latest checkpoint bit for bit (the compiled programs are
deterministic and the checkpoint holds every PRNG key and buffer). The
directory's files and their rules are run_dir.py's.

Resuming continues the run as config.json describes it. A larger `total_steps`
extends it (whole evaluation intervals, as always; the replay buffer keeps the
capacity it had, so an extended run is not the run a larger budget from the
start would give). Any other difference from config.json is refused, naming
the fields.
"""

import dataclasses
import json
import os
import shutil
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
import numpy as np

from rlax_inf import envs
from rlax_inf.agents import base
from rlax_inf.agents import checkpointing
from rlax_inf.agents import config as config_lib
from rlax_inf.agents import distributed
from rlax_inf.agents import plotting
from rlax_inf.agents import quiet
from rlax_inf.agents import report
from rlax_inf.agents import run_config
from rlax_inf.agents import run_dir
from rlax_inf.agents import training
from rlax_inf.agents.errors import NonFiniteError, UsageError
# The names other modules and scripts use through `run`.
from rlax_inf.agents.run_config import config_keys, load_config, make_configs, save_config
from rlax_inf.agents.run_dir import CONFIG_FILE, METRICS_FILE, PLOT_FILE, read_metrics

__all__ = ["UsageError", "NonFiniteError", "CONFIG_FILE", "METRICS_FILE", "PLOT_FILE",
           "config_keys", "load_config", "make_configs", "save_config", "read_metrics",
           "envs_for", "validate_env", "make_trainer", "requested_configs", "train_run",
           "evaluate_run"]

#: config.json's record of the replay capacity a run extended with --steps keeps.
_CAPACITY = "replay_capacity"


# --- environments and trainers ---------------------------------------------

def envs_for(agent: str) -> list:
  """Names of the registered envs whose action space `agent` serves (static, builds none)."""
  spaces = run_config.entry(agent).action_spaces
  return [name for name, e in envs.registry().items()
          if (base.DISCRETE if e["discrete"] else base.CONTINUOUS) in spaces]


def validate_env(train_cfg: config_lib.TrainConfig, agent: str):
  """Build the env and check `agent` serves it; one-line UsageErrors otherwise."""
  entry = run_config.entry(agent)
  spec = envs.registry().get(train_cfg.env)
  if spec is not None:
    space = base.DISCRETE if spec["discrete"] else base.CONTINUOUS
    if space not in entry.action_spaces:
      raise UsageError(f"{agent} needs {' or '.join(entry.action_spaces)} actions; "
                       f"{train_cfg.env!r} has {space} actions; choose one of "
                       f"{', '.join(envs_for(agent))}")
    if not spec.get("available", True):
      raise UsageError(f"{train_cfg.env!r} is a MuJoCo Playground env and the playground "
                       "extra is not installed: pip install 'rlax-inf[playground]'")
    if spec["suite"] in ("brax", "playground"):
      quiet.import_mjx()
  try:
    return training.make_env(train_cfg)
  except ValueError as e:
    raise UsageError(str(e)) from None


def make_trainer(train_cfg: config_lib.TrainConfig, agent_cfg: Any, agent: str,
                 env: Any = None) -> training.Trainer:
  """The `Trainer`, with every refusal (env, agent, devices, schedule) as a UsageError."""
  env = validate_env(train_cfg, agent) if env is None else env
  try:
    return training.Trainer(train_cfg, agent_cfg, agent, env)
  except ValueError as e:  # UnsupportedEnv, seeds that don't divide over devices, ...
    raise UsageError(str(e)) from None


# --- which configs a run uses ----------------------------------------------

def requested_configs(out: str, resume: bool, agent: Optional[str], sets: Dict[str, str],
                      defaults: Optional[Dict[str, Any]] = None, **train_fields):
  """(agent, TrainConfig, agent config) that the flags of a `train` command ask for.

  A new run: the flags given (None: not given) over `defaults` over the
  configs' defaults. `resume` of an existing run: config.json's configs with
  the flags given applied; `train_run` then refuses what differs other than a
  larger `total_steps`.
  """
  given = {k: v for k, v in train_fields.items() if v is not None}
  if resume and os.path.exists(os.path.join(out, CONFIG_FILE)):
    stored_agent, train_cfg, agent_cfg = load_config(out)
    agent = agent or stored_agent
    train_kw, agent_kw = run_config.parse_overrides(agent, sets)
    try:
      train_cfg = dataclasses.replace(train_cfg, **dict(given, **train_kw))
      if agent == stored_agent:
        agent_cfg = dataclasses.replace(agent_cfg, **agent_kw)
    except ValueError as e:
      raise UsageError(str(e)) from None
    return agent, train_cfg, agent_cfg
  agent = agent or "sac"
  return (agent,) + make_configs(agent, sets, **dict(defaults or {}, **given))


def _check_resume(out: str, agent: str, train_cfg, agent_cfg) -> Tuple[Any, bool]:
  """config.json's TrainConfig with `train_cfg`'s total_steps, and whether that extends it.

  Raises:
    UsageError: another agent, another config (the fields named), fewer steps.
  """
  stored_agent, stored_train, stored_agent_cfg = load_config(out)
  if agent != stored_agent:
    raise UsageError(f"{out!r} holds a {stored_agent} run; --resume cannot change the agent "
                     f"to {agent} (choose another --out for a new run)")
  changed = (run_config.differences(stored_train, train_cfg, skip=("total_steps",)) +
             run_config.differences(stored_agent_cfg, agent_cfg))
  if changed:
    raise UsageError(f"--resume continues {out!r} as its config.json says; these differ: "
                     f"{'; '.join(changed)} (only --steps may grow; choose another --out "
                     "for a new run)")
  if train_cfg.total_steps < stored_train.total_steps:
    raise UsageError(f"--resume cannot shrink {out!r}: it trains "
                     f"{stored_train.total_steps} env steps per seed, --steps asks for "
                     f"{train_cfg.total_steps}")
  return train_cfg, train_cfg.total_steps > stored_train.total_steps


def _capacity(out: str) -> Optional[int]:
  try:
    with open(os.path.join(out, CONFIG_FILE)) as f:
      return json.load(f).get(_CAPACITY)
  except (OSError, ValueError):
    return None


def _with_capacity(train_cfg, capacity: Optional[int]):
  """The config the loop runs: replay_size capped at the capacity an extension kept."""
  if capacity is None or train_cfg.replay_size <= capacity:
    return train_cfg
  return dataclasses.replace(train_cfg, replay_size=capacity)


def _plan(trainer: training.Trainer, requested: int) -> str:
  """What the run will do, in env steps per seed (the schedule rounds --steps up)."""
  sch, cfg = trainer.schedule, trainer.config
  prefill = sch.prefill_vector_steps * cfg.num_envs
  interval = trainer.env_steps_per_interval
  total = trainer.total_env_steps
  text = (f"{total:,} env steps per seed × {cfg.num_seeds} seed(s) = "
          + (f"prefill {prefill:,} + " if prefill else "")
          + f"{sch.num_intervals} evaluation interval(s) × {interval:,}")
  if total != requested:
    text += (f" (--steps {requested:,} rounded to the schedule: prefill_steps, whole "
             "eval_every intervals of num_envs steps)")
  if trainer.mesh.size > 1:
    platform = trainer.mesh.devices.flat[0].platform
    text += f"; seeds sharded over {trainer.mesh.size} {platform} devices"
  return text


# --- the run ---------------------------------------------------------------

def _restore(out: str, mngr, trainer, is_main: bool, what: str):
  """(state, evaluation, manager) of the newest readable checkpoint; (None, 0, manager)
  if there is none.

  A damaged checkpoint is reported in one line and, for a run that goes on
  (`is_main` of `train_run`), moved to `damaged_checkpoints/` so that the next
  checkpoints can take its place; the manager is reopened after a move.
  """
  damaged = []

  def on_damaged(step, why):
    damaged.append(step)
    run_dir.note(f"{why}; falling back to the previous checkpoint")

  try:
    ts, done = checkpointing.restore_latest(mngr, trainer.abstract_state(), on_damaged)
  except FileNotFoundError:
    return None, 0, mngr
  except checkpointing.IncompatibleCheckpoint as e:
    raise UsageError(
        f"cannot {what} {out!r}: its checkpoint was written by another version of "
        f"rlax-inf or another config ({e}); start a new run with another --out") from None
  except checkpointing.DamagedCheckpoint as e:
    raise UsageError(f"cannot {what} {out!r}: {e}; start a new run with another --out"
                     ) from None
  if damaged and what == "resume":
    if is_main:
      for step in damaged:
        dest = os.path.join(out, run_dir.DAMAGED, f"{step}-{int(time.time())}")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.move(os.path.join(out, run_dir.CHECKPOINTS, str(step)), dest)
      run_dir.note(f"resuming from checkpoint {done}; the damaged one(s) are in "
                   f"{os.path.join(out, run_dir.DAMAGED)}")
    distributed.barrier("rlax_inf.run: damaged checkpoints moved")
    mngr.close()
    mngr = checkpointing.manager(os.path.join(out, run_dir.CHECKPOINTS))
  return ts, done, mngr


def _rows(metrics: Dict[str, np.ndarray], env_steps, seeds, evaluation, wall_s, sps):
  rows = []
  for i, seed in enumerate(seeds):
    row = dict(step=int(env_steps[i]), seed=int(seed), evaluation=evaluation,
               wall_s=round(wall_s, 3), env_steps_per_s=round(sps, 1))
    row.update({k: float(v[i]) for k, v in sorted(metrics.items())})
    rows.append(row)
  return rows


def _non_finite(metrics: Dict[str, np.ndarray]) -> List[str]:
  return [f"{k}={v.tolist()}" for k, v in metrics.items() if not np.all(np.isfinite(v))]


def train_run(out: str, agent: str, train_cfg: config_lib.TrainConfig, agent_cfg: Any,
              resume: bool = False, progress: bool = True, plot: bool = True,
              desc: Optional[str] = None) -> Dict[str, Any]:
  """Train into directory `out`, resuming from its latest good checkpoint if `resume`.

  Returns:
    A summary dict: agent, env, seeds, step, final eval returns per seed, wall_s.

  Raises:
    UsageError: `out` holds a run and `resume` is False (never overwritten);
      `resume` of a run with another config, fewer steps, no config.json or no
      readable checkpoint; `out` in use by another process or not writable.
      `resume` with nothing to resume is allowed (starts fresh).
    NonFiniteError: a loss became non-finite (no checkpoint is written after it).
  """
  # With several processes (`jax.distributed`) every process looks at `out` before
  # process 0 writes to it, so all of them take the same branch.
  exists = run_dir.holds_run(out)
  if exists and not resume:
    raise UsageError(f"{out!r} already holds a run; pass --resume to continue it or "
                     "choose another --out")
  if exists and not os.path.exists(os.path.join(out, CONFIG_FILE)):
    raise UsageError(f"{out!r} holds checkpoints or metrics but no {CONFIG_FILE}, so which "
                     "config wrote them is unknown; restore it or choose another --out")
  extended, capacity = False, None
  if exists:
    train_cfg, extended = _check_resume(out, agent, train_cfg, agent_cfg)
    capacity = _capacity(out)
  requested_steps = train_cfg.total_steps
  if jax.process_index() == 0:
    report.stage(f"building {train_cfg.env} and the {agent} programs")
  trainer = make_trainer(_with_capacity(train_cfg, capacity), agent_cfg, agent)
  if extended and capacity is None and hasattr(trainer.schedule, "replay_rows"):
    # The buffer keeps the capacity the run had before this extension.
    _, old_cfg, _ = load_config(out)
    old = training.Trainer(old_cfg, agent_cfg, agent, trainer.env)
    capacity = old.schedule.replay_rows * old_cfg.num_envs
    trainer = make_trainer(_with_capacity(train_cfg, capacity), agent_cfg, agent, trainer.env)
  sch = trainer.schedule
  seeds = [train_cfg.seed + i for i in range(train_cfg.num_seeds)]
  is_main = jax.process_index() == 0
  distributed.barrier("rlax_inf.run: run directory read")
  run_dir.make(out)
  lock = run_dir.Lock(out).acquire() if is_main else None
  mngr = bar = None
  try:
    if is_main and (not exists or extended):
      extra = {} if capacity is None else {_CAPACITY: capacity}
      save_config(out, agent, train_cfg, agent_cfg, **extra)
    mngr = checkpointing.manager(os.path.join(out, run_dir.CHECKPOINTS))
    ts, done, mngr = (None, 0, mngr)
    if exists:
      ts, done, mngr = _restore(out, mngr, trainer, is_main, "resume")
    rows = read_metrics(out) if exists else []
    if is_main and any(r["evaluation"] > done for r in rows):
      run_dir.mark_resumed(out, done)  # rows after `done` belong to the run cut short
    rows = [r for r in rows if r["evaluation"] <= done]
    wall0 = max([r["wall_s"] for r in rows], default=0.0)
    label = desc or f"{agent} {train_cfg.env}"
    if is_main:
      report.stage(f"{label}: {_plan(trainer, requested_steps)}" + (
          f"; resuming after evaluation {done}" if done else ""))

    start = time.time()
    if done < sch.num_intervals:
      if is_main:
        report.stage("compiling the init and training programs side by side; the first "
                     "run of a config takes longest, later runs read the compilation cache")
      trainer.compile(init=ts is None)
    if ts is None:
      ts = trainer.init(trainer.seed_keys())
    bar = report.Progress(trainer.total_env_steps, trainer.env_steps_after(done),
                          train_cfg.num_seeds, label, enabled=progress and is_main)
    saved = done or None  # the evaluation of the newest checkpoint on disk
    for evaluation in range(done + 1, sch.num_intervals + 1):
      t0 = time.time()
      interval_steps = (trainer.env_steps_after(evaluation)
                        - trainer.env_steps_after(evaluation - 1))
      bar.start_interval(interval_steps,
                         f"evaluation {evaluation}/{sch.num_intervals}")
      ts, metrics = trainer.run_interval(ts)
      metrics = training.to_host(metrics)
      env_steps = training.to_host(ts.env_steps)
      dt = time.time() - t0
      bad = _non_finite(metrics)
      if bad:
        kept = (f"the last good checkpoint, after evaluation {saved}, is kept in "
                f"{os.path.join(out, run_dir.CHECKPOINTS)}" if saved else
                "no checkpoint was written")
        raise NonFiniteError(f"non-finite values in evaluation {evaluation}, by env step "
                             f"{int(env_steps[0])} ({', '.join(bad)}); {kept}")
      sps = interval_steps * train_cfg.num_seeds / dt
      new_rows = _rows(metrics, env_steps, seeds, evaluation, wall0 + time.time() - start, sps)
      rows += new_rows
      if is_main:
        run_dir.append_metrics(out, new_rows)
      if evaluation % train_cfg.checkpoint_every == 0 or evaluation == sch.num_intervals:
        try:
          checkpointing.save(mngr, evaluation, ts)
        except Exception as e:  # pylint: disable=broad-except  # disk full, I/O errors
          kept = f"checkpoint {saved} is kept" if saved else "no checkpoint was written"
          raise UsageError(f"cannot write checkpoint {evaluation} in "
                           f"{os.path.join(out, run_dir.CHECKPOINTS)} "
                           f"({checkpointing.describe_error(e)}); {kept}") from None
        saved = evaluation
      bar.end_interval(int(env_steps[0]), metrics, trainer.agent.progress_keys)
  except OSError as e:
    raise UsageError(f"cannot write the run directory {out!r} ({run_dir.describe_os_error(e)})"
                     ) from None
  finally:
    if bar is not None:
      bar.close()
    if mngr is not None:
      mngr.close()
    if lock is not None:
      lock.release()
  if plot and is_main and rows:
    plotting.plot_runs([out], os.path.join(out, PLOT_FILE))
  last_eval = max(r["evaluation"] for r in rows) if rows else 0
  returns = [r["eval_return"] for r in rows if r["evaluation"] == last_eval]
  return dict(agent=agent, env=train_cfg.env, seeds=seeds,
              step=max((r["step"] for r in rows), default=0), final_returns=returns,
              wall_s=max((r["wall_s"] for r in rows), default=0.0))


def evaluate_run(out: str) -> List[Dict[str, Any]]:
  """Evaluate the latest readable checkpoint of the run in `out` (fresh eval keys), per seed."""
  agent, train_cfg, agent_cfg = load_config(out)
  trainer = make_trainer(_with_capacity(train_cfg, _capacity(out)), agent_cfg, agent)
  mngr = checkpointing.manager(os.path.join(out, run_dir.CHECKPOINTS))
  try:
    ts, step, mngr = _restore(out, mngr, trainer, False, "evaluate")
  finally:
    mngr.close()
  if ts is None:
    raise UsageError(f"{out!r} has no checkpoint to evaluate")
  del step
  keys = jax.vmap(lambda k: jax.random.fold_in(k, 0x5EED))(ts.key)
  metrics = training.to_host(trainer.evaluate(ts.agent, keys))
  steps = training.to_host(ts.env_steps)
  return [dict(seed=train_cfg.seed + i, step=int(steps[i]),
               **{k: float(v[i]) for k, v in metrics.items()})
          for i in range(train_cfg.num_seeds)]
