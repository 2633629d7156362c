"""Replay ring buffer: insertion order, wrap-around, sampling, termination vs truncation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_inf.agents import replay


def _items(start, n):
  x = jnp.arange(start, start + n, dtype=jnp.float32)
  return {"x": x, "y": jnp.stack([x, -x], axis=1)}


def test_insert_fills_in_order_then_wraps_overwriting_oldest():
  state = replay.init({"x": jnp.zeros(()), "y": jnp.zeros((2,))}, capacity=5)
  state = replay.insert(state, _items(0, 3))
  assert int(state.size) == 3 and int(state.position) == 3
  np.testing.assert_array_equal(state.data["x"][:3], [0, 1, 2])
  state = replay.insert(state, _items(3, 3))  # 3, 4 at the end; 5 overwrites 0
  assert int(state.size) == 5 and int(state.position) == 1
  np.testing.assert_array_equal(state.data["x"], [5, 1, 2, 3, 4])
  np.testing.assert_array_equal(state.data["y"][:, 1], [-5, -1, -2, -3, -4])
  state = replay.insert(state, _items(6, 5))  # exactly one full lap
  np.testing.assert_array_equal(state.data["x"], [10, 6, 7, 8, 9])
  assert int(state.position) == 1


def test_insert_larger_than_capacity_is_an_error():
  state = replay.init({"x": jnp.zeros(())}, capacity=2)
  with pytest.raises(ValueError, match="capacity"):
    replay.insert(state, {"x": jnp.zeros(3)})


def test_insert_is_a_scatter_not_a_roll():
  """The compiled insert has no full-buffer copy: only a scatter of n rows."""
  state = replay.init({"x": jnp.zeros((4,))}, capacity=10_000)
  hlo = jax.jit(replay.insert, donate_argnums=0).lower(
      state, {"x": jnp.ones((8, 4))}).as_text()
  assert "scatter" in hlo
  assert "concatenate" not in hlo and "dynamic-slice" not in hlo.replace(
      "dynamic-update-slice", "")


def test_sample_is_uniform_over_filled_entries_only():
  state = replay.init({"x": jnp.zeros(())}, capacity=100)
  state = replay.insert(state, {"x": jnp.arange(10, dtype=jnp.float32)})
  batch = replay.sample(state, jax.random.PRNGKey(0), 20_000)["x"]
  assert batch.min() >= 0 and batch.max() <= 9  # never the empty slots
  counts = np.bincount(np.asarray(batch, np.int32), minlength=10)
  np.testing.assert_allclose(counts / 20_000, 0.1, atol=0.01)


def test_sample_under_jit_and_vmap_over_seeds():
  def one(key):
    state = replay.init({"x": jnp.zeros(())}, capacity=8)
    state = replay.insert(state, {"x": jnp.arange(8, dtype=jnp.float32)})
    return replay.sample(state, key, 4)["x"]

  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  batched = jax.jit(jax.vmap(one))(keys)
  for i in range(3):
    np.testing.assert_array_equal(batched[i], one(keys[i]))


def test_truncation_bootstraps_and_termination_does_not():
  """The training loop stores env.final_obs and `terminated`, never `done`."""
  from rlax_inf.envs import classic
  env = classic.Pendulum(episode_length=3)
  state = env.reset(jax.random.PRNGKey(0))
  rows = []
  for _ in range(3):
    nxt = env.step(state, jnp.zeros((1,)))
    rows.append(replay.Transition(obs=state.obs, action=jnp.zeros((1,)), reward=nxt.reward,
                                  terminated=nxt.terminated, next_obs=nxt.final_obs))
    state = nxt
  assert float(state.truncated) == 1.0 and float(state.terminated) == 0.0
  last = rows[-1]
  assert float(last.terminated) == 0.0  # a time limit: keep bootstrapping
  assert not np.allclose(last.next_obs, state.obs)  # the true next obs, not the reset obs
