"""Importance weights and variational bounds.

Log-weights `log_w` are log p(x, O) − log q(x) of samples x ~ q. Everything is in
log space; −inf log-weights (samples with no posterior mass) are allowed as long
as at least one weight along `axis` is finite.
"""

import chex
import jax
import jax.numpy as jnp

Array = chex.Array
Numeric = chex.Numeric


def _check_log_w(log_w):
  chex.assert_rank(log_w, {1, 2, 3, 4}, custom_message="`log_w` must have rank >= 1")
  chex.assert_type(log_w, float, custom_message="`log_w` must be floating point")


def snis_weights(log_w: Array, axis: int = -1) -> Array:
  """Self-normalised importance weights w̄_k = exp(log w_k) / Σ_j exp(log w_j).

  Args:
    log_w: log importance weights.
    axis: the sample axis.

  Returns:
    Weights of the shape of `log_w`, summing to one along `axis`.
  """
  _check_log_w(log_w)
  return jax.nn.softmax(log_w, axis=axis)


def effective_sample_size(log_w: Array, axis: int = -1) -> Array:
  """Kish's effective sample size 1 / Σ_k w̄_k², in [1, N].

  Computed in log space as exp(2 logsumexp(log w) − logsumexp(2 log w)).

  Args:
    log_w: log importance weights.
    axis: the sample axis.

  Returns:
    The ESS, with `axis` reduced.
  """
  _check_log_w(log_w)
  log_w = log_w - jax.lax.stop_gradient(jnp.max(log_w, axis=axis, keepdims=True))
  return jnp.exp(2.0 * jax.nn.logsumexp(log_w, axis=axis)
                 - jax.nn.logsumexp(2.0 * log_w, axis=axis))


def iwae_bound(log_w: Array, axis: int = -1) -> Array:
  """Importance-weighted bound log (1/K) Σ_k exp(log w_k) (Burda et al., 2016).

  A lower bound on log p(O) in expectation, tighter than the ELBO and
  non-decreasing in K.

  Args:
    log_w: log importance weights (K samples along `axis`).
    axis: the sample axis.

  Returns:
    The bound, with `axis` reduced.
  """
  _check_log_w(log_w)
  k = log_w.shape[axis]
  return jax.nn.logsumexp(log_w, axis=axis) - jnp.log(jnp.asarray(k, log_w.dtype))


def elbo(log_w: Array, axis: int = -1) -> Array:
  """Evidence lower bound (1/K) Σ_k log w_k.

  Args:
    log_w: log importance weights.
    axis: the sample axis.

  Returns:
    The bound, with `axis` reduced.
  """
  _check_log_w(log_w)
  return jnp.mean(log_w, axis=axis)


def trajectory_log_weights(
    r_t: Array,
    log_pi_t: Array,
    log_prior_t: Array,
    temperature: Numeric = 1.0,
) -> Array:
  """Log weight of one trajectory: log p(τ, O) − log q(τ).

    log w = Σ_t r_t / τ − (log π(a_t|s_t) − log π0(a_t|s_t)),

  the dynamics cancelling between the optimality model p and the policy's
  trajectory distribution q. At τ = 0 the reward term is ±inf (0 if Σ r = 0).

  Args:
    r_t: rewards [T].
    log_pi_t: log π(a_t|s_t) of the actions taken [T].
    log_prior_t: log π0(a_t|s_t) [T] (zeros for the counting measure).
    temperature: τ ≥ 0.

  Returns:
    The scalar log weight.
  """
  chex.assert_rank([r_t, log_pi_t, log_prior_t], 1)
  chex.assert_equal_shape([r_t, log_pi_t, log_prior_t])
  chex.assert_type([r_t, log_pi_t, log_prior_t], float)
  tau = jnp.asarray(temperature, r_t.dtype)
  total = jnp.sum(r_t)
  safe_tau = jnp.where(tau > 0, tau, 1.0)
  reward_term = jnp.where(
      tau > 0, total / safe_tau,
      jnp.where(total > 0, jnp.inf, jnp.where(total < 0, -jnp.inf, 0.0)))
  return reward_term - jnp.sum(log_pi_t - log_prior_t)
