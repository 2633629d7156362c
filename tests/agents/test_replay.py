"""Replay ring buffer: row insertion order, wrap-around, one-step and sequence sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_inf.agents import base
from rlax_inf.agents import replay

WIDTH = 2


def _row(t):
  """Row t: item of env j holds x = 10 t + j."""
  x = 10.0 * t + jnp.arange(WIDTH, dtype=jnp.float32)
  return {"x": x, "y": jnp.stack([x, -x], axis=1)}


def _filled(capacity, rows):
  state = replay.init({"x": jnp.zeros(()), "y": jnp.zeros((2,))}, capacity, WIDTH)
  for t in range(rows):
    state = replay.insert(state, _row(t))
  return state


def test_insert_fills_rows_in_order_then_wraps_overwriting_oldest():
  state = _filled(5, 3)
  assert int(state.size) == 3 and int(state.position) == 3
  np.testing.assert_array_equal(state.data["x"][:3, 0], [0, 10, 20])
  np.testing.assert_array_equal(state.data["x"][:3, 1], [1, 11, 21])
  state = _filled(5, 6)  # row 5 overwrites row 0
  assert int(state.size) == 5 and int(state.position) == 1
  np.testing.assert_array_equal(state.data["x"][:, 0], [50, 10, 20, 30, 40])
  np.testing.assert_array_equal(state.data["y"][:, 1, 1], [-51, -11, -21, -31, -41])


def test_insert_of_the_wrong_width_is_an_error():
  state = replay.init({"x": jnp.zeros(())}, 4, WIDTH)
  with pytest.raises(AssertionError, match="width"):
    replay.insert(state, {"x": jnp.zeros(3)})


def test_insert_writes_one_row_in_place():
  """The compiled, donated insert updates one row: no concatenate, no full-buffer copy."""
  state = replay.init({"x": jnp.zeros((4,))}, 10_000, 8)
  hlo = jax.jit(replay.insert, donate_argnums=0).lower(
      state, {"x": jnp.ones((8, 4))}).compile().as_text()
  assert "dynamic-update-slice" in hlo
  assert "{0}: (0, {}" in hlo  # the buffer is aliased to the output (donated, in place)
  whole = [l for l in hlo.splitlines() if "f32[10000,8,4]" in l
           and any(op in l for op in ("copy(", "concatenate(", "broadcast(", "select("))]
  assert not whole, whole


def test_sample_is_uniform_over_filled_items_only():
  state = _filled(100, 5)
  batch = replay.sample(state, jax.random.PRNGKey(0), 20_000)["x"]
  values = sorted({10.0 * t + j for t in range(5) for j in range(WIDTH)})
  assert set(np.unique(np.asarray(batch)).tolist()) == set(values)  # never the empty rows
  counts = np.array([np.mean(np.asarray(batch) == v) for v in values])
  np.testing.assert_allclose(counts, 1 / len(values), atol=0.012)


@pytest.mark.parametrize("rows", [6, 13])  # partly filled; wrapped (the head at row 3)
def test_sequences_are_consecutive_steps_of_one_env_never_crossing_the_head(rows):
  capacity, length = 10, 4
  state = _filled(capacity, rows)
  seqs = np.asarray(replay.sample_sequences(state, jax.random.PRNGKey(1), 4000, length)["x"])
  assert seqs.shape == (4000, length)
  t0, env = seqs[:, 0] // 10, seqs[:, 0] % 10
  # Consecutive rows of the same env column, in insertion order.
  np.testing.assert_array_equal(seqs, (t0[:, None] + np.arange(length)) * 10 + env[:, None])
  oldest = max(rows - capacity, 0)
  starts = np.arange(oldest, rows - length + 1)
  assert set(t0.tolist()) == set(starts.tolist())  # every valid window, nothing older or newer
  counts = np.array([np.mean(t0 == s) for s in starts])
  np.testing.assert_allclose(counts, 1 / len(starts), atol=0.03)
  assert set(env.tolist()) == set(range(WIDTH))


def test_sample_under_jit_and_vmap_over_seeds():
  def one(key):
    return replay.sample_sequences(_filled(8, 8), key, 4, 3)["x"]

  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  batched = jax.jit(jax.vmap(one))(keys)
  for i in range(3):
    np.testing.assert_array_equal(batched[i], one(keys[i]))


def test_truncation_bootstraps_and_termination_does_not():
  """The loops store env.final_obs as next_obs, and `terminated` apart from `done`."""
  from rlax_inf.agents import acting
  from rlax_inf.envs import classic
  env = classic.Pendulum(episode_length=3)
  state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 1))
  rows = []
  for _ in range(3):
    action = jnp.zeros((1, 1))
    nxt = env.batch_step(state, action)
    rows.append(acting.transition(state, action, {}, nxt))
    state = nxt
  last = rows[-1]
  assert float(last.done[0]) == 1.0 and float(last.terminated[0]) == 0.0  # a time limit
  assert not np.allclose(last.next_obs, state.obs)  # the true next obs, not the reset obs
  assert isinstance(last, base.Transition)
