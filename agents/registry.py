"""Name -> (default config, factory): the only place that lists agents.

    entry = registry.get("sac")
    agent = entry.make(dataclasses.replace(entry.config, hidden=(64, 64)), env.spec)

Registering checks the config: a frozen dataclass whose field names do not
collide with the loop's `TrainConfig` (so `--set key=value` is unambiguous).
"""

import dataclasses
from typing import Any, Callable, Dict, Tuple

from rlax_inf.agents import base
from rlax_inf.agents import config as config_lib
from rlax_inf.agents import gcl
from rlax_inf.agents import klpg
from rlax_inf.agents import mpo
from rlax_inf.agents import options
from rlax_inf.agents import sac
from rlax_inf.agents import sql
from rlax_inf.agents import virel


@dataclasses.dataclass(frozen=True)
class Entry:
  """A registered agent.

  Attributes:
    name: the registry name (`--agent NAME`).
    config: the default config instance (a frozen dataclass).
    make: `make(config, env_spec) -> base.Agent`.
    loop: `base.OFF_POLICY` or `base.ON_POLICY`.
    action_spaces: the action spaces it serves (`base.CONTINUOUS`, `base.DISCRETE`).
    description: one line for `rlax-inf list`.
  """

  name: str
  config: Any
  make: Callable[[Any, Any], base.Agent]
  loop: str
  action_spaces: Tuple[str, ...]
  description: str

  @property
  def config_class(self) -> type:
    return type(self.config)


_REGISTRY: Dict[str, Entry] = {}


def register(name: str, config: Any, make: Callable[[Any, Any], base.Agent], loop: str,
             action_spaces: Tuple[str, ...], description: str) -> Entry:
  """Add an agent; `ValueError` if its config collides with the loop's fields.

  Args:
    name: the registry name.
    config: the default config (a frozen dataclass instance).
    make: the factory.
    loop: which loop drives it.
    action_spaces: the action spaces it serves.
    description: one line for `rlax-inf list`.

  Returns:
    The new `Entry`.
  """
  if name in _REGISTRY:
    raise ValueError(f"agent {name!r} is already registered")
  if not dataclasses.is_dataclass(config) or isinstance(config, type):
    raise ValueError(f"agent {name!r}: config must be a dataclass instance, got {config!r}")
  if not config.__dataclass_params__.frozen:  # pytype: disable=attribute-error
    raise ValueError(f"agent {name!r}: config class {type(config).__name__} must be frozen")
  clash = sorted({f.name for f in dataclasses.fields(config)} & config_lib.field_names())
  if clash:
    raise ValueError(f"agent {name!r}: config fields {clash} collide with the loop's "
                     "TrainConfig fields; rename them")
  if loop not in base.LOOPS:
    raise ValueError(f"agent {name!r}: loop must be one of {base.LOOPS}, got {loop!r}")
  if not action_spaces or set(action_spaces) - set(base.ACTION_SPACES):
    raise ValueError(f"agent {name!r}: action_spaces must be a non-empty subset of "
                     f"{base.ACTION_SPACES}, got {action_spaces!r}")
  entry = Entry(name, config, make, loop, tuple(action_spaces), description)
  _REGISTRY[name] = entry
  return entry


def get(name: str) -> Entry:
  """The entry of `name`; `ValueError` naming the registered agents otherwise."""
  if name not in _REGISTRY:
    raise ValueError(f"unknown agent {name!r}; valid agents: {', '.join(_REGISTRY)}")
  return _REGISTRY[name]


def names() -> Tuple[str, ...]:
  return tuple(_REGISTRY)


# --- the agents: one line each ----------------------------------------------
register("sac", sac.SACConfig(), sac.make, base.OFF_POLICY, (base.CONTINUOUS,),
         "soft actor-critic: reverse-KL actor, twin critics, tuned temperature")
register("sac-fkl", sac.SACConfig(policy_loss="fkl", num_action_samples=16), sac.make,
         base.OFF_POLICY,
         (base.CONTINUOUS,), "SAC with the forward-KL actor step (Lavington et al. 2021)")
register("sql", sql.SQLConfig(), sql.make, base.OFF_POLICY, (base.DISCRETE,),
         "soft Q-learning: Boltzmann policy of Q, one-step or n-step soft targets")
register("klpg", klpg.KLPGConfig(), klpg.make, base.ON_POLICY, (base.CONTINUOUS, base.DISCRETE),
         "KL-regularised policy gradient (Bartunov), uniform or stable-EM prior")
register("mpo", mpo.MPOConfig(), mpo.make, base.OFF_POLICY, (base.CONTINUOUS,),
         "MPO: E-step weights with a temperature dual, decoupled-KL Gaussian M-step")
register("virel", virel.VIRELConfig(), virel.make, base.OFF_POLICY, (base.CONTINUOUS,),
         "VIREL: reverse KL to exp(Q/ε), ε = scale · the critic's MSBE")
register("gcl", gcl.GCLConfig(), gcl.make, base.OFF_POLICY, (base.CONTINUOUS,),
         "guided cost learning: reward from demonstrations (SNIS log Z), SAC on it")
register("options", options.OptionsConfig(), options.make, base.ON_POLICY,
         (base.CONTINUOUS, base.DISCRETE),
         "policy over options on the augmented bound with a reverse model (Bartunov)")
