"""Tanh-squashed diagonal Gaussian as three small pure functions for the agents' hot loop.

The stable log-Jacobian is `rlax_inf.distributions.tanh_log_det_jacobian` (the
same maths as `rlax_inf.distributions.TanhGaussian.log_prob_from_pre_tanh`);
plain functions keep the traced graph minimal inside the fused update.

    u ~ N(μ, σ²),  a = tanh(u),
    log π(a) = Σ_i [log N(u_i; μ_i, σ_i²) − log(1 − tanh²(u_i))],
    log(1 − tanh²(u)) = 2 (log 2 − u − softplus(−2u))            (stable form).

All log-probabilities are computed from the pre-tanh sample `u`, never from
`atanh(a)`, which is what keeps them finite when |a| rounds to 1 (the bug rlax
shipped twice, its issues #11 and #54).
"""

import math

import jax
import jax.numpy as jnp

from rlax_inf import distributions

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


log_det_jacobian = distributions.tanh_log_det_jacobian


def sample_pre_tanh(key: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """Reparameterised pre-tanh sample u = μ + σ ε, ε ~ N(0, I)."""
  return mean + std * jax.random.normal(key, mean.shape, mean.dtype)


def log_prob_pre_tanh(u: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """log π(tanh(u)) summed over the last (action) axis.

  Gradients flow through `mean` and `std` (and `u` if it was reparameterised).
  """
  z = (u - mean) / std
  log_normal = -0.5 * jnp.square(z) - jnp.log(std) - _LOG_SQRT_2PI
  return jnp.sum(log_normal - log_det_jacobian(u), axis=-1)
