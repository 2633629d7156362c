"""Small MLP networks for continuous-control agents (flax.linen, pure apply functions).

The twin critics are one MLP whose parameters carry a leading axis of size
`num_critics`; `jax.vmap` over that axis runs them as one batched matmul.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
  """Fully connected network: Dense → activation for every hidden layer, linear head.

  With `layer_norm`, each hidden layer is Dense → relu → LayerNorm (the order of
  brax.training's `networks.MLP(layer_norm=True)`, used by its SAC's
  `q_network_layer_norm`); the parameters of the Dense layers keep their names.
  """

  hidden: Sequence[int]
  out: int
  layer_norm: bool = False

  @nn.compact
  def __call__(self, x):
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, kernel_init=nn.initializers.lecun_uniform())(x))
      if self.layer_norm:
        x = nn.LayerNorm()(x)
    return nn.Dense(self.out, kernel_init=nn.initializers.lecun_uniform())(x)


class Actor:
  """Gaussian head for a tanh-squashed policy: obs → (mean, std) of the pre-tanh Gaussian.

  std = softplus(raw) + min_std, as brax.training's NormalTanhDistribution.
  """

  def __init__(self, hidden: Sequence[int], action_size: int, min_std: float = 1e-3):
    self._net = MLP(tuple(hidden), 2 * action_size)
    self._min_std = min_std

  def init(self, key, obs_size: int):
    return self._net.init(key, jnp.zeros((1, obs_size)))

  def apply(self, params, obs):
    out = self._net.apply(params, obs)
    mean, raw_std = jnp.split(out, 2, axis=-1)
    return mean, jax.nn.softplus(raw_std) + self._min_std


class Critics:
  """`num_critics` independent Q(s, a) networks evaluated together: → [num_critics, ...]."""

  def __init__(self, hidden: Sequence[int], num_critics: int = 2, layer_norm: bool = False):
    self._net = MLP(tuple(hidden), 1, layer_norm)
    self.num_critics = num_critics

  def init(self, key, obs_size: int, action_size: int):
    x = jnp.zeros((1, obs_size + action_size))
    keys = jax.random.split(key, self.num_critics)
    return jax.vmap(self._net.init, in_axes=(0, None))(keys, x)

  def apply(self, params, obs, action):
    x = jnp.concatenate([obs, action], axis=-1)
    q = jax.vmap(self._net.apply, in_axes=(0, None))(params, x)
    return q[..., 0]
