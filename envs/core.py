"""The one environment interface: pure `reset` / `step` with auto-reset.

Every suite (Brax, MJX, MuJoCo Playground, classic control, tabular) implements a
small *core*: `core_reset(key) -> (inner, obs)` and
`core_step(inner, action, key) -> (inner, obs, reward, terminated)` on one
unbatched environment. `Environment` wraps a core with what every agent needs
and no suite should re-implement:

* action checks at trace time and sanitisation of non-finite actions,
* `action_repeat` (rewards summed, stops at a termination),
* a time limit that **truncates** (bootstrap through it) as opposed to
  **terminates** (do not bootstrap),
* auto-reset from a PRNG key carried in the state (deterministic for a fixed
  initial key; every episode starts from a fresh random initial state),
* per-episode metrics.

Users vmap: `jax.vmap(env.reset)(keys)`, `jax.vmap(env.step)(states, actions)`,
or `env.batch_step(states, actions)`: the same result, but a fresh reset is
computed only for the envs whose episode ended (see `Environment.batch_step`).
"""

import abc
import dataclasses
from typing import Any, Dict, Optional, Tuple

import chex
from flax import struct
import jax
import jax.numpy as jnp

Array = jax.Array

#: Names of the per-episode metrics kept in `State.metrics` (all float32 []).
#: `episode_return` / `episode_length`: return and number of agent steps of the
#: most recently COMPLETED episode (0 until one completes);
#: `running_return` / `running_length`: of the episode in progress (0 right
#: after an auto-reset); `episodes_completed`: how many episodes have ended.
METRIC_NAMES = (
    'episode_return',
    'episode_length',
    'running_return',
    'running_length',
    'episodes_completed',
)


@struct.dataclass
class State:
  """State of one unbatched environment (a pytree).

  Attributes:
    obs: [observation_size] observation to act from. After an auto-reset this
      is the FIRST observation of the new episode.
    reward: [] reward of the transition just taken (summed over action_repeat).
    done: [] 1.0 if the transition just taken ended the episode (either way).
    terminated: [] 1.0 only on a real terminal state; use
      `discount = 1 - terminated`.
    truncated: [] 1.0 only when the time limit cut an episode that did not
      terminate. `done == max(terminated, truncated)`; both are never 1.
    final_obs: [observation_size] the true next observation of the transition
      just taken (before auto-reset); equals `obs` when `done == 0`. Store this
      as next_obs in replay.
    metrics: dict of float32 [] with the keys of `METRIC_NAMES`.
    inner: suite-specific state (physics state, tabular state index, ...).
    steps: [] int32 agent steps taken in the current episode.
    key: PRNG key used for the next auto-reset.
    cached_reset: None, or (inner, obs) of the one initial state reused by
      every auto-reset when the env was made with `fresh_resets=False`.
  """

  obs: Array
  reward: Array
  done: Array
  terminated: Array
  truncated: Array
  final_obs: Array
  metrics: Dict[str, Array]
  inner: Any
  steps: Array
  key: Array
  cached_reset: Any = None


@dataclasses.dataclass(frozen=True)
class EnvSpec:
  """Static description of an environment (plain Python data).

  Attributes:
    name: registry name.
    suite: 'brax', 'playground', 'classic' or 'tabular'.
    backend: physics backend ('generalized', 'positional', 'spring', 'mjx') or
      'jax' for the pure-JAX suites.
    observation_size: length of the flat observation vector.
    action_size: continuous: action dimension; discrete: number of actions.
    discrete: True for int32 scalar actions in [0, action_size).
    action_low: lower bound of every continuous action component (-1.0).
    action_high: upper bound of every continuous action component (1.0).
    episode_length: time limit, in agent steps (`step` calls).
    action_repeat: underlying steps per agent step.
    differentiable: whether `step` is differentiable w.r.t. the action (see
      `rlax_inf.envs` docs for which backends agree with finite differences).
  """

  name: str
  suite: str
  backend: str
  observation_size: int
  action_size: int
  discrete: bool
  action_low: float
  action_high: float
  episode_length: int
  action_repeat: int
  differentiable: bool

  def as_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)


class Environment(abc.ABC):
  """Pure, jittable, vmappable environment with auto-reset and a time limit.

  Subclasses implement `core_reset` and `core_step` for ONE unbatched
  environment and set `self.spec`; this class does the rest. Instances are
  immutable after construction and safe to close over in `jax.jit`.

  Args:
    spec: the environment's `EnvSpec`. `episode_length` is in agent steps.
  """

  #: True: every auto-reset samples a fresh initial state (the default).
  #: False: like Brax's AutoResetWrapper, one initial state per env, sampled
  #: at `reset`, is reused by every auto-reset: cheaper steps (no reset is
  #: computed inside `step`), less diverse starts. Set via
  #: `make(..., fresh_resets=False)`.
  fresh_resets = True

  #: False for suites whose `core_step` ignores its key (deterministic given
  #: the action): `step` then draws no random numbers except when an episode
  #: ends (the reset key is split off the carried key only then). Random
  #: numbers are most of the wrapper's cost on cheap dynamics.
  stochastic_dynamics = True

  def __init__(self, spec: EnvSpec):
    if spec.episode_length < 1:
      raise ValueError(f'episode_length must be >= 1, got {spec.episode_length}')
    if spec.action_repeat < 1:
      raise ValueError(f'action_repeat must be >= 1, got {spec.action_repeat}')
    self.spec = spec

  # --- what a suite implements -------------------------------------------

  @abc.abstractmethod
  def core_reset(self, key: Array) -> Tuple[Any, Array]:
    """Samples an initial state. Returns (inner, obs)."""

  @abc.abstractmethod
  def core_step(self, inner: Any, action: Array,
                key: Array) -> Tuple[Any, Array, Array, Array]:
    """One underlying step. Returns (inner, obs, reward, terminated)."""

  # --- convenience attributes (the contract lists them on env or spec) ---

  def __getattr__(self, name):
    # Only called when normal lookup fails: expose the spec's fields.
    if name != 'spec' and 'spec' in self.__dict__ and hasattr(self.spec, name):
      return getattr(self.spec, name)
    raise AttributeError(name)

  def __repr__(self):
    s = self.spec
    return (f'{type(self).__name__}(name={s.name!r}, backend={s.backend!r}, '
            f'episode_length={s.episode_length}, '
            f'action_repeat={s.action_repeat})')

  # --- the public interface ---------------------------------------------

  def reset(self, key: Array) -> State:
    """Starts an episode.

    Args:
      key: a PRNG key (typed or raw uint32[2]).

    Returns:
      The initial `State`: reward, done, terminated, truncated are 0,
      `final_obs == obs`, metrics are 0.
    """
    key_reset, key_carry = jax.random.split(key)
    cached = None
    if self.fresh_resets:
      inner, obs = self.core_reset(key_reset)
    else:
      # The first state and the cached one from one vmapped `core_reset`: one
      # copy of the reset in the program instead of two (a Brax reset is about
      # half of an env program's compile time on a CPU).
      both = jax.vmap(self.core_reset)(
          jnp.stack([key_reset, jax.random.fold_in(key_carry, 1)]))
      (inner, obs), cached = (jax.tree.map(lambda x, i=i: x[i], both) for i in (0, 1))
    obs = jnp.asarray(obs)
    chex.assert_shape(obs, (self.spec.observation_size,))
    zero = jnp.zeros((), jnp.float32)
    return State(
        obs=obs,
        reward=zero,
        done=zero,
        terminated=zero,
        truncated=zero,
        final_obs=obs,
        metrics={k: zero for k in METRIC_NAMES},
        inner=inner,
        steps=jnp.zeros((), jnp.int32),
        key=key_carry,
        cached_reset=cached,
    )

  def step(self, state: State, action: Array) -> State:
    """Takes one agent step, auto-resetting if the episode ends.

    Non-finite continuous actions are never passed to the dynamics: NaN becomes
    0 and ±inf becomes the bound; every component is then clipped to
    [action_low, action_high]. Discrete actions are clipped to
    [0, action_size - 1].

    Under `jax.vmap` the fresh reset (`fresh_resets=True`) is computed for
    every env at every step and selected where an episode ended; `batch_step`
    steps a batch and computes resets only for the envs that need one.

    Args:
      state: the current `State` of one (unbatched) environment.
      action: continuous: floating [action_size]; discrete: integer [].

    Returns:
      The next `State` (see `State` for the meaning of each field).

    Raises:
      ValueError: at trace time, if `action` has the wrong shape or dtype.
    """
    stepped = self._advance(state, action)
    if self.fresh_resets:
      key_carry, key_reset = jax.random.split(stepped.key)
      reset = self.core_reset(key_reset)
      stepped = stepped.replace(
          key=jnp.where(stepped.done > 0, key_carry, stepped.key))
    else:
      reset = state.cached_reset
    return _apply_reset(stepped, reset)

  def batch_step(self, state: State, action: Array,
                 reset_chunk: Optional[int] = None) -> State:
    """`jax.vmap(self.step)` over a leading batch axis, resetting only when needed.

    Same result as `jax.vmap(self.step)(state, action)` (same keys, flags,
    metrics and reset states), cheaper with `fresh_resets=True`: the batch is
    stepped without resets, then a `lax.while_loop` resets the envs whose
    episode ended, `reset_chunk` of them per iteration (found with
    `jnp.nonzero`, gathered, reset with `core_reset`, scattered back). A step
    where no episode ends computes no reset; one where k ended computes
    ceil(k / reset_chunk) × reset_chunk. Under an outer `jax.vmap` (e.g. over
    seeds) the loop runs the largest iteration count of the batch (masked for
    the others), so no collective over that axis is needed. With
    `fresh_resets=False` this is exactly `jax.vmap(self.step)`.

    Args:
      state: `State` with a leading batch axis [B] on every leaf.
      action: [B, action_size] floating, or [B] integer (discrete).
      reset_chunk: envs reset per loop iteration; default max(1, B // 16).

    Returns:
      The next `State`, batched [B].
    """
    if not self.fresh_resets:
      return jax.vmap(self.step)(state, action)
    stepped = jax.vmap(self._advance)(state, action)
    num = stepped.done.shape[0]
    chunk = max(1, num // 16) if reset_chunk is None else int(reset_chunk)
    if not 1 <= chunk <= num:
      raise ValueError(f'reset_chunk must be in [1, {num}]; got {reset_chunk}.')

    def pending(carry):
      return jnp.any(carry[-1])

    def reset_some(carry):
      inner, obs, key, todo = carry
      # Indices of up to `chunk` envs still to reset; `num` (out of range)
      # pads, and scatters to it are dropped.
      idx = jnp.nonzero(todo, size=chunk, fill_value=num)[0]
      key_carry, key_reset = jax.vmap(jax.random.split, out_axes=1)(
          key[jnp.minimum(idx, num - 1)])
      r_inner, r_obs = jax.vmap(self.core_reset)(key_reset)
      put = lambda x, r: x.at[idx].set(r.astype(x.dtype), mode='drop')
      return (jax.tree.map(put, inner, r_inner), put(obs, jnp.asarray(r_obs)),
              put(key, key_carry), todo.at[idx].set(False, mode='drop'))

    inner, obs, key, _ = jax.lax.while_loop(
        pending, reset_some,
        (stepped.inner, stepped.obs, stepped.key, stepped.done > 0))
    return stepped.replace(inner=inner, obs=obs, key=key)

  def _advance(self, state: State, action: Array) -> State:
    """`step` without the reset: the next State before auto-reset.

    Every field is final except, where `done`, `obs` and `inner` (still the
    ones of the transition just taken) and, with fresh resets, `key`: the
    reset splits it into the key carried on and the key of the new initial
    state (see `step` and `batch_step`).
    """
    action = self.check_action(action)
    if self.stochastic_dynamics:
      key, key_step = jax.random.split(state.key)
    else:  # No randomness is consumed: carry the key unchanged.
      key = key_step = state.key
    inner, obs, reward, terminated = self._repeat_step(state.inner, action,
                                                       key_step)
    reward = jnp.asarray(reward, jnp.float32)
    terminated = jnp.asarray(terminated > 0, jnp.float32)
    steps = state.steps + 1
    time_up = (steps >= self.spec.episode_length).astype(jnp.float32)
    truncated = time_up * (1.0 - terminated)
    done = jnp.maximum(terminated, truncated)
    is_done = done > 0

    m = state.metrics
    running_return = m['running_return'] + reward
    running_length = m['running_length'] + 1.0
    metrics = {
        'episode_return': jnp.where(is_done, running_return,
                                    m['episode_return']),
        'episode_length': jnp.where(is_done, running_length,
                                    m['episode_length']),
        'running_return': jnp.where(is_done, 0.0, running_return),
        'running_length': jnp.where(is_done, 0.0, running_length),
        'episodes_completed': m['episodes_completed'] + done,
    }
    stepped = State(
        obs=obs,
        reward=reward,
        done=done,
        terminated=terminated,
        truncated=truncated,
        final_obs=obs,
        metrics=metrics,
        inner=inner,
        steps=jnp.where(is_done, 0, steps),
        key=key,
        cached_reset=state.cached_reset,
    )
    return stepped

  # --- helpers ----------------------------------------------------------

  def check_action(self, action: Array) -> Array:
    """Checks `action` at trace time and sanitises its values.

    Args:
      action: continuous: floating [action_size]; discrete: integer [].

    Returns:
      The action, clipped to the valid range (non-finite values replaced).

    Raises:
      ValueError: naming `action`, on a wrong shape or dtype.
    """
    spec = self.spec
    action = jnp.asarray(action)
    if spec.discrete:
      if action.shape != () or not jnp.issubdtype(action.dtype, jnp.integer):
        raise ValueError(
            f'{spec.name}: `action` must be an integer scalar (shape (), '
            f'int32) in [0, {spec.action_size}); got shape {action.shape}, '
            f'dtype {action.dtype}. Batched? vmap env.step.')
      return jnp.clip(action, 0, spec.action_size - 1).astype(jnp.int32)
    if (action.shape != (spec.action_size,) or
        not jnp.issubdtype(action.dtype, jnp.floating)):
      raise ValueError(
          f'{spec.name}: `action` must be floating with shape '
          f'({spec.action_size},); got shape {action.shape}, dtype '
          f'{action.dtype}. Batched? vmap env.step.')
    action = jnp.nan_to_num(action, nan=0.0, posinf=spec.action_high,
                            neginf=spec.action_low)
    return jnp.clip(action, spec.action_low, spec.action_high)

  def _repeat_step(self, inner, action, key):
    """`action_repeat` core steps; rewards summed; frozen after termination."""
    repeat = self.spec.action_repeat
    if repeat == 1:
      return self.core_step(inner, action, key)

    def body(carry, k):
      inner, obs, total, terminated = carry
      n_inner, n_obs, r, term = self.core_step(inner, action, k)
      alive = terminated == 0
      keep = lambda new, old: jax.tree.map(
          lambda x, y: jnp.where(alive, x, y), new, old)
      carry = (keep(n_inner, inner), keep(n_obs, obs),
               total + jnp.where(alive, r, 0.0),
               jnp.where(alive, jnp.asarray(term, jnp.float32), terminated))
      return carry, None

    inner, obs, reward, terminated = self.core_step(inner, action, key)
    carry = (inner, obs, jnp.asarray(reward, jnp.float32),
             jnp.asarray(terminated, jnp.float32))
    keys = jax.random.split(jax.random.fold_in(key, 1), repeat - 1)
    carry, _ = jax.lax.scan(body, carry, keys)
    return carry


def _apply_reset(stepped: State, reset: Tuple[Any, Array]) -> State:
  """Where `stepped.done`, replaces `inner` / `obs` by the reset's."""
  reset_inner, reset_obs = reset
  is_done = stepped.done > 0
  inner = jax.tree.map(lambda x, y: jnp.where(is_done, x, y), reset_inner,
                       stepped.inner)
  return stepped.replace(inner=inner,
                         obs=jnp.where(is_done, reset_obs, stepped.obs))
