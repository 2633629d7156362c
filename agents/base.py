"""The agent contract: what every agent gives a training loop, and what the loop must know.

An agent is optax's shape: a factory closes over the hyper-parameters and the
environment's spec and returns a NamedTuple of pure functions over an explicit
pytree state that holds arrays only (no config, no static fields):

    agent = sac.make(SACConfig(), env.spec)          # -> Agent
    state = agent.init(key)
    action, extras = agent.act(agent.policy_params(state), obs, key, deterministic)
    state = agent.observe(state, obs)                # e.g. an observation normaliser
    state, metrics = agent.update(state, batch, key)

`agent.needs` says which loop drives it (off-policy from a replay buffer of
one-step transitions or length-T sequences, on-policy from T-step rollouts, or
differentiable: H-step windows differentiated through the simulator, whose
agents read the window's return gradients from the batch, see
`differentiable`) and which action spaces it serves; nothing is guessed from the agent's config.

Batches are `Transition`s: leading axis [B] for one-step transitions, [B, T]
for sequences and rollouts (batch-major, time second), with rlax's indexing:
`reward[t]`, `terminated[t]` and `next_obs[t]` follow `action[t]` taken at
`obs[t]`. `done[t]` marks the end of an episode after step t (terminated or
truncated): a sequence crosses into a new episode there, so multi-step targets
must cut at `done` and bootstrap from `next_obs[t]` (the true next observation,
`envs.State.final_obs`) with discount γ (1 − terminated[t]).
"""

import dataclasses
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp

OFF_POLICY = "off_policy"
ON_POLICY = "on_policy"
DIFFERENTIABLE = "differentiable"
LOOPS = (OFF_POLICY, ON_POLICY, DIFFERENTIABLE)
CONTINUOUS = "continuous"
DISCRETE = "discrete"
ACTION_SPACES = (CONTINUOUS, DISCRETE)


class UnsupportedEnv(ValueError):
  """The agent cannot serve this environment (the message names what it needs)."""


@dataclasses.dataclass(frozen=True)
class Needs:
  """What a loop must know about an agent.

  Attributes:
    loop: `OFF_POLICY` (replay buffer), `ON_POLICY` (fresh rollouts) or
      `DIFFERENTIABLE` (windows differentiated through the simulator).
    sequence_length: off-policy: 1 for one-step transitions, T > 1 for
      length-T sequences [B, T]; on-policy: the rollout length T;
      differentiable: the window length H.
    action_space: `CONTINUOUS` (float [A] in the env's box) or `DISCRETE`
      (int32 [] in [0, A)), the one this agent instance was built for.
  """

  loop: str
  sequence_length: int = 1
  action_space: str = CONTINUOUS

  def __post_init__(self):
    if self.loop not in LOOPS:
      raise ValueError(f"loop must be one of {LOOPS}, got {self.loop!r}")
    if self.sequence_length < 1:
      raise ValueError(f"sequence_length must be >= 1, got {self.sequence_length}")
    if self.loop == ON_POLICY and self.sequence_length < 2:
      raise ValueError("an on-policy rollout needs sequence_length >= 2")
    if self.action_space not in ACTION_SPACES:
      raise ValueError(f"action_space must be one of {ACTION_SPACES}, "
                       f"got {self.action_space!r}")


class Agent(NamedTuple):
  """An agent as a tuple of pure functions over an explicit state (optax's shape).

  Attributes:
    init: `init(key) -> state`, a pytree of arrays.
    act: `act(policy_params, obs[N, O], key, deterministic) -> (action[N, ...],
      extras)`; `deterministic` is a Python or traced boolean, or a [N] mask
      (one flag per env; combine with `select`); `extras` is a dict of
      [N]-leading arrays the loop stores with the transition (e.g. the
      behaviour log-probability), possibly empty.
    policy_params: `policy_params(state) -> params` (what acting needs).
    observe: `observe(state, obs[N, O]) -> state`, called on every collected
      batch of observations (observation statistics); identity if unused.
    update: `update(state, batch, key) -> (state, metrics)`, one learning step
      on a `Transition` batch; metrics are scalar arrays.
    needs: the `Needs` of this agent.
    progress_keys: metric names worth showing next to the return in a progress
      bar (e.g. a learned temperature).
    initial_carry: None for a feed-forward agent. A recurrent agent (one that
      keeps a per-env state between steps, e.g. the option it is executing)
      gives `initial_carry(n) -> carry`, a pytree of [n]-leading arrays: the
      carry at an episode's first step. Its `act` then takes the carry as a
      fifth argument, `act(params, obs, key, deterministic, carry=None)` (None:
      the initial carry), and returns the next step's carry as
      `extras['carry']`; the loops feed it back, reset to the initial carry
      where an episode ended (`acting.next_carry`).
  """

  init: Callable[[jax.Array], Any]
  act: Callable[..., Tuple[jax.Array, Dict[str, jax.Array]]]
  policy_params: Callable[[Any], Any]
  observe: Callable[[Any, jax.Array], Any]
  update: Callable[[Any, Any, jax.Array], Tuple[Any, Dict[str, jax.Array]]]
  needs: Needs
  progress_keys: Tuple[str, ...] = ()
  initial_carry: Optional[Callable[[int], Any]] = None


@flax.struct.dataclass
class Transition:
  """One step of experience, or a batch [B] / sequence batch [B, T] of them."""

  obs: jnp.ndarray  # [..., O]
  action: jnp.ndarray  # [..., A] float in the env's box, or [...] int32
  reward: jnp.ndarray  # [...]
  terminated: jnp.ndarray  # [...] float, 1 at a real terminal: discount 0
  done: jnp.ndarray  # [...] float, 1 where the episode ended (terminated or truncated)
  next_obs: jnp.ndarray  # [..., O] the true next observation (before auto-reset)
  extras: Dict[str, jnp.ndarray] = flax.struct.field(default_factory=dict)


@flax.struct.dataclass
class ActorParams:
  """What an actor-based agent's `act` needs: the observation normaliser and the actor."""

  normalizer: Any
  actor: Any


def actor_params(state: Any) -> ActorParams:
  """`policy_params` of an agent whose state has `normalizer` and `actor` fields."""
  return ActorParams(normalizer=state.normalizer, actor=state.actor)


def select(deterministic: Any, greedy: jax.Array, sampled: jax.Array) -> jax.Array:
  """`greedy` where `deterministic`, else `sampled`; a scalar flag or a [N] mask per env.

  The mask is broadcast over the trailing axes of the [N, ...] actions.
  """
  d = jnp.asarray(deterministic)
  d = jnp.reshape(d, d.shape + (1,) * (jnp.ndim(greedy) - d.ndim))
  return jnp.where(d, greedy, sampled)


def no_observe(state: Any, obs: jax.Array) -> Any:
  """`observe` of an agent that keeps no observation statistics."""
  del obs
  return state


def check_action_space(name: str, env_spec: Any, supported: Tuple[str, ...]) -> str:
  """The action space of `env_spec` if `name` serves it, else `UnsupportedEnv`.

  Args:
    name: the agent's name (for the message).
    env_spec: an `envs.EnvSpec` (or anything with `discrete` and `name`).
    supported: the action spaces the agent serves.

  Returns:
    `DISCRETE` or `CONTINUOUS`.
  """
  space = DISCRETE if getattr(env_spec, "discrete", False) else CONTINUOUS
  if space not in supported:
    env = getattr(env_spec, "name", "this environment")
    raise UnsupportedEnv(f"{name} needs {' or '.join(supported)} actions; "
                         f"{env!r} has {space} actions")
  return space


def example_action(env_spec: Any) -> jax.Array:
  """One unbatched action of the env's type and shape (zeros), for buffers and init."""
  if env_spec.discrete:
    return jnp.zeros((), jnp.int32)
  return jnp.zeros((env_spec.action_size,), jnp.float32)


def random_actions(env_spec: Any, key: jax.Array, n: int) -> jax.Array:
  """`n` actions drawn uniformly from the env's action space (prefill, exploration)."""
  if env_spec.discrete:
    return jax.random.randint(key, (n,), 0, env_spec.action_size, jnp.int32)
  return jax.random.uniform(key, (n, env_spec.action_size), jnp.float32,
                            env_spec.action_low, env_spec.action_high)
