"""Policy losses as divergences between the policy and the soft-optimal target.

The target is p*(a|s) ∝ π0(a|s) exp(Q(s,a)/τ). One state per call, with N sampled
actions: `log_pi[N]` are log π(a_k|s) of the samples and `q[N]` their values;
trajectory losses take M trajectories `[M, T]`. Users `jax.vmap` over states,
batches and seeds.

  * reverse KL, KL(π ‖ p*): pathwise (`reverse_kl_loss`), score function
    (`reverse_kl_score_loss`), exact categorical (`categorical_reverse_kl_loss`);
  * forward KL, KL(p* ‖ π) (Lavington et al., 2021): per state
    (`forward_kl_loss`), over whole trajectories (`trajectory_forward_kl_loss`),
    marginalised over states (`marginal_forward_kl_loss`), exact categorical
    (`categorical_forward_kl_loss`);
  * the temperature of the reverse KL as a Lagrange multiplier:
    `entropy_temperature_loss`, `kl_temperature_loss`.

Gradient conventions: importance weights are stop-gradient (the papers treat
them as constants); losses are to be minimised.
"""

from typing import Optional

import chex
import jax
import jax.numpy as jnp

from rlax_inf import _checks
from rlax_inf import estimators
from rlax_inf import values
from rlax_inf._checks import check_samples as _check_samples
from rlax_inf._checks import check_temperature as _check_temperature

Array = chex.Array
Numeric = chex.Numeric


# ----------------------------------------------------------------- reverse KL


def reverse_kl_loss(
    log_pi: Array,
    q: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
) -> Array:
  """Reverse-KL policy loss (SAC's actor loss), τ KL(π ‖ p*) up to a constant.

    L = mean_k [τ (log π(a_k|s) − log π0(a_k|s)) − Q(s, a_k)],   a_k ~ π.

  For reparameterised samples a_k = f(ε_k; θ) the gradient flows through both
  `log_pi` and `q` (pathwise estimator; Haarnoja et al., "Soft Actor-Critic",
  2018). For non-reparameterisable policies use `reverse_kl_score_loss`.

  Args:
    log_pi: log π(a_k|s) of N samples [N].
    q: Q(s, a_k) [N].
    temperature: τ ≥ 0.
    log_prior: log π0(a_k|s) [N] or None (counting measure: maximum entropy).

  Returns:
    The scalar loss.
  """
  _check_samples(log_pi, q, log_prior)
  _check_temperature(temperature)
  tau = jnp.asarray(temperature, q.dtype)
  reg = log_pi if log_prior is None else log_pi - log_prior
  # Zero the regulariser itself at τ = 0 so that 0 · ±inf never appears, not
  # even in the gradient with respect to τ.
  reg = jnp.where(tau > 0, reg, 0.0)
  return jnp.mean(tau * reg - q)


def reverse_kl_score_loss(
    log_pi: Array,
    q: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    baseline: Optional[Array] = None,
) -> Array:
  """Score-function (REINFORCE) estimator of the reverse-KL loss, with a baseline.

    f_k = τ (log π(a_k|s) − log π0(a_k|s)) − Q(s, a_k),   a_k ~ π,
    value     = mean_k f_k                        (the `reverse_kl_loss` estimate)
    gradient  = mean_k (f_k − b_k) ∇ log π(a_k|s)

  using E_π[∇ log π] = 0 twice (the τ ∇log π term of ∇f and the baseline).
  The default baseline is leave-one-out, b_k = mean_{j≠k} f_j, which keeps the
  estimator unbiased (Kool et al., "Buy 4 REINFORCE samples, get a baseline for
  free!", 2019); with N = 1 it is 0. Q gets no gradient.

  Args:
    log_pi: log π(a_k|s) of N samples [N] (the gradient flows through this).
    q: Q(s, a_k) [N].
    temperature: τ ≥ 0.
    log_prior: log π0(a_k|s) [N] or None (counting measure).
    baseline: optional baseline, a scalar or [N], independent of a_k (stop-
      gradient); None for leave-one-out.

  Returns:
    The scalar surrogate; its value is the loss estimate.
  """
  _check_samples(log_pi, q, log_prior)
  _check_temperature(temperature)
  if baseline is not None:
    chex.assert_rank(baseline, {0, 1}, custom_message="`baseline` must be [] or [N]")
  tau = jnp.asarray(temperature, q.dtype)
  reg = log_pi if log_prior is None else log_pi - log_prior
  cost = tau * jnp.where(tau > 0, reg, 0.0) - q
  return estimators.score_function_surrogate(log_pi, cost, baseline)


def categorical_reverse_kl_loss(
    log_pi: Array,
    q: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
) -> Array:
  """Exact reverse-KL loss of a categorical policy, summing over all actions.

    L = Σ_a π(a) [τ (log π(a) − log π0(a)) − Q(a)] = τ KL(π ‖ p*) − V_soft,

  i.e. −`regularized_value`; minimised by `boltzmann_log_policy(q, τ, log π0)`
  with minimum −`soft_value(q, τ, log π0)`. Actions with π(a) = 0 contribute 0.

  Args:
    log_pi: normalised log π(a|s) [A] (−inf allowed).
    q: Q(s, a) [A].
    temperature: τ ≥ 0.
    log_prior: log π0(a|s) [A] or None (counting measure).

  Returns:
    The scalar loss.
  """
  _check_samples(log_pi, q, log_prior)
  _check_temperature(temperature)
  return -values.regularized_value(q, log_pi, temperature, log_prior)


# ----------------------------------------------------------------- forward KL


def _target_log_weights(
    q: Array, tau: Array, log_prior: Optional[Array], log_proposal: Array
) -> Array:
  """log p*(a)/ρ(a) up to a constant: Q/τ + log π0 − log ρ, exact at τ = 0.

  Samples outside the support of π0 or of the proposal ρ (it cannot have drawn
  them) get −inf. At τ = 0 only the valid samples attaining the maximum valid Q
  keep their weight π0/ρ (the limit of the soft weights).
  """
  valid = log_proposal > -jnp.inf
  if log_prior is not None:
    valid = valid & (log_prior > -jnp.inf)
  lp = 0.0 if log_prior is None else jnp.where(valid, log_prior, 0.0)
  ratio = lp - jnp.where(valid, log_proposal, 0.0)
  q_max = jax.lax.stop_gradient(jnp.max(jnp.where(valid, q, -jnp.inf)))
  safe_q = jnp.where(valid, q, q_max)
  soft = (safe_q - q_max) / values.safe_temperature(tau) + ratio
  hard = jnp.where(q == q_max, ratio, -jnp.inf)
  return jnp.where(valid, jnp.where(tau > 0, soft, hard), -jnp.inf)


def weighted_nll(weights: Array, log_pi: Array) -> Array:
  """−Σ_k w_k log π_k with 0 · log 0 = 0 (weights are constants here).

  The weighted maximum likelihood shared by the forward-KL losses and MPO's M-step.
  """
  safe_log_pi = jnp.where(weights > 0, log_pi, 0.0)
  return -jnp.sum(weights * safe_log_pi)


def forward_kl_loss(
    log_pi: Array,
    q: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    log_proposal: Optional[Array] = None,
) -> Array:
  """Forward-KL policy loss, KL(p* ‖ π) up to a constant (Lavington et al., 2021).

    L = − Σ_k x̄_k log π(a_k|s),   x̄ = snis(Q(s,a_k)/τ + log π0(a_k|s) − log ρ(a_k|s)),

  the self-normalised weights under stop-gradient; the proposal ρ defaults to π
  itself (samples from the policy, log_proposal = stop_gradient(log_pi)). Needs
  only log-probabilities of samples, so it serves discrete, continuous and
  hierarchical policies alike. Biased for finite N (SNIS), consistent as
  N → ∞. At τ = 0 the weights sit on the best valid sample(s). Samples with
  π0 = 0 or ρ = 0 get weight 0.
  Lavington, Teng, Schmidt, Wood, "A Closer Look at Gradient Estimators with
  Reinforcement Learning as Inference", 2021.

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
  _check_temperature(temperature)
  if log_proposal is None:
    log_proposal = jax.lax.stop_gradient(log_pi)
  chex.assert_equal_shape(
      [log_pi, log_proposal], custom_message="`log_proposal` must match `log_pi`")
  tau = jnp.asarray(temperature, q.dtype)
  log_w = _target_log_weights(q, tau, log_prior, log_proposal)
  w = jax.lax.stop_gradient(estimators.snis_weights(log_w))
  return weighted_nll(w, log_pi)


def categorical_forward_kl_loss(
    log_pi: Array,
    q: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
) -> Array:
  """Exact forward-KL loss of a categorical policy: the cross-entropy to p*.

    L = − Σ_a p*(a) log π(a),   p* = boltzmann(Q, τ, π0) under stop-gradient,

  which is KL(p* ‖ π) + H(p*); minimised by π = p*. The expectation that
  `forward_kl_loss` estimates as N → ∞.

  Args:
    log_pi: normalised log π(a|s) [A].
    q: Q(s, a) [A].
    temperature: τ ≥ 0.
    log_prior: log π0(a|s) [A] or None (counting measure).

  Returns:
    The scalar loss.
  """
  _check_samples(log_pi, q, log_prior)
  _check_temperature(temperature)
  log_target = values.boltzmann_log_policy(q, temperature, log_prior)
  target = jax.lax.stop_gradient(jnp.exp(log_target))
  return weighted_nll(target, log_pi)


def trajectory_forward_kl_loss(
    log_pi_t: Array,
    r_t: Array,
    temperature: Numeric = 1.0,
    log_prior_t: Optional[Array] = None,
    log_proposal_t: Optional[Array] = None,
) -> Array:
  """Un-marginalised forward-KL estimator: SNIS over M whole trajectories.

    L = − Σ_i w̄_i Σ_t log π(a_t^i|s_t^i),
    w̄ = snis(Σ_t [r_t^i/τ + log π0(a_t^i|s_t^i) − log ρ(a_t^i|s_t^i)]),

  the weights of p(τ|O) ∝ p(τ) exp(Σ r/τ) against the sampling policy ρ (the
  dynamics cancel), under stop-gradient; ρ defaults to π (Lavington et al.,
  2021, eq. 9). Pad shorter trajectories with r = 0 and log-probs 0.

  Args:
    log_pi_t: log π(a_t|s_t) [M, T] of M trajectories (gradient flows).
    r_t: rewards [M, T].
    temperature: τ ≥ 0.
    log_prior_t: log π0(a_t|s_t) [M, T] or None (counting measure).
    log_proposal_t: log ρ(a_t|s_t) [M, T] or None (stop_gradient(log_pi_t)).

  Returns:
    The scalar loss.
  """
  _check_samples(log_pi_t, r_t, log_prior_t, name="log_pi_t", rank=2)
  _check_temperature(temperature)
  if log_proposal_t is None:
    log_proposal_t = jax.lax.stop_gradient(log_pi_t)
  chex.assert_equal_shape([log_pi_t, log_proposal_t],
                          custom_message="`log_proposal_t` must match `log_pi_t`")
  tau = jnp.asarray(temperature, r_t.dtype)
  log_prior = None if log_prior_t is None else jnp.sum(log_prior_t, axis=1)
  log_w = _target_log_weights(
      jnp.sum(r_t, axis=1), tau, log_prior, jnp.sum(log_proposal_t, axis=1))
  w = jax.lax.stop_gradient(estimators.snis_weights(log_w))
  return weighted_nll(w, jnp.sum(log_pi_t, axis=1))


def marginal_forward_kl_loss(
    log_pi: Array,
    q: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    log_proposal: Optional[Array] = None,
    log_state_weights: Optional[Array] = None,
) -> Array:
  """Marginalised forward-KL estimator: per-state SNIS, averaged over S states.

    L = Σ_s ȳ_s · forward_kl_loss(log π[s], Q[s], τ, log π0[s], log ρ[s]),
    ȳ = softmax(log_state_weights) (uniform by default, as in the paper),

  replacing the trajectory weights by soft Q-values (Lavington et al., 2021,
  sec. 4): lower variance, biased by Q and by the state distribution.
  ȳ is stop-gradient.

  Args:
    log_pi: log π(a_{s,k}|s) [S, N] (gradient flows through this).
    q: Q(s, a_{s,k}) [S, N].
    temperature: τ ≥ 0.
    log_prior: log π0(a_{s,k}|s) [S, N] or None (counting measure).
    log_proposal: log ρ(a_{s,k}|s) [S, N] or None (stop_gradient(log_pi)).
    log_state_weights: unnormalised log ȳ [S] or None (uniform).

  Returns:
    The scalar loss.
  """
  _check_samples(log_pi, q, log_prior, rank=2)
  _check_temperature(temperature)
  if log_proposal is not None:
    chex.assert_equal_shape([log_pi, log_proposal],
                            custom_message="`log_proposal` must match `log_pi`")
  per_state = jax.vmap(forward_kl_loss, in_axes=(0, 0, None, 0, 0))(
      log_pi, q, temperature, log_prior, log_proposal)
  if log_state_weights is None:
    return jnp.mean(per_state)
  chex.assert_shape(log_state_weights, (log_pi.shape[0],),
                    custom_message="`log_state_weights` must be [S]")
  y = jax.lax.stop_gradient(jax.nn.softmax(log_state_weights))
  return weighted_nll(y, -per_state)


# ---------------------------------------------------------------- temperature


def entropy_temperature_loss(
    log_alpha: Array, log_pi: Array, target_entropy: Numeric
) -> Array:
  """SAC's automatic entropy tuning: the loss of the temperature α = exp(log α).

    L(α) = α · (Ĥ − H̄),   Ĥ = −mean_k log π(a_k|s) under stop-gradient,

  the Lagrangian of E[H(π)] ≥ H̄: α grows while the entropy is below the
  target and shrinks above it (Haarnoja et al., "Soft Actor-Critic
  Algorithms and Applications", 2018, eq. 18). The usual target is −dim(A).

  Args:
    log_alpha: log α [] (the trained parameter).
    log_pi: log π(a_k|s) of N samples [N].
    target_entropy: H̄.

  Returns:
    The scalar loss.
  """
  chex.assert_rank(log_alpha, 0, custom_message="`log_alpha` must be a scalar")
  chex.assert_rank(log_pi, 1, custom_message="`log_pi` must be [N]")
  chex.assert_type([log_alpha, log_pi], float,
                   custom_message="`log_alpha` and `log_pi` must be floating point")
  entropy = -jnp.mean(jax.lax.stop_gradient(log_pi))
  return jnp.exp(log_alpha) * (entropy - target_entropy)


def kl_temperature_loss(
    log_alpha: Array, log_pi: Array, log_prior: Array, target_kl: Numeric
) -> Array:
  """KL-to-prior counterpart of entropy tuning: the loss of α = exp(log α).

    L(α) = α · (ε − K̂),   K̂ = mean_k [log π(a_k|s) − log π0(a_k|s)] (stop-gradient),

  the Lagrangian of E[KL(π ‖ π0)] ≤ ε: α grows while the KL exceeds the
  target. With π0 uniform over a box of volume |A| it is the entropy loss with
  H̄ = log|A| − ε.

  Args:
    log_alpha: log α [].
    log_pi: log π(a_k|s) of N samples [N].
    log_prior: log π0(a_k|s) [N].
    target_kl: ε ≥ 0.

  Returns:
    The scalar loss.
  """
  chex.assert_rank(log_alpha, 0, custom_message="`log_alpha` must be a scalar")
  chex.assert_rank([log_pi, log_prior], 1,
                   custom_message="`log_pi` and `log_prior` must be [N]")
  chex.assert_equal_shape([log_pi, log_prior],
                          custom_message="`log_prior` must match `log_pi`")
  _checks.check_args(
      ("log_alpha", log_alpha, None, float), ("log_pi", log_pi, None, float),
      ("log_prior", log_prior, None, float))
  kl = jnp.mean(jax.lax.stop_gradient(log_pi - log_prior))
  return jnp.exp(log_alpha) * (target_kl - kl)
