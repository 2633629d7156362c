"""Pure-JAX uniform replay, one per seed: one-step transitions and length-T sequences.

The buffer is a ring of `capacity` rows; each row holds the `width` items one
vector step of `width` envs produced (time-major per env, so a sequence is
consecutive rows of one column). Insertion writes one row with one
dynamic-update-slice (O(width) work, in place when the buffer is donated);
nothing is ever rolled or copied whole.

  sample            B items drawn uniformly, with replacement, from the filled rows
  sample_sequences  B windows of T consecutive rows of one column each, drawn
                    uniformly among the windows that lie inside the filled part
                    and do not cross the write head (never mixing old and new data)

Items are stored as `base.Transition`s with `terminated` (a real terminal:
discount 0), `done` (episode boundary) and the true next observation
(`envs.State.final_obs`), so time-limit truncations keep bootstrapping from the
next state and sequences know where episodes end.
"""

from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class ReplayState:
  data: Any  # pytree of [capacity, width, ...] arrays
  position: jnp.ndarray  # [] int32, next row to write
  size: jnp.ndarray  # [] int32, filled rows (≤ capacity)

  @property
  def capacity(self) -> int:
    return jax.tree.leaves(self.data)[0].shape[0]

  @property
  def width(self) -> int:
    return jax.tree.leaves(self.data)[0].shape[1]


def init(example: Any, capacity: int, width: int = 1) -> ReplayState:
  """An empty buffer of `capacity` rows × `width` items shaped after one unbatched `example`."""
  if capacity < 1 or width < 1:
    raise ValueError(f"capacity and width must be >= 1, got {capacity}, {width}")
  data = jax.tree.map(
      lambda x: jnp.zeros((capacity, width) + jnp.shape(x), jnp.asarray(x).dtype), example)
  return ReplayState(data=data, position=jnp.zeros((), jnp.int32),
                     size=jnp.zeros((), jnp.int32))


def insert(state: ReplayState, row: Any) -> ReplayState:
  """Write one row (a pytree with leading axis `width`), overwriting the oldest row."""
  chex.assert_tree_shape_prefix(row, (state.width,),
                                custom_message="`row` must have leading axis `width`")
  data = jax.tree.map(
      lambda buf, x: jax.lax.dynamic_update_index_in_dim(buf, x.astype(buf.dtype),
                                                         state.position, 0),
      state.data, row)
  return ReplayState(data=data, position=(state.position + 1) % state.capacity,
                     size=jnp.minimum(state.size + 1, state.capacity))


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Any:
  """`batch_size` items [B, ...] drawn uniformly with replacement from the filled rows.

  One random draw per item (a flat index over rows × width): random bits are
  the expensive part of sampling under vmap, twice as dear with two draws
  (benchmarks/results/replay.md). The buffer must hold at least one row (the
  training loop prefills it).
  """
  # The filled rows are always rows [0, size), so a flat index over rows × width is
  # the item's index in the buffer viewed as [capacity · width, ...] (one gather).
  flat = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1) * state.width)
  return jax.tree.map(lambda buf: _flatten(buf)[flat], state.data)


def sample_sequences(state: ReplayState, key: jax.Array, batch_size: int,
                     length: int) -> Any:
  """`batch_size` sequences [B, T, ...] of `length` consecutive steps of one env each.

  Windows start uniformly among the `size − T + 1` that fit between the oldest
  row and the write head, so a window never wraps from the newest data into
  the oldest. The buffer must hold at least `length` rows.
  """
  if length > state.capacity:
    raise ValueError(f"sequences of length {length} do not fit a buffer of "
                     f"{state.capacity} rows")
  oldest = jnp.where(state.size < state.capacity, 0, state.position)
  num_starts = jnp.maximum(state.size - length + 1, 1)
  flat = jax.random.randint(key, (batch_size,), 0, num_starts * state.width)
  offset, cols = flat // state.width, (flat % state.width)[:, None]
  rows = (oldest + offset[:, None] + jnp.arange(length)[None]) % state.capacity  # [B, T]
  return jax.tree.map(lambda buf: _flatten(buf)[rows * state.width + cols], state.data)


def _flatten(buf: jax.Array) -> jax.Array:
  """[capacity, width, ...] viewed as [capacity · width, ...] (a bitcast, no copy)."""
  return jnp.reshape(buf, (-1,) + buf.shape[2:])
