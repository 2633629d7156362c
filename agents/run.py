"""A training run on disk: config.json, metrics.jsonl, checkpoints/, learning_curves.png.

`train_run` drives `training.Trainer`: one compiled call per evaluation
interval, a progress bar, one JSON line per evaluation and seed, orbax
checkpoints every `checkpoint_every` evaluations, and `resume=True` to continue
from the latest checkpoint bit for bit (the compiled programs are
deterministic and the checkpoint holds every PRNG key and buffer).
"""

import dataclasses
import json
import math
import os
import sys
import time
import typing
from typing import Any, Dict, List, Optional, Tuple

import jax
import numpy as np

from rlax_inf import envs
from rlax_inf.agents import base
from rlax_inf.agents import checkpointing
from rlax_inf.agents import config as config_lib
from rlax_inf.agents import distributed
from rlax_inf.agents import registry
from rlax_inf.agents import training

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "learning_curves.png"


class UsageError(ValueError):
  """A bad choice or value from the user: the CLI prints it in one line, exit code 2."""


class NonFiniteError(RuntimeError):
  """A loss became NaN or inf: training stops, the last good checkpoint is kept."""


# --- configs ---------------------------------------------------------------

def _entry(agent: str) -> registry.Entry:
  try:
    return registry.get(agent)
  except ValueError as e:
    raise UsageError(str(e)) from None


def config_keys(agent: str) -> Dict[str, Tuple[str, Any]]:
  """{key: (which config, field)} of every settable key for `agent` (loop's and agent's)."""
  out = {}
  for which, cls in (("train", config_lib.TrainConfig), ("agent", _entry(agent).config_class)):
    for f in dataclasses.fields(cls):
      out[f.name] = (which, f)
  return out


def _parse_value(field: dataclasses.Field, cls, text: str):
  hint = typing.get_type_hints(cls)[field.name]
  args = typing.get_args(hint)
  if typing.get_origin(hint) is typing.Union and type(None) in args:
    if text.lower() in ("none", "null", ""):
      return None
    hint = next(a for a in args if a is not type(None))
  if hint is bool:
    if text.lower() in ("1", "true", "yes", "on"):
      return True
    if text.lower() in ("0", "false", "no", "off"):
      return False
    raise ValueError(f"expected true/false, got {text!r}")
  if typing.get_origin(hint) is tuple:
    return tuple(int(x) for x in text.replace("x", ",").split(",") if x)
  if hint is int:
    return int(float(text)) if "e" in text.lower() else int(text)
  return hint(text)


def make_configs(agent: str, overrides: Dict[str, str],
                 **train_fields) -> Tuple[training.TrainConfig, Any]:
  """TrainConfig and agent config from CLI fields and `--set key=value` strings.

  Raises:
    UsageError: unknown agent, unknown key or a value of the wrong type.
  """
  entry = _entry(agent)
  keys = config_keys(agent)
  train_kw, agent_kw = dict(train_fields), {}
  for key, text in overrides.items():
    if key not in keys:
      own = sorted(k for k, (w, _) in keys.items() if w == "agent")
      loop = sorted(k for k, (w, _) in keys.items() if w == "train")
      raise UsageError(f"unknown config key {key!r} for agent {agent}; {agent}'s keys: "
                       f"{', '.join(own)}; loop keys: {', '.join(loop)}")
    which, field = keys[key]
    cls = config_lib.TrainConfig if which == "train" else entry.config_class
    try:
      value = _parse_value(field, cls, text)
    except (ValueError, TypeError) as e:
      raise UsageError(f"bad value for {key}: {text!r} ({e})") from None
    (train_kw if which == "train" else agent_kw)[key] = value
  try:
    train_cfg = config_lib.TrainConfig(**train_kw)
    agent_cfg = dataclasses.replace(entry.config, **agent_kw)
  except ValueError as e:
    raise UsageError(str(e)) from None
  return train_cfg, agent_cfg


def save_config(out: str, agent: str, train_cfg, agent_cfg) -> None:
  with open(os.path.join(out, CONFIG_FILE), "w") as f:
    json.dump(dict(agent=agent, train=dataclasses.asdict(train_cfg),
                   agent_config=dataclasses.asdict(agent_cfg),
                   jax_version=jax.__version__), f, indent=2)


def _from_json(cls, values: Dict[str, Any]):
  """A config dataclass from its JSON dict (lists back to tuples where the field is one)."""
  hints = typing.get_type_hints(cls)
  kw = {}
  for name, value in values.items():
    hint = hints.get(name)
    args = typing.get_args(hint)
    is_tuple = typing.get_origin(hint) is tuple or any(
        typing.get_origin(a) is tuple for a in args)
    kw[name] = tuple(value) if is_tuple and isinstance(value, list) else value
  return cls(**kw)


def load_config(out: str) -> Tuple[str, config_lib.TrainConfig, Any]:
  path = os.path.join(out, CONFIG_FILE)
  if not os.path.exists(path):
    raise UsageError(f"{out!r} is not a run directory (no {CONFIG_FILE})")
  try:
    with open(path) as f:
      d = json.load(f)
    agent = d["agent"]
    return (agent, _from_json(config_lib.TrainConfig, d["train"]),
            _from_json(registry.get(agent).config_class, d["agent_config"]))
  except (ValueError, TypeError, KeyError) as e:  # another version's fields, a broken file
    raise UsageError(f"{out!r} holds a run this version of rlax-inf cannot read ({path}: "
                     f"{type(e).__name__}: {e}); start a new run with another --out") from None


def envs_for(agent: str) -> list:
  """Names of the registered envs whose action space `agent` serves (static, builds none)."""
  spaces = _entry(agent).action_spaces
  return [name for name, e in envs.registry().items()
          if (base.DISCRETE if e["discrete"] else base.CONTINUOUS) in spaces]


def validate_env(train_cfg: config_lib.TrainConfig, agent: str):
  """Build the env and check `agent` serves it; one-line UsageErrors otherwise."""
  entry = _entry(agent)
  spec = envs.registry().get(train_cfg.env)
  if spec is not None:
    space = base.DISCRETE if spec["discrete"] else base.CONTINUOUS
    if space not in entry.action_spaces:
      raise UsageError(f"{agent} needs {' or '.join(entry.action_spaces)} actions; "
                       f"{train_cfg.env!r} has {space} actions; choose one of "
                       f"{', '.join(envs_for(agent))}")
  try:
    return training.make_env(train_cfg)
  except ValueError as e:
    raise UsageError(str(e)) from None


def make_trainer(train_cfg: config_lib.TrainConfig, agent_cfg: Any,
                 agent: str) -> training.Trainer:
  """The `Trainer`, with every refusal (env, agent, devices, schedule) as a UsageError."""
  env = validate_env(train_cfg, agent)
  try:
    return training.Trainer(train_cfg, agent_cfg, agent, env)
  except ValueError as e:  # UnsupportedEnv, seeds that don't divide over devices, ...
    raise UsageError(str(e)) from None


# --- metrics ---------------------------------------------------------------

def read_metrics(out: str) -> List[Dict[str, Any]]:
  path = os.path.join(out, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _rows(metrics: Dict[str, np.ndarray], ts_host, seeds, evaluation, wall_s, sps):
  rows = []
  for i, seed in enumerate(seeds):
    row = dict(step=int(ts_host["env_steps"][i]), seed=int(seed), evaluation=evaluation,
               wall_s=round(wall_s, 3), env_steps_per_s=round(sps, 1))
    row.update({k: float(v[i]) for k, v in sorted(metrics.items())})
    rows.append(row)
  return rows


def _check_finite(metrics: Dict[str, np.ndarray], step: int) -> None:
  bad = [k for k, v in metrics.items() if not np.all(np.isfinite(v))]
  if bad:
    values = ", ".join(f"{k}={metrics[k].tolist()}" for k in bad)
    raise NonFiniteError(f"non-finite values after env step {step} ({values})")


# --- the run ---------------------------------------------------------------

def train_run(out: str, agent: str, train_cfg: config_lib.TrainConfig, agent_cfg: Any,
              resume: bool = False, progress: bool = True, plot: bool = True,
              desc: Optional[str] = None) -> Dict[str, Any]:
  """Train into directory `out`, resuming from its latest checkpoint if `resume`.

  Returns:
    A summary dict: agent, env, seeds, step, final eval returns per seed, wall_s.

  Raises:
    UsageError: `out` holds a run and `resume` is False (never overwritten);
      `resume` with nothing to resume is allowed (starts fresh).
    NonFiniteError: a loss became non-finite (no checkpoint is written after it).
  """
  # With several processes (`jax.distributed`) every process looks at `out` before
  # process 0 writes to it, so all of them take the same branch.
  exists = os.path.exists(os.path.join(out, CONFIG_FILE))
  if exists and not resume:
    raise UsageError(f"{out!r} already holds a run; pass --resume to continue it or "
                     "choose another --out")
  if exists:
    agent, train_cfg, agent_cfg = load_config(out)
  trainer = make_trainer(train_cfg, agent_cfg, agent)
  sch = trainer.schedule
  seeds = [train_cfg.seed + i for i in range(train_cfg.num_seeds)]
  rows = read_metrics(out)
  is_main = jax.process_index() == 0
  distributed.barrier("rlax_inf.run: run directory read")
  os.makedirs(out, exist_ok=True)
  if is_main and not exists:
    save_config(out, agent, train_cfg, agent_cfg)
  mngr = checkpointing.manager(os.path.join(out, "checkpoints"))

  wall0 = 0.0
  if resume and mngr.latest_step() is not None:
    try:
      ts, done = checkpointing.restore(mngr, trainer.abstract_state())
    except checkpointing.IncompatibleCheckpoint as e:
      mngr.close()
      raise UsageError(
          f"cannot resume {out!r}: its checkpoint was written by another version of "
          f"rlax-inf or another config ({e}); start a new run with another --out") from None
    rows = [r for r in rows if r["evaluation"] <= done]
    wall0 = max([r["wall_s"] for r in rows], default=0.0)
  else:
    ts, done, rows = None, 0, []
  if is_main:
    with open(os.path.join(out, METRICS_FILE), "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)

  start = time.time()
  if ts is None:
    ts = trainer.init(trainer.seed_keys())
  total = trainer.total_env_steps
  bar = None
  if progress and is_main:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=total, initial=(sch.prefill_vector_steps + done * sch.interval_vector_steps)
               * train_cfg.num_envs, unit="step", desc=desc or f"{agent} {train_cfg.env}",
               dynamic_ncols=True, file=sys.stderr)
  interval_steps = trainer.env_steps_per_interval
  last = None
  for evaluation in range(done + 1, sch.num_intervals + 1):
    t0 = time.time()
    ts, metrics = trainer.run_interval(ts)
    metrics = training.to_host(metrics)
    host_ts = training.to_host(dict(env_steps=ts.env_steps))
    dt = time.time() - t0
    step = int(host_ts["env_steps"][0])
    _check_finite(metrics, step)
    sps = interval_steps * train_cfg.num_seeds / dt
    new_rows = _rows(metrics, host_ts, seeds, evaluation, wall0 + time.time() - start, sps)
    rows += new_rows
    if is_main:
      with open(os.path.join(out, METRICS_FILE), "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in new_rows)
    if evaluation % train_cfg.checkpoint_every == 0 or evaluation == sch.num_intervals:
      checkpointing.save(mngr, evaluation, ts)
    last = metrics
    if bar is not None:
      ret = metrics["eval_return"]
      extra = "".join(f"  {k} {np.mean(metrics[k]):.3g}" for k in trainer.agent.progress_keys
                      if k in metrics)
      bar.set_postfix_str(f"{sps:,.0f} env steps/s  eval return {np.mean(ret):.1f} ± "
                          f"{np.std(ret):.1f}{extra}")
      bar.update(interval_steps)
  if bar is not None:
    bar.close()
  mngr.close()
  if plot and is_main:
    from rlax_inf.agents import plotting  # pylint: disable=g-import-not-at-top
    plotting.plot_runs([out], os.path.join(out, PLOT_FILE))
  last_eval = max(r["evaluation"] for r in rows) if rows else 0
  returns = [r["eval_return"] for r in rows if r["evaluation"] == last_eval]
  return dict(agent=agent, env=train_cfg.env, seeds=seeds,
              step=max((r["step"] for r in rows), default=0), final_returns=returns,
              wall_s=max((r["wall_s"] for r in rows), default=0.0))


def evaluate_run(out: str) -> List[Dict[str, Any]]:
  """Evaluate the latest checkpoint of the run in `out` (fresh eval keys), per seed."""
  agent, train_cfg, agent_cfg = load_config(out)
  trainer = make_trainer(train_cfg, agent_cfg, agent)
  mngr = checkpointing.manager(os.path.join(out, "checkpoints"))
  if mngr.latest_step() is None:
    raise UsageError(f"{out!r} has no checkpoint to evaluate")
  try:
    ts, step = checkpointing.restore(mngr, trainer.abstract_state())
  except checkpointing.IncompatibleCheckpoint as e:
    raise UsageError(f"cannot evaluate {out!r}: its checkpoint was written by another "
                     f"version of rlax-inf or another config ({e})") from None
  keys = jax.vmap(lambda k: jax.random.fold_in(k, 0x5EED))(ts.key)
  metrics = training.to_host(trainer.evaluate(ts.agent, keys))
  steps = training.to_host(ts.env_steps)
  return [dict(seed=train_cfg.seed + i, step=int(steps[i]),
               **{k: float(v[i]) for k, v in metrics.items()})
          for i in range(train_cfg.num_seeds)]
