"""Name -> (default config, factory): the only place that lists agents.

    entry = registry.get("sac")
    agent = entry.make(dataclasses.replace(entry.config, hidden=(64, 64)), env.spec)

Registering checks the config: a frozen dataclass whose field names do not
collide with the loop's `TrainConfig` (so `--set key=value` is unambiguous).
"""

import dataclasses
import inspect
import re
from typing import Any, Callable, Dict, Tuple

from rlax_inf.agents import apg
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


# What a config key means, for `rlax-inf list`, where its class documents it
# nowhere (no `Attributes:` entry, no comment on the field): keys that mean the
# same for every agent, and the loop's `TrainConfig`.
KEY_MEANINGS = {
    # agents
    "hidden": "hidden layer widths of the networks (e.g. 256,256)",
    "actor_lr": "Adam step size of the actor",
    "critic_lr": "Adam step size of the critic(s)",
    "alpha_lr": "Adam step size of the log temperature (when it is learned)",
    "policy_lr": "Adam step size of the policy",
    "value_lr": "Adam step size of the value function",
    "learning_rate": "Adam step size",
    "discount": "γ, the discount of future rewards",
    "reward_scale": "rewards are multiplied by this in the targets",
    "normalize_observations": "feed (obs − mean)/std of all observations seen",
    "init_temperature": "the temperature τ (α) at the start",
    "learn_temperature": "tune τ so that the policy's entropy tracks target_entropy",
    "target_entropy": "the entropy target of the temperature tuning (None: −|A|)",
    "policy_loss": "rkl: reverse KL (SAC's actor step); fkl: forward KL (SAC-FKL)",
    "num_action_samples": "actions sampled per state in the actor step",
    "polyak": "ρ of the Polyak average of the target networks",
    "td_lambda": "λ of the advantages and of the value's soft λ-returns",
    "max_grad_norm": "clip each gradient to this global norm (None: no clipping)",
    "num_options": "O, the number of options",
    # the loop (TrainConfig)
    "env": "environment name (`train --env`)",
    "backend": "physics backend (`train --backend`; None: the env's first)",
    "num_seeds": "independent seeds trained at once, vmapped (`train --seeds`)",
    "seed": "the first seed; seed i uses PRNGKey(seed + i) (`train --seed`)",
    "total_steps": "env steps per seed, rounded to the schedule (`train --steps`)",
    "num_envs": "environments stepped at once per seed",
    "batch_size": "transitions (or sequences) per gradient update (off-policy)",
    "grad_updates_per_step": "gradient updates per vector step of num_envs envs (off-policy)",
    "replay_size": "replay buffer capacity in transitions per seed (off-policy)",
    "prefill_steps": "random-action transitions per seed before training (off-policy)",
    "num_minibatches": "minibatches of whole rollouts per epoch (on-policy)",
    "num_epochs": "passes over each rollout (on-policy)",
    "eval_every": "env steps per seed between evaluations (one compiled interval)",
    "num_eval_envs": "episodes per evaluation and policy (deterministic, and stochastic)",
    "eval_stochastic": "also score the sampling policy (False: the deterministic one only)",
    "episode_length": "time limit of an episode in agent steps",
    "action_repeat": "env steps per agent action",
    "fresh_resets": "draw a new initial state at every reset (False: Brax's cached one)",
    "checkpoint_every": "evaluations between checkpoints",
    "num_devices": "devices the seeds are sharded over (0: as many as divide num_seeds)",
    "fast_compile": "XLA:CPU's older fusion emitters: ~0.6x the compile time (False: XLA's own)",
}


def _documented(cls: type) -> Dict[str, str]:
  """Field meanings from the `Attributes:` docstring sections of `cls` and its bases."""
  out = {}
  for klass in reversed(cls.__mro__):
    doc = inspect.getdoc(klass) or ""
    if "Attributes:" not in doc:
      continue
    section = doc.split("Attributes:", 1)[1]
    entries = re.findall(r"^ {2}([\w, ]+): (.*(?:\n {4}.*)*)", section, flags=re.M)
    for keys, text in entries:
      group = [k.strip() for k in keys.split(",")]
      text = " ".join(text.split()).rstrip(".")
      for key in group:  # "a, b: the x and the y" keeps its names for each of a and b
        out[key] = text if len(group) == 1 else f"({', '.join(group)}): {text}"
  return out


def _commented(cls: type) -> Dict[str, str]:
  """Field meanings from the comment after each field in the class bodies (`x: int = 1  # ...`)."""
  out = {}
  for klass in reversed(cls.__mro__):
    if not dataclasses.is_dataclass(klass):
      continue
    try:
      source = inspect.getsource(klass)
    except (OSError, TypeError):
      continue
    out.update(re.findall(r"^\s+(\w+)\s*:[^=\n]*=[^#\n]*#\s*(.+)$", source, flags=re.M))
  return out


def key_meanings(cls: type) -> Dict[str, str]:
  """What each field of the config class `cls` means, for `rlax-inf list`.

  From the class's (or a base's) `Attributes:` docstring entry or the comment on
  the field, unless that is a bare symbol ("γ") and the shared `KEY_MEANINGS`
  says more; "" where none says.
  """
  documented, commented = _documented(cls), _commented(cls)
  out = {}
  for f in dataclasses.fields(cls):
    own = documented.get(f.name) or commented.get(f.name, "")
    shared = KEY_MEANINGS.get(f.name, "")
    out[f.name] = own if " " in own or not shared else shared
  return out


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
register("apg", apg.APGConfig(), apg.make, base.DIFFERENTIABLE, (base.CONTINUOUS,),
         "analytic policy gradient through a differentiable simulator (SHAC critic optional)")
