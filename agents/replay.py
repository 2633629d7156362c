"""Pure-JAX uniform replay: a fixed-capacity ring buffer, one per seed.

Insertion writes a batch of n transitions at positions (pos + 0..n−1) mod capacity
with one scatter (O(n) work, in place when the buffer is donated); nothing is
ever rolled or copied whole. Sampling draws indices uniformly, with
replacement, from the filled part.

Transitions are stored with `terminated` (a real terminal: discount 0) and the
true next observation (`envs.State.final_obs`), so time-limit truncations keep
bootstrapping from the next state, as they should.
"""

from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Transition:
  obs: jnp.ndarray  # [..., O]
  action: jnp.ndarray  # [..., A] in the policy's [-1, 1] box
  reward: jnp.ndarray  # [...]
  terminated: jnp.ndarray  # [...] float, 1 at a real terminal
  next_obs: jnp.ndarray  # [..., O]


@flax.struct.dataclass
class ReplayState:
  data: Any  # pytree of [capacity, ...] arrays
  position: jnp.ndarray  # [] int32, next write index
  size: jnp.ndarray  # [] int32, filled entries (≤ capacity)

  @property
  def capacity(self) -> int:
    return jax.tree.leaves(self.data)[0].shape[0]


def init(example: Any, capacity: int) -> ReplayState:
  """An empty buffer shaped after one unbatched `example` item (a pytree)."""
  data = jax.tree.map(
      lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
  return ReplayState(data=data, position=jnp.zeros((), jnp.int32),
                     size=jnp.zeros((), jnp.int32))


def insert(state: ReplayState, batch: Any) -> ReplayState:
  """Write the n items of `batch` (leading axis n ≤ capacity), overwriting the oldest."""
  capacity = state.capacity
  n = jax.tree.leaves(batch)[0].shape[0]
  if n > capacity:
    raise ValueError(f"insert of {n} items into a buffer of capacity {capacity}")
  chex.assert_tree_shape_prefix(batch, (n,))
  idx = (state.position + jnp.arange(n, dtype=jnp.int32)) % capacity
  data = jax.tree.map(lambda buf, x: buf.at[idx].set(x.astype(buf.dtype),
                                                     unique_indices=True),
                      state.data, batch)
  return ReplayState(data=data, position=(state.position + n) % capacity,
                     size=jnp.minimum(state.size + n, capacity))


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Any:
  """`batch_size` items drawn uniformly with replacement from the filled entries.

  The buffer must hold at least one item (the training loop prefills it).
  """
  idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
  return jax.tree.map(lambda buf: buf[idx], state.data)
