"""`rlax-inf list`: every config key with its default and meaning, the envs each agent takes."""
import dataclasses
import re

import pytest

from rlax_inf import envs
from rlax_inf.agents import base
from rlax_inf.agents import cli
from rlax_inf.agents import config as config_lib
from rlax_inf.agents import registry


def _list(capsys, *argv):
  assert cli.main(["list", *argv]) == 0
  return capsys.readouterr().out


def _sections(out):
  """{agent: its lines} from the agents part of the listing."""
  sections, name = {}, None
  for line in out.splitlines():
    head = re.match(r"^([\w-]+): ", line)
    if head and head.group(1) in registry.names():
      name = head.group(1)
      sections[name] = []
    elif not line.strip() or not line.startswith("  "):
      name = None
    elif name:
      sections[name].append(line)
  return sections


def _key_lines(lines):
  """{key: (shown default, meaning)} of the `    key=default  meaning` lines (wrapped joined)."""
  keys, last = {}, None
  for line in lines:
    m = re.match(r"^    (\w+)=(\S*)\s+(.*)$", line)
    if m:
      last = m.group(1)
      keys[last] = [m.group(2), m.group(3)]
    elif last and line.startswith("      "):
      keys[last][1] += " " + line.strip()
  return keys


def test_every_config_key_of_every_agent_has_its_default_and_a_meaning(capsys):
  sections = _sections(_list(capsys))
  assert set(sections) == set(registry.names())
  for name in registry.names():
    entry = registry.get(name)
    keys = _key_lines(sections[name])
    fields = {f.name for f in dataclasses.fields(entry.config)}
    assert set(keys) == fields, name
    for key, (shown, meaning) in keys.items():
      assert shown == cli._show(getattr(entry.config, key)), (name, key)  # pylint: disable=protected-access
      assert " " in meaning, f"{name}: config key {key} has no meaning ({meaning!r})"


def test_loop_keys_have_defaults_and_meanings(capsys):
  out = _list(capsys)
  loop = out.split("Loop config keys", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
  keys = _key_lines(loop)
  assert set(keys) == config_lib.field_names()
  defaults = config_lib.TrainConfig()
  for key, (shown, meaning) in keys.items():
    assert shown == cli._show(getattr(defaults, key)) and " " in meaning, key  # pylint: disable=protected-access


def test_each_agent_names_the_envs_it_takes_and_the_cheap_ones(capsys):
  sections = _sections(_list(capsys))
  table = envs.registry()
  discrete = [n for n, e in table.items() if e["discrete"]]
  for name in registry.names():
    envs_line = next(l for l in sections[name] if "envs:" in l)
    spaces = registry.get(name).action_spaces
    if base.DISCRETE in spaces:
      assert all(n in envs_line for n in discrete) and "all cheap" in envs_line, name
    if base.CONTINUOUS in spaces:
      assert "cheap on a CPU: pendulum" in envs_line, name
    else:
      assert "pendulum" not in envs_line and "continuous" not in envs_line, name
  # sql takes only discrete envs, sac only continuous ones.
  assert "cartpole" in next(l for l in sections["sql"] if "envs:" in l)
  assert "cartpole" not in next(l for l in sections["sac"] if "envs:" in l)


def test_backends_not_usable_here_are_not_listed(capsys):
  out = _list(capsys)
  import jax  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != "gpu":  # CPU (CI): Playground's warp needs an NVIDIA GPU
    assert not re.search(r"backends:[^\n]*\bwarp\b", out)
    assert "Backends usable here: generalized, jax, mjx, positional, spring" in out
    assert "CartpoleBalance" in out  # its mjx backend stays
  # The rule itself: warp only on a GPU (and only where warp is installed).
  assert "warp" not in cli._usable_backends("cpu")  # pylint: disable=protected-access
  assert {"mjx", "positional", "generalized", "spring", "jax"} <= cli._usable_backends("cpu")  # pylint: disable=protected-access


def test_list_one_agent_and_an_unknown_one(capsys):
  out = _list(capsys, "sql")
  assert set(_sections(out)) == {"sql"} and "Loop config keys" in out
  assert cli.main(["list", "nonexistent"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "nonexistent" in err[0] and "sac" in err[0]


def test_key_meanings_come_from_docstrings_comments_or_the_shared_table():
  @dataclasses.dataclass(frozen=True)
  class Toy:
    """A toy.

    Attributes:
      alpha, beta: the two weights of the toy,
        over two lines.
    """

    alpha: float = 1.0
    beta: float = 2.0
    gamma: int = 3  # the third one
    discount: float = 0.9  # γ
    undocumented: int = 0

  meanings = registry.key_meanings(Toy)
  assert meanings["alpha"] == "(alpha, beta): the two weights of the toy, over two lines"
  assert meanings["gamma"] == "the third one"
  assert meanings["discount"] == registry.KEY_MEANINGS["discount"]  # more than a bare "γ"
  assert meanings["undocumented"] == ""  # what the listing test above refuses for agents
