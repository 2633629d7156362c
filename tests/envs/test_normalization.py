"""Observation statistics: exact against numpy, order-free merges."""

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np

from rlax_inf import envs

_merge = jax.jit(envs.merge_statistics)
_batch = jax.jit(envs.batch_statistics)


def _data(seed, n, d=3):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)) * rng.uniform(0.1, 100, size=d) +
          rng.uniform(-1e3, 1e3, size=d)).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.lists(st.integers(1, 40), min_size=1,
                                        max_size=5))
def test_sequential_updates_match_numpy(seed, sizes):
  x = _data(seed, sum(sizes))
  stats = envs.init_statistics(3)
  start = 0
  for n in sizes:  # chunk sizes vary: exercises the Chan merge weights
    stats = _merge(stats, _batch(jnp.asarray(x[start:start + n])))
    start += n
  x64 = x.astype(np.float64)
  assert float(stats.count) == len(x)
  np.testing.assert_allclose(stats.mean, x64.mean(0), rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(stats.variance, x64.var(0), rtol=1e-3, atol=1e-3)


def test_merge_is_order_free_and_matches_stacked_merge():
  parts = [_batch(jnp.asarray(_data(i, 10 + 7 * i))) for i in range(4)]
  ab = _merge(_merge(parts[0], parts[1]), _merge(parts[2], parts[3]))
  ba = _merge(parts[3], _merge(parts[2], _merge(parts[1], parts[0])))
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *parts)
  across = envs.merge_across(stacked)
  for other in (ba, across):
    np.testing.assert_allclose(ab.mean, other.mean, rtol=1e-5)
    np.testing.assert_allclose(ab.m2, other.m2, rtol=1e-4)
  # Merging with empty statistics is the identity.
  same = _merge(envs.init_statistics(3), parts[0])
  np.testing.assert_allclose(same.mean, parts[0].mean)
  np.testing.assert_allclose(same.m2, parts[0].m2)


def test_mask_vmap_and_normalize():
  x = jnp.asarray(_data(0, 64))
  mask = jnp.arange(64) % 2 == 0
  masked = envs.batch_statistics(x, mask)
  np.testing.assert_allclose(masked.mean, np.asarray(x)[::2].mean(0), rtol=1e-5)
  # Per-seed statistics under vmap, then merged across seeds.
  per_seed = jax.vmap(lambda b: envs.update_statistics(
      envs.init_statistics(3), b))(x.reshape(4, 16, 3))
  merged = envs.merge_across(per_seed)
  np.testing.assert_allclose(merged.mean, np.asarray(x).mean(0), rtol=1e-5)
  z = envs.normalize(merged, x)
  np.testing.assert_allclose(np.mean(z, 0), 0.0, atol=1e-3)
  np.testing.assert_allclose(np.std(z, 0), 1.0, atol=1e-3)
  np.testing.assert_allclose(envs.denormalize(merged, z), x, rtol=1e-4,
                             atol=1e-2)
  assert np.all(np.abs(envs.normalize(merged, x * 1e6, clip=5.0)) <= 5.0)


def test_update_across_devices_with_axis_name():
  x = jnp.asarray(_data(1, 32)).reshape(4, 8, 3)
  stats = jax.vmap(lambda b: envs.update_statistics(
      envs.init_statistics(3), b, axis_name='dev'), axis_name='dev')(x)
  # Every "device" ends with the statistics of all data.
  np.testing.assert_allclose(stats.mean[0], stats.mean[3])
  np.testing.assert_allclose(stats.mean[0], np.asarray(x).reshape(-1, 3).mean(0),
                             rtol=1e-5)
  assert float(stats.count[0]) == 32
