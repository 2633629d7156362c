"""Policy objectives as divergences between the policy and the soft-optimal target.

The target is p*(a|s) ∝ π0(a|s) exp(Q(s,a)/τ). One state per call, with N sampled
actions: `log_pi[N]` are log π(a_k|s) of the samples and `q[N]` their values.
"""

from typing import Optional

import chex
import jax
import jax.numpy as jnp

from rlax_inf import estimators

Array = chex.Array
Numeric = chex.Numeric


def _check_samples(log_pi, q, log_prior, name="log_pi"):
  chex.assert_rank([log_pi, q], 1, custom_message=f"`{name}` and `q` must be [N]")
  chex.assert_type([log_pi, q], float)
  chex.assert_equal_shape([log_pi, q], custom_message=f"`{name}` and `q` must match")
  if log_prior is not None:
    chex.assert_equal_shape(
        [log_pi, log_prior], custom_message="`log_prior` must match `log_pi`")


def reverse_kl_loss(
    log_pi: Array,
    q: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
) -> Array:
  """Reverse-KL policy loss (SAC's actor loss), KL(π ‖ p*) up to a constant.

    L = mean_k [τ (log π(a_k|s) − log π0(a_k|s)) − Q(s, a_k)],   a_k ~ π.

  For reparameterised samples a_k = f(ε_k; θ) the gradient flows through both
  `log_pi` and `q` (pathwise estimator); pass stop-gradient values for a
  score-function estimator built on top of it.

  Args:
    log_pi: log π(a_k|s) of N samples [N].
    q: Q(s, a_k) [N].
    temperature: τ ≥ 0.
    log_prior: log π0(a_k|s) [N] or None (counting measure: maximum entropy).

  Returns:
    The scalar loss.
  """
  _check_samples(log_pi, q, log_prior)
  tau = jnp.asarray(temperature, q.dtype)
  reg = log_pi if log_prior is None else log_pi - log_prior
  return jnp.mean(jnp.where(tau > 0, tau * reg, 0.0) - q)


def forward_kl_loss(
    log_pi: Array,
    q: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    log_proposal: Optional[Array] = None,
) -> Array:
  """Forward-KL policy loss, KL(p* ‖ π) up to a constant (Lavington et al., 2021).

    L = − Σ_k w̄_k log π(a_k|s),   w̄ = snis(Q(s,a_k)/τ + log π0(a_k|s) − log ρ(a_k|s)),

  the self-normalised weights under stop-gradient; the proposal ρ defaults to π
  itself (samples from the policy, log_proposal = stop_gradient(log_pi)). Needs
  only log-probabilities of samples, so it serves discrete, continuous and
  hierarchical policies alike. At τ = 0 the weights put all mass on the
  best sample(s).

  Args:
    log_pi: log π(a_k|s) of N samples [N] (gradient flows through this).
    q: Q(s, a_k) [N].
    temperature: τ ≥ 0.
    log_prior: log π0(a_k|s) [N] or None (counting measure).
    log_proposal: log ρ(a_k|s) [N] of the proposal the samples came from.

  Returns:
    The scalar loss.
  """
  _check_samples(log_pi, q, log_prior)
  if log_proposal is None:
    log_proposal = jax.lax.stop_gradient(log_pi)
  chex.assert_equal_shape(
      [log_pi, log_proposal], custom_message="`log_proposal` must match `log_pi`")
  tau = jnp.asarray(temperature, q.dtype)
  log_w = _target_log_weights(q, tau, log_prior) - log_proposal
  w = jax.lax.stop_gradient(estimators.snis_weights(log_w))
  safe_log_pi = jnp.where(w > 0, log_pi, 0.0)
  return -jnp.sum(w * safe_log_pi)


def _target_log_weights(q: Array, tau: Array, log_prior: Optional[Array]) -> Array:
  """log p*(a) up to a constant: Q/τ + log π0, with the hard limit at τ = 0.

  At τ = 0 the samples attaining max Q get log-weight 0 and the others −inf
  (the proposal term is then irrelevant up to ties).
  """
  lp = 0.0 if log_prior is None else log_prior
  q_max = jnp.max(q)
  safe_tau = jnp.where(tau > 0, tau, 1.0)
  soft = (q - jax.lax.stop_gradient(q_max)) / safe_tau + lp
  hard = jnp.where(q == q_max, 0.0, -jnp.inf)
  return jnp.where(tau > 0, soft, hard)
