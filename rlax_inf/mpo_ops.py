"""MPO: policy improvement by EM with KL bounds (Abdolmaleki et al., 2018).

One state per call with N actions sampled from the previous policy, as
`rlax.mpo_ops` is kept apart from the rest of rlax:
  * E-step: non-parametric weights softmax(Q/η) and the convex dual of the
    temperature η (`mpo_e_step`);
  * M-step: weighted maximum likelihood (`mpo_m_step_loss`) under KL bounds
    enforced by Lagrange multipliers (`lagrange_penalty`, `project_multiplier`);
  * both together: `mpo_loss` (values and gradients equal `rlax.mpo_loss`).

Named `mpo_ops` (as rlax names it) so that it is not confused with the agent,
`rlax_inf.agents.mpo`. E-step weights are stop-gradient.
"""

from typing import NamedTuple, Sequence, Tuple

import chex
import jax
import jax.numpy as jnp

from rlax_inf import _checks
from rlax_inf import divergences
from rlax_inf import values
from rlax_inf._checks import check_samples as _check_samples
from rlax_inf._checks import check_temperature as _check_temperature

Array = chex.Array
Numeric = chex.Numeric

_MULTIPLIER_FLOOR = 1e-10  # rlax's `_EPSILON`, the floor of MPO's duals.


def project_multiplier(x: Array, floor: float = _MULTIPLIER_FLOOR) -> Array:
  """Projects a Lagrange multiplier onto [floor, ∞), with a straight-through gradient.

    value = max(x, floor),   gradient = 1.

  rlax clips (`jnp.clip(x, min=1e-10)`) with zero gradient below the floor, so
  a multiplier that reaches the floor can never grow again; here the value is
  the same but the dual gradient still reaches x.

  Args:
    x: the raw multiplier(s).
    floor: the smallest value.

  Returns:
    The projected multiplier(s).
  """
  return jnp.maximum(jax.lax.stop_gradient(x), floor) + (x - jax.lax.stop_gradient(x))


def mpo_e_step(q: Array, temperature: Numeric, epsilon: Numeric) -> Tuple[Array, Array]:
  """MPO's E-step: non-parametric weights and the temperature dual.

    w̄_k = softmax_k(Q(s, a_k)/η),   a_k ~ π_old,
    g(η) = η ε + η log (1/N) Σ_k exp(Q(s, a_k)/η),

  the solution of max_q E_q[Q] s.t. KL(q ‖ π_old) ≤ ε and its convex dual in η,
  minimised at the η where the bound is tight. Weights are stop-gradient;
  g(0) = max_k Q (the hard limit). Values and gradients equal
  `rlax.mpo_compute_weights_and_temperature_loss` for η > 0.
  Abdolmaleki et al., "Maximum a Posteriori Policy Optimisation", 2018.

  Args:
    q: Q(s, a_k) of N samples of the previous policy [N].
    temperature: η ≥ 0 (the dual variable; may be traced).
    epsilon: ε, the KL bound.

  Returns:
    (weights [N], temperature_loss []).
  """
  chex.assert_rank(q, 1, custom_message="`q` must be [N]")
  chex.assert_type(q, float, custom_message="`q` must be floating point")
  _check_temperature(temperature)
  exp_z, sum_exp_z, dual = _e_step(q, jnp.asarray(temperature, q.dtype), epsilon)
  return exp_z / sum_exp_z, dual


def _e_step(q: Array, eta: Array, epsilon: Numeric) -> Tuple[Array, Array, Array]:
  """`mpo_e_step` with the weights unnormalised: (exp(z) [N], Σ exp(z), dual), z ≤ 0.

  One max, one exp and one sum serve the weights and the dual (rlax takes two
  of each): max z = 0 exactly, so Σ exp(z) ≥ 1 needs no second shift. At η = 0,
  exp(z) is the indicator of the maximisers, which makes exp(z) / Σ exp(z) the
  hard weights. exp(z) and Σ exp(z) are stop-gradient.
  """
  q_max = jnp.max(q)
  shift = jax.lax.stop_gradient(q_max)
  z = (q - shift) / values.safe_temperature(eta)
  exp_z = jnp.where(eta > 0, jnp.exp(z), (q == q_max).astype(q.dtype))
  sum_exp_z = jnp.sum(exp_z)
  log_mean = jnp.log(sum_exp_z) - jnp.log(jnp.asarray(q.shape[0], q.dtype))
  dual = jnp.where(eta > 0, eta * epsilon + shift + eta * log_mean, q_max)
  return jax.lax.stop_gradient(exp_z), jax.lax.stop_gradient(sum_exp_z), dual


def mpo_m_step_loss(log_pi: Array, weights: Array) -> Array:
  """MPO's M-step: weighted maximum likelihood of the E-step samples.

    L = − Σ_k w̄_k log π(a_k|s),   w̄ stop-gradient.

  For decoupled Gaussian updates pass log π = log N(a; μ, σ_old) +
  log N(a; μ_old, σ) (`distributions.decoupled_gaussian_log_prob`).

  Args:
    log_pi: log π(a_k|s) [N] (gradient flows).
    weights: w̄ [N] from `mpo_e_step`.

  Returns:
    The scalar loss.
  """
  _checks.check_args(("log_pi", log_pi, 1, None), ("weights", weights, 1, None))
  chex.assert_equal_shape([log_pi, weights],
                          custom_message="`weights` must match `log_pi`")
  _checks.check_args(("log_pi", log_pi, None, float), ("weights", weights, None, float))
  return divergences.weighted_nll(jax.lax.stop_gradient(weights), log_pi)


def lagrange_penalty(
    kl: Array, alpha: Array, epsilon: Numeric, projection=project_multiplier
) -> Tuple[Array, Array]:
  """A KL bound KL ≤ ε by Lagrangian coordinate descent (MPO's M-step constraints).

    kl_loss    = sg(α̃) · KL          (trains the policy)
    alpha_loss = α̃ · (ε − sg(KL))    (trains the multiplier),   α̃ = projection(α),

  a per-dimension KL [D] gets a per-dimension α and is summed.

  Args:
    kl: the KL [] or per dimension [D] (gradient flows to the policy).
    alpha: the multiplier, of the shape of `kl`.
    epsilon: ε, the bound.
    projection: maps α onto the feasible set (default: `project_multiplier`).

  Returns:
    (kl_loss, alpha_loss), two scalars.
  """
  chex.assert_rank(kl, {0, 1}, custom_message="`kl` must be [] or [D]")
  _checks.check_args(("kl", kl, None, float), ("alpha", alpha, None, float))
  alpha = projection(alpha)
  kl_loss = jax.lax.stop_gradient(alpha) * kl
  alpha_loss = alpha * (epsilon - jax.lax.stop_gradient(kl))
  return jnp.sum(kl_loss), jnp.sum(alpha_loss)


class MPOExtra(NamedTuple):
  policy_loss: Array
  temperature_loss: Array
  kl_loss: Array
  alpha_loss: Array
  weights: Array


def mpo_loss(
    log_pi: Array,
    q: Array,
    temperature: Array,
    epsilon: Numeric,
    kl_constraints: Sequence[Tuple[Array, Array, Numeric]] = (),
    projection=project_multiplier,
) -> Tuple[Array, MPOExtra]:
  """MPO for one state: E-step weights and dual, M-step with KL bounds.

    L = −Σ_k w̄_k log π(a_k|s) + g(η̃) + Σ_c [sg(α̃_c) KL_c + α̃_c (ε_c − sg(KL_c))],
    w̄ = softmax(Q/η̃),  η̃ = projection(η),  α̃_c = projection(α_c),

  with g the temperature dual of `mpo_e_step`. Decoupled mean / covariance
  bounds are two constraints, e.g. (KL_μ, α_μ, ε_μ) and (KL_σ, α_σ, ε_σ) from
  `distributions.decoupled_gaussian_kl`. Same value as `rlax.mpo_loss`
  (sample_axis=0, one example), and same gradients while every multiplier is
  above the floor. Batched with `jax.vmap` over a batch-major [B, N] layout it
  is as fast as rlax's (benchmarks/ops.py); a sample-major [N, B] batch
  vmapped along axis 1 costs XLA a transpose (rlax: `sample_axis=0`).
  Abdolmaleki et al., "Maximum a Posteriori Policy Optimisation", 2018.

  Args:
    log_pi: log π(a_k|s) [N] of samples a_k ~ π_old (gradient flows).
    q: Q(s, a_k) [N].
    temperature: η, the raw temperature dual variable [].
    epsilon: ε, the E-step KL bound.
    kl_constraints: (KL, α, ε) triples for the M-step.
    projection: projection of η and the α's (default `project_multiplier`).

  Returns:
    (loss, MPOExtra(policy_loss, temperature_loss, kl_loss, alpha_loss, weights)).
  """
  _check_samples(log_pi, q, None)
  # The raw dual variable: `projection` maps it to η̃ ≥ floor, so any sign is valid.
  _check_temperature(temperature, non_negative=False)
  exp_z, sum_exp_z, temperature_loss = _e_step(
      q, jnp.asarray(projection(temperature), q.dtype), epsilon)
  # The M-step of `mpo_m_step_loss`, normalised after the sum: one division
  # per state, and the weights are not materialised unless they are used.
  policy_loss = divergences.weighted_nll(exp_z, log_pi) / sum_exp_z
  weights = exp_z / sum_exp_z
  kl_loss = jnp.zeros((), q.dtype)
  alpha_loss = jnp.zeros((), q.dtype)
  for kl, alpha, eps in kl_constraints:
    k, a = lagrange_penalty(kl, alpha, eps, projection)
    kl_loss, alpha_loss = kl_loss + k, alpha_loss + a
  loss = policy_loss + temperature_loss + kl_loss + alpha_loss
  return loss, MPOExtra(policy_loss, temperature_loss, kl_loss, alpha_loss, weights)
