"""Soft values, Boltzmann policies and regularised values of one state.

All functions take one state's action values `q[A]` (users `jax.vmap` over
batch, seeds and devices). `temperature` τ ≥ 0 is a scalar (one rule in every
module: a vector τ is refused, `jax.vmap` gives one per state); it may be traced,
and a negative or NaN τ known at trace time raises naming `temperature`. τ = 0
gives the exact hard (max / argmax) limit.

`log_prior` is log π0(a|s). `None` means the counting measure (weight 1 per
action, the maximum-entropy convention V = τ log Σ_a exp(Q/τ)); a normalised
log-prior gives the KL-to-prior convention V = τ log E_{a~π0} exp(Q/τ).
"""

from typing import Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rlax_inf import _checks

Array = chex.Array
Numeric = chex.Numeric


def _as_float(x, dtype) -> Array:
  return jnp.asarray(x, dtype=dtype)


def select_by_temperature(temperature, soft_fn, hard_fn):
  """`soft_fn()` where τ > 0, `hard_fn()` where τ = 0.

  A Python-number τ picks one branch at trace time (no wasted work in the
  compiled program); a traced τ computes both and selects, so it can be
  learned or vmapped.
  """
  if isinstance(temperature, (int, float, np.integer, np.floating)):
    return soft_fn() if temperature > 0 else hard_fn()
  return jnp.where(temperature > 0, soft_fn(), hard_fn())


def safe_temperature(temperature: Array) -> Array:
  """Returns τ where τ > 0 and 1 elsewhere, so both `where` branches stay finite."""
  return jnp.where(temperature > 0, temperature, jnp.ones_like(temperature))


def valid_actions(
    q: Array, log_prior: Optional[Array] = None, mask: Optional[Array] = None
) -> Array:
  """Boolean [A]: actions allowed by `mask` and with non-zero prior mass."""
  valid = jnp.ones(q.shape, dtype=bool)
  if mask is not None:
    valid = valid & mask
  if log_prior is not None:
    valid = valid & (log_prior > -jnp.inf)
  return valid


def _check(q, log_prior, mask, name="q"):
  chex.assert_rank(q, 1, custom_message=f"`{name}` must be a vector [A]")
  chex.assert_type(q, float, custom_message=f"`{name}` must be floating point")
  if log_prior is not None:
    chex.assert_equal_shape(
        [q, log_prior], custom_message="`log_prior` must have the shape of `q`")
    chex.assert_type(
        log_prior, float, custom_message="`log_prior` must be floating point")
  if mask is not None:
    chex.assert_equal_shape(
        [q, mask], custom_message="`mask` must have the shape of `q`")
    chex.assert_type(mask, bool, custom_message="`mask` must be boolean")


def _shifted_logits(q, temperature, log_prior, mask):
  """Returns (valid, q_max, z) with z = (q - q_max)/τ + log π0, -inf if invalid."""
  valid = valid_actions(q, log_prior, mask)
  q_max = jnp.max(jnp.where(valid, q, -jnp.inf))
  shift = jax.lax.stop_gradient(q_max)
  lp = 0.0 if log_prior is None else jnp.where(valid, log_prior, 0.0)
  safe_q = jnp.where(valid, q, shift)
  z = (safe_q - shift) / safe_temperature(temperature) + lp
  return valid, q_max, jnp.where(valid, z, -jnp.inf)


def soft_value(
    q: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    mask: Optional[Array] = None,
) -> Array:
  """Soft (log-sum-exp) value of one state.

    V = τ log Σ_a π0(a) exp(q_a / τ)   over valid actions;   V = max_a q_a at τ = 0.

  Computed as max(q) + τ logsumexp((q − max q)/τ + log π0), which is exact for
  τ from 1e-6 to 1e6 and values of ±1e6.

  Args:
    q: action values [A].
    temperature: τ ≥ 0 (may be traced).
    log_prior: log π0(a) [A] or None (counting measure).
    mask: optional bool [A]; False removes an action. At least one must be valid.

  Returns:
    The scalar soft value.
  """
  _check(q, log_prior, mask)
  _checks.check_temperature(temperature)
  tau = _as_float(temperature, q.dtype)
  _, q_max, z = _shifted_logits(q, tau, log_prior, mask)
  return select_by_temperature(
      temperature,
      lambda: jax.lax.stop_gradient(q_max) + tau * jax.nn.logsumexp(z),
      lambda: q_max)


def boltzmann_log_policy(
    q: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    mask: Optional[Array] = None,
) -> Array:
  """Log-probabilities of the Boltzmann policy of one state.

    log π(a) = (q_a − V)/τ + log π0(a),   V = soft_value(q, τ, log π0).

  Invalid actions get −inf. At τ = 0 this is the greedy policy with ties split
  evenly among the maximising valid actions.

  Args:
    q: action values [A].
    temperature: τ ≥ 0.
    log_prior: log π0(a) [A] or None (counting measure).
    mask: optional bool [A].

  Returns:
    Normalised log-probabilities [A].
  """
  _check(q, log_prior, mask)
  _checks.check_temperature(temperature)
  tau = _as_float(temperature, q.dtype)
  valid, q_max, z = _shifted_logits(q, tau, log_prior, mask)

  def hard():
    is_max = valid & (q == q_max)
    return jnp.where(is_max, -jnp.log(jnp.sum(is_max).astype(q.dtype)), -jnp.inf)

  return select_by_temperature(
      temperature, lambda: jnp.where(valid, jax.nn.log_softmax(z), -jnp.inf), hard)


def _xlogy_terms(log_p: Array, values: Array) -> Array:
  """Σ_a p(a) values(a) with 0 · anything = 0 where p(a) = 0 (NaN-free gradients)."""
  nonzero = log_p > -jnp.inf
  p = jnp.exp(jnp.where(nonzero, log_p, 0.0)) * nonzero
  return jnp.sum(jnp.where(nonzero, p * jnp.where(nonzero, values, 0.0), 0.0))


def regularized_value(
    q: Array,
    log_pi: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
) -> Array:
  """Value of a given policy with a KL (or entropy) regulariser.

    V_π = Σ_a π(a) [q_a − τ (log π(a) − log π0(a))].

  Its maximum over π equals `soft_value(q, τ, log_prior)`, attained by
  `boltzmann_log_policy(q, τ, log_prior)`. Actions with π(a) = 0 contribute 0.

  Args:
    q: action values [A].
    log_pi: log π(a) [A], normalised.
    temperature: τ ≥ 0.
    log_prior: log π0(a) [A] or None (counting measure: log π0 = 0).

  Returns:
    The scalar regularised value.
  """
  _check(q, log_prior, None)
  chex.assert_equal_shape([q, log_pi], custom_message="`log_pi` must have the shape of `q`")
  chex.assert_type(log_pi, float, custom_message="`log_pi` must be floating point")
  _checks.check_temperature(temperature)
  tau = _as_float(temperature, q.dtype)
  safe_log_pi = jnp.where(log_pi > -jnp.inf, log_pi, 0.0)
  lp = 0.0 if log_prior is None else log_prior
  penalty = safe_log_pi - lp
  # τ · penalty is 0 at τ = 0 even where the prior excludes the action.
  reg = select_by_temperature(temperature, lambda: tau * penalty, lambda: 0.0)
  return _xlogy_terms(log_pi, q - reg)


def entropy(log_p: Array) -> Array:
  """Entropy of a categorical distribution, H = −Σ_a p(a) log p(a) (0 log 0 = 0).

  Args:
    log_p: normalised log-probabilities [A] (−inf allowed).

  Returns:
    The scalar entropy in nats.
  """
  chex.assert_rank(log_p, 1, custom_message="`log_p` must be a vector [A]")
  chex.assert_type(log_p, float, custom_message="`log_p` must be floating point")
  return -_xlogy_terms(log_p, log_p)


def kl(log_p: Array, log_q: Array) -> Array:
  """KL(p ‖ q) = Σ_a p(a) (log p(a) − log q(a)) of two categoricals (0 log 0 = 0).

  Infinite when p puts mass where q has none.

  Args:
    log_p: normalised log-probabilities [A].
    log_q: normalised log-probabilities [A].

  Returns:
    The scalar KL divergence in nats.
  """
  _checks.check_args(("log_p", log_p, 1, None), ("log_q", log_q, 1, None))
  chex.assert_equal_shape([log_p, log_q], custom_message="`log_p` and `log_q` must match")
  _checks.check_args(("log_p", log_p, None, float), ("log_q", log_q, None, float))
  return _xlogy_terms(log_p, log_p - log_q)
