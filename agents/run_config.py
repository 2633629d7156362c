"""A run's configuration: `--set key=value` strings parsed and checked, config.json saved and read.

The loop's fields (`config.TrainConfig`) and the agent's (its registered config
class) share one namespace of `--set` keys: the registry refuses an agent whose
field names collide with the loop's, so every key names exactly one field.
"""

import dataclasses
import json
import os
import typing
from typing import Any, Dict, List, Tuple

import jax

from rlax_inf.agents import config as config_lib
from rlax_inf.agents import registry
from rlax_inf.agents import run_dir
from rlax_inf.agents.errors import UsageError


def entry(agent: str) -> registry.Entry:
  """The registry entry of `agent`; a UsageError naming the valid agents otherwise."""
  try:
    return registry.get(agent)
  except ValueError as e:
    raise UsageError(str(e)) from None


def config_keys(agent: str) -> Dict[str, Tuple[str, dataclasses.Field]]:
  """{key: ("train" or "agent", field)} of every settable key for `agent`."""
  out = {}
  for which, cls in (("train", config_lib.TrainConfig), ("agent", entry(agent).config_class)):
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


def parse_sets(items: List[str]) -> Dict[str, str]:
  """{key: text} from `--set key=value` strings (dashes in keys read as underscores)."""
  out = {}
  for item in items or []:
    if "=" not in item:
      raise UsageError(f"--set expects key=value, got {item!r}")
    k, v = item.split("=", 1)
    out[k.strip().replace("-", "_")] = v.strip()
  return out


def parse_overrides(agent: str, overrides: Dict[str, str]) -> Tuple[Dict, Dict]:
  """(loop fields, agent fields) as typed values from {key: text}.

  Raises:
    UsageError: unknown agent, unknown key or a value of the wrong type.
  """
  cls_of = {"train": config_lib.TrainConfig, "agent": entry(agent).config_class}
  keys = config_keys(agent)
  train_kw, agent_kw = {}, {}
  for key, text in overrides.items():
    if key not in keys:
      own = sorted(k for k, (w, _) in keys.items() if w == "agent")
      loop = sorted(k for k, (w, _) in keys.items() if w == "train")
      raise UsageError(f"unknown config key {key!r} for agent {agent}; {agent}'s keys: "
                       f"{', '.join(own)}; loop keys: {', '.join(loop)}")
    which, field = keys[key]
    try:
      value = _parse_value(field, cls_of[which], text)
    except (ValueError, TypeError) as e:
      raise UsageError(f"bad value for {key}: {text!r} ({e})") from None
    (train_kw if which == "train" else agent_kw)[key] = value
  return train_kw, agent_kw


def make_configs(agent: str, overrides: Dict[str, str],
                 **train_fields) -> Tuple[config_lib.TrainConfig, Any]:
  """TrainConfig and agent config from CLI fields and `--set key=value` strings.

  Raises:
    UsageError: unknown agent, unknown key or a value of the wrong type or range.
  """
  train_kw, agent_kw = parse_overrides(agent, overrides)
  train_kw = dict(train_fields, **train_kw)
  try:
    return (config_lib.TrainConfig(**train_kw),
            dataclasses.replace(entry(agent).config, **agent_kw))
  except ValueError as e:
    raise UsageError(str(e)) from None


def save_config(out: str, agent: str, train_cfg, agent_cfg, **extra) -> None:
  """Write `out`/config.json atomically (a crash leaves the old file or the new one).

  `extra` adds top-level entries (the run's own records; `load_config` ignores them).
  """
  text = json.dumps(dict(agent=agent, train=dataclasses.asdict(train_cfg),
                         agent_config=dataclasses.asdict(agent_cfg),
                         jax_version=jax.__version__, **extra), indent=2)
  run_dir.write_atomic(os.path.join(out, run_dir.CONFIG_FILE), text + "\n")


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
  """(agent, TrainConfig, agent config) from `out`/config.json.

  Raises:
    UsageError: no config.json, or one this version cannot read.
  """
  path = os.path.join(out, run_dir.CONFIG_FILE)
  if not os.path.exists(path):
    raise UsageError(f"{out!r} is not a run directory (no {run_dir.CONFIG_FILE})")
  try:
    with open(path) as f:
      d = json.load(f)
    agent = d["agent"]
    return (agent, _from_json(config_lib.TrainConfig, d["train"]),
            _from_json(registry.get(agent).config_class, d["agent_config"]))
  except (ValueError, TypeError, KeyError) as e:  # another version's fields, a broken file
    raise UsageError(f"{out!r} holds a run this version of rlax-inf cannot read ({path}: "
                     f"{type(e).__name__}: {e}); start a new run with another --out") from None


def differences(stored, given, skip=()) -> List[str]:
  """"name: stored → given" for each field of two configs of one class that differs."""
  return [f"{f.name} {getattr(stored, f.name)!r} → {getattr(given, f.name)!r}"
          for f in dataclasses.fields(stored)
          if f.name not in skip and getattr(stored, f.name) != getattr(given, f.name)]
