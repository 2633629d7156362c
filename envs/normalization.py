"""Observation normalisation as a pure pytree statistic.

`RunningStatistics` holds (count, mean, M2) per observation component, M2 the
sum of squared deviations. Batches are folded in and statistics from several
seeds or devices are merged with the parallel formula of Chan, Golub &
LeVeque (1979):

  n = n_a + n_b,  δ = μ_b − μ_a,
  μ = μ_a + δ·n_b/n,  M2 = M2_a + M2_b + δ²·n_a·n_b/n,

which is exact (in exact arithmetic) in any order of merging. Agents may use
it or not; nothing in the environments depends on it.
"""

from typing import Optional

import chex
from flax import struct
import jax
import jax.numpy as jnp


@struct.dataclass
class RunningStatistics:
  """Running mean / variance (a pytree).

  Attributes:
    count: [] float32 number of samples folded in.
    mean: [D] sample mean.
    m2: [D] sum of squared deviations from the mean.
  """

  count: jax.Array
  mean: jax.Array
  m2: jax.Array

  @property
  def variance(self) -> jax.Array:
    """Population variance M2 / n (0 before any sample)."""
    return self.m2 / jnp.maximum(self.count, 1.0)

  @property
  def std(self) -> jax.Array:
    return jnp.sqrt(self.variance)


def init_statistics(size: int, dtype=jnp.float32) -> RunningStatistics:
  """Empty statistics for observations of length `size`.

  Args:
    size: observation dimension D.
    dtype: floating dtype of mean and M2.

  Returns:
    `RunningStatistics` with count 0.
  """
  return RunningStatistics(
      count=jnp.zeros((), jnp.float32),
      mean=jnp.zeros((size,), dtype),
      m2=jnp.zeros((size,), dtype))


def merge_statistics(a: RunningStatistics,
                     b: RunningStatistics) -> RunningStatistics:
  """Merges two statistics (Chan et al. parallel update).

  Args:
    a: statistics of one set of samples.
    b: statistics of a disjoint set of samples.

  Returns:
    Statistics of the union. Merging with empty statistics is the identity.
  """
  chex.assert_equal_shape([a.mean, b.mean])
  count = a.count + b.count
  safe = jnp.maximum(count, 1.0)
  delta = b.mean - a.mean
  mean = a.mean + delta * (b.count / safe)
  m2 = a.m2 + b.m2 + delta**2 * (a.count * b.count / safe)
  return RunningStatistics(count=count, mean=mean, m2=m2)


def batch_statistics(x: jax.Array,
                     mask: Optional[jax.Array] = None) -> RunningStatistics:
  """Statistics of a batch of observations.

  Args:
    x: [..., D] observations (all leading axes are batch axes).
    mask: optional [...] weights in {0, 1}: which rows count.

  Returns:
    `RunningStatistics` of the (masked) rows.
  """
  chex.assert_rank(x, {1, 2, 3, 4})
  d = x.shape[-1]
  x = x.reshape(-1, d)
  if mask is None:
    w = jnp.ones((x.shape[0],), x.dtype)
  else:
    w = jnp.asarray(mask, x.dtype).reshape(-1)
    chex.assert_shape(w, (x.shape[0],))
  count = jnp.sum(w)
  mean = jnp.sum(w[:, None] * x, axis=0) / jnp.maximum(count, 1.0)
  m2 = jnp.sum(w[:, None] * (x - mean)**2, axis=0)
  return RunningStatistics(count=count.astype(jnp.float32), mean=mean, m2=m2)


def update_statistics(stats: RunningStatistics, x: jax.Array,
                      mask: Optional[jax.Array] = None,
                      axis_name: Optional[str] = None) -> RunningStatistics:
  """Folds a batch of observations into `stats`.

  Args:
    stats: current statistics.
    x: [..., D] new observations.
    mask: optional [...] {0, 1} weights of the rows.
    axis_name: if given (inside pmap / shard_map), the batch statistics of all
      devices on that axis are merged first, so every device ends with the same
      statistics.

  Returns:
    Updated statistics.
  """
  chex.assert_equal_shape_suffix([stats.mean, x], 1)
  batch = batch_statistics(x, mask)
  if axis_name is not None:
    batch = merge_across(jax.lax.all_gather(batch, axis_name))
  return merge_statistics(stats, batch)


def merge_across(stacked: RunningStatistics) -> RunningStatistics:
  """Merges statistics stacked along a leading axis (seeds, devices).

  Args:
    stacked: `RunningStatistics` whose leaves have a leading axis K.

  Returns:
    The merged statistics of all K parts.
  """
  count = jnp.sum(stacked.count, axis=0)
  safe = jnp.maximum(count, 1.0)
  mean = jnp.sum(stacked.count[:, None] * stacked.mean, axis=0) / safe
  m2 = jnp.sum(stacked.m2 + stacked.count[:, None] * (stacked.mean - mean)**2,
               axis=0)
  return RunningStatistics(count=count, mean=mean, m2=m2)


def normalize(stats: RunningStatistics, x: jax.Array, clip: float = 10.0,
              epsilon: float = 1e-6) -> jax.Array:
  """(x − μ) / √(σ² + ε), clipped to [−clip, clip].

  Args:
    stats: statistics.
    x: [..., D] observations.
    clip: bound on the normalised values.
    epsilon: added to the variance.

  Returns:
    Normalised observations, same shape as `x`.
  """
  chex.assert_equal_shape_suffix([stats.mean, x], 1)
  z = (x - stats.mean) / jnp.sqrt(stats.variance + epsilon)
  return jnp.clip(z, -clip, clip)


def denormalize(stats: RunningStatistics, z: jax.Array,
                epsilon: float = 1e-6) -> jax.Array:
  """Inverse of `normalize` (without the clip): μ + z·√(σ² + ε)."""
  chex.assert_equal_shape_suffix([stats.mean, z], 1)
  return stats.mean + z * jnp.sqrt(stats.variance + epsilon)
