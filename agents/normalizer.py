"""Running observation normaliser (mean / variance over every observation seen).

Pure: `update(state, obs_batch) -> state`; `normalize(state, obs)`. Merging uses
Chan et al.'s parallel variance formula, so batches of any size combine exactly.
"""

from typing import Callable

import flax.struct
import jax.numpy as jnp


@flax.struct.dataclass
class NormalizerState:
  count: jnp.ndarray  # [] float32, observations seen
  mean: jnp.ndarray  # [O]
  m2: jnp.ndarray  # [O] sum of squared deviations


def init(obs_size: int) -> NormalizerState:
  return NormalizerState(
      count=jnp.zeros((), jnp.float32),
      mean=jnp.zeros((obs_size,), jnp.float32),
      m2=jnp.zeros((obs_size,), jnp.float32))


def update(state: NormalizerState, obs: jnp.ndarray) -> NormalizerState:
  """Fold a batch `obs[N, O]` into the running statistics."""
  n = jnp.asarray(obs.shape[0], jnp.float32)
  batch_mean = jnp.mean(obs, axis=0)
  batch_m2 = jnp.sum(jnp.square(obs - batch_mean), axis=0)
  total = state.count + n
  delta = batch_mean - state.mean
  mean = state.mean + delta * n / total
  m2 = state.m2 + batch_m2 + jnp.square(delta) * state.count * n / total
  return NormalizerState(count=total, mean=mean, m2=m2)


def normalize(state: NormalizerState, obs: jnp.ndarray, clip: float = 10.0) -> jnp.ndarray:
  """(obs − mean) / std, std floored at 1e-3 and the result clipped to ±clip.

  Before any update (count 0) this is the identity up to the clip.
  """
  var = jnp.where(state.count > 1, state.m2 / jnp.maximum(state.count - 1, 1.0), 1.0)
  std = jnp.maximum(jnp.sqrt(var), 1e-3)
  return jnp.clip((obs - state.mean) / std, -clip, clip)


def make_observe(enabled: bool) -> Callable:
  """An agent's `observe(state, obs)`: folds `obs` into `state.normalizer` if enabled.

  The state is any flax dataclass with a `normalizer` field; disabled, `observe`
  returns the state unchanged (the statistics stay at zero and `normalize` is the
  identity up to the clip).
  """

  def observe(state, obs):
    if not enabled:
      return state
    return state.replace(normalizer=update(state.normalizer, obs))

  return observe
