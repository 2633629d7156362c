"""Policy objectives as divergences between the policy and the soft-optimal target.

The target is p*(a|s) ∝ π0(a|s) exp(Q(s,a)/τ). One state per call, with N sampled
actions: `log_pi[N]` are log π(a_k|s) of the samples and `q[N]` their values;
trajectory losses take one trajectory `[T]` (or M trajectories `[M, T]` where
the estimator needs several). Users `jax.vmap` over states, batches and seeds.

  * reverse KL, KL(π ‖ p*): pathwise (`reverse_kl_loss`), score function
    (`reverse_kl_score_loss`), exact categorical (`categorical_reverse_kl_loss`);
  * forward KL, KL(p* ‖ π) (Lavington et al., 2021): per state
    (`forward_kl_loss`), over whole trajectories (`trajectory_forward_kl_loss`),
    marginalised over states (`marginal_forward_kl_loss`), exact categorical
    (`categorical_forward_kl_loss`);
  * temperatures: `entropy_temperature_loss`, `kl_temperature_loss`;
  * KL-regularised policy gradient (Bartunov): `kl_regularized_pg_loss`;
  * stable EM / trust regions: `stable_em_loss`, `swap_prior`;
  * MPO: `mpo_e_step`, `mpo_m_step_loss`, `lagrange_penalty`, `mpo_loss`;
  * VIREL: `virel_temperature`, `virel_actor_loss`, `virel_critic_loss`.

Gradient conventions: importance weights, E-step weights, returns and
baselines are stop-gradient (the papers treat them as constants); losses are
to be minimised.
"""

from typing import Any, NamedTuple, Optional, Sequence, Tuple

import chex
import jax
import jax.numpy as jnp

from rlax_inf import estimators
from rlax_inf import values

Array = chex.Array
Numeric = chex.Numeric

_MULTIPLIER_FLOOR = 1e-10  # rlax's `_EPSILON`, the floor of MPO's duals.


def _check_samples(log_pi, q, log_prior, name="log_pi", rank=1):
  chex.assert_rank(log_pi, rank, custom_message=f"`{name}` has the wrong rank")
  chex.assert_rank(q, rank, custom_message="`q` has the wrong rank")
  chex.assert_type(log_pi, float, custom_message=f"`{name}` must be floating point")
  chex.assert_type(q, float, custom_message="`q` must be floating point")
  chex.assert_equal_shape([log_pi, q], custom_message=f"`{name}` and `q` must match")
  if log_prior is not None:
    chex.assert_equal_shape(
        [log_pi, log_prior], custom_message=f"`log_prior` must match `{name}`")
    chex.assert_type(log_prior, float,
                     custom_message="`log_prior` must be floating point")


def _check_temperature(temperature, name="temperature"):
  chex.assert_rank(temperature, 0, custom_message=f"`{name}` must be a scalar")


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


def _weighted_nll(weights: Array, log_pi: Array) -> Array:
  """−Σ_k w_k log π_k with 0 · log 0 = 0 (weights are constants here)."""
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
  return _weighted_nll(w, log_pi)


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
  return _weighted_nll(target, log_pi)


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
  return _weighted_nll(w, jnp.sum(log_pi_t, axis=1))


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
  return _weighted_nll(y, -per_state)


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
  chex.assert_type([log_alpha, log_pi, log_prior], float)
  kl = jnp.mean(jax.lax.stop_gradient(log_pi - log_prior))
  return jnp.exp(log_alpha) * (target_kl - kl)


# --------------------------------------------------- KL-regularised gradient


def kl_regularized_pg_loss(
    log_pi_t: Array,
    kl_t: Array,
    r_t: Array,
    discount_t: Array,
    temperature: Numeric = 1.0,
    long_term: bool = True,
    baseline_t: Optional[Array] = None,
) -> Array:
  """KL-regularised policy gradient surrogate of one trajectory (Bartunov).

    G_t = Σ_{k≥t} Π_{j=t}^{k−1} γ_j (r_k − τ KL_k)   (long_term=True)
    G_t = Σ_{k≥t} Π_{j=t}^{k−1} γ_j r_k              (long_term=False)
    ∇L = −Σ_t [(G_t − b_t) ∇ log π(a_t|s_t) − τ ∇KL_t],

  KL_t = KL(π(·|s_t) ‖ π0(·|s_t)). Long-term regularisation puts the KL inside
  the return (the gradient of E Σ_t (r_t − τ KL_t) when γ = 1); the
  instantaneous form keeps only ∇KL_t. Bartunov's α r − KL is τ = 1/α up to
  the scale 1/α. Returns, KLs inside them and the baseline are stop-gradient.
  Compute KL_t in closed form (`distributions.kl_divergence`: categorical and
  diagonal Gaussian) or by Monte Carlo otherwise. Indexing as rlax: r_t[t] and
  discount_t[t] follow action a_t; no bootstrap after T − 1.
  Bartunov, "Reinforcement learning through the lenses of variational
  inference" (notes).

  Args:
    log_pi_t: log π(a_t|s_t) [T] (gradient flows).
    kl_t: KL_t [T] (gradient flows).
    r_t: rewards [T].
    discount_t: discounts γ_t [T].
    temperature: τ ≥ 0.
    long_term: put −τ KL inside the return.
    baseline_t: optional baseline b_t [T] (e.g. a value estimate).

  Returns:
    The scalar surrogate loss (its gradient is the estimator; its value is
    not a meaningful objective).
  """
  chex.assert_rank([log_pi_t, kl_t, r_t, discount_t], 1)
  chex.assert_equal_shape([log_pi_t, kl_t, r_t, discount_t],
                          custom_message="`log_pi_t`, `kl_t`, `r_t`, `discount_t` must match")
  chex.assert_type([log_pi_t, kl_t, r_t, discount_t], float)
  _check_temperature(temperature)
  tau = jnp.asarray(temperature, r_t.dtype)
  reg_t = jnp.where(tau > 0, tau * jax.lax.stop_gradient(kl_t), 0.0)
  x_t = r_t - reg_t if long_term else r_t

  def step(g_next, inputs):
    x, discount = inputs
    g = x + discount * g_next
    return g, g

  _, g_t = jax.lax.scan(step, jnp.zeros((), r_t.dtype), (x_t, discount_t),
                        reverse=True)
  if baseline_t is not None:
    chex.assert_equal_shape([baseline_t, r_t],
                            custom_message="`baseline_t` must match `r_t`")
    g_t = g_t - baseline_t
  g_t = jax.lax.stop_gradient(g_t)
  kl_term = jnp.where(tau > 0, tau * kl_t, 0.0)
  return -jnp.sum(g_t * log_pi_t - kl_term)


# ---------------------------------------------------------------- stable EM


def stable_em_loss(
    log_pi: Array,
    q: Array,
    log_pi_old: Array,
    temperature: Numeric = 1.0,
) -> Array:
  """Stable EM: the reverse-KL loss with the previous policy as the prior.

    L = mean_k [τ (log π(a_k|s) − log π_old(a_k|s)) − Q(s, a_k)],   a_k ~ π,

  one M-step of π_j ≈ argmax_π E_π[Q] − τ KL(π ‖ π_{j−1}), whose exact
  solution is π_j ∝ π_{j−1} exp(Q/τ) (`boltzmann_log_policy(q, τ, log π_old)`).
  This is the KL-penalised trust region: TRPO constrains KL(π_old ‖ π) ≤ δ,
  PPO's KL-penalty variant minimises this loss with an adaptive β = τ, and
  MPO (`mpo_loss`) solves the same step in closed form (E) and by weighted
  maximum likelihood (M). Evaluate `log_pi_old` with the old parameters held
  constant (a separate pytree refreshed by `swap_prior`, or stop_gradient):
  for reparameterised samples the gradient must still flow through the action
  inside log π_old(a_k), so the value itself is not stopped here. Rawlik, Toussaint, Vijayakumar, "On Stochastic Optimal Control
  and Reinforcement Learning by Approximate Inference", 2012; Abdolmaleki et
  al., 2018.

  Args:
    log_pi: log π(a_k|s) of N samples [N] (pathwise, as `reverse_kl_loss`).
    q: Q(s, a_k) [N].
    log_pi_old: log π_old(a_k|s) [N] (old parameters constant).
    temperature: τ ≥ 0, the inverse trust-region strength.

  Returns:
    The scalar loss.
  """
  _check_samples(log_pi, q, log_pi_old)
  return reverse_kl_loss(log_pi, q, temperature, log_pi_old)


def swap_prior(
    prior_params: Any, policy_params: Any, step: Numeric, period: int = 1
) -> Any:
  """Stable EM's prior swap: π_old ← π every `period` steps, else unchanged.

    prior' = policy if step % period == 0 else prior   (leaf by leaf).

  Pure and jittable (`step` may be traced).

  Args:
    prior_params: the prior (previous policy) parameters, a pytree.
    policy_params: the current policy parameters, the same structure.
    step: the update counter.
    period: how many policy updates per prior swap (≥ 1).

  Returns:
    The new prior parameters.
  """
  chex.assert_trees_all_equal_structs(prior_params, policy_params)
  swap = jnp.asarray(step) % period == 0
  return jax.tree_util.tree_map(
      lambda old, new: jnp.where(swap, jax.lax.stop_gradient(new), old),
      prior_params, policy_params)


# ----------------------------------------------------------------------- MPO


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
  eta = jnp.asarray(temperature, q.dtype)
  n = q.shape[0]
  q_max = jnp.max(q)
  z = (q - jax.lax.stop_gradient(q_max)) / values.safe_temperature(eta)
  log_mean = jax.nn.logsumexp(z) - jnp.log(jnp.asarray(n, q.dtype))
  soft_dual = eta * epsilon + jax.lax.stop_gradient(q_max) + eta * log_mean
  dual = jnp.where(eta > 0, soft_dual, q_max)
  is_max = q == q_max
  hard_w = is_max / jnp.sum(is_max)
  weights = jnp.where(eta > 0, jax.nn.softmax(z), hard_w.astype(q.dtype))
  return jax.lax.stop_gradient(weights), dual


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
  chex.assert_rank([log_pi, weights], 1)
  chex.assert_equal_shape([log_pi, weights],
                          custom_message="`weights` must match `log_pi`")
  chex.assert_type([log_pi, weights], float)
  return _weighted_nll(jax.lax.stop_gradient(weights), log_pi)


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
  chex.assert_type([kl, alpha], float)
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
  above the floor.
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
  _check_temperature(temperature)
  weights, temperature_loss = mpo_e_step(q, projection(temperature), epsilon)
  policy_loss = mpo_m_step_loss(log_pi, weights)
  kl_loss = jnp.zeros((), q.dtype)
  alpha_loss = jnp.zeros((), q.dtype)
  for kl, alpha, eps in kl_constraints:
    k, a = lagrange_penalty(kl, alpha, eps, projection)
    kl_loss, alpha_loss = kl_loss + k, alpha_loss + a
  loss = policy_loss + temperature_loss + kl_loss + alpha_loss
  return loss, MPOExtra(policy_loss, temperature_loss, kl_loss, alpha_loss, weights)


# --------------------------------------------------------------------- VIREL


def virel_temperature(td_error: Array, scale: Numeric = 1.0) -> Array:
  """VIREL's adaptive temperature: the critic's mean squared Bellman error.

    ε_ω = c · mean_i δ_i²   (stop-gradient),

  over a batch of TD errors δ_i = r + γ Q(s', a') − Q(s, a) of the critic; it
  shrinks to 0 as the critic becomes exact, so the Boltzmann target
  π_ω ∝ exp(Q/ε_ω) becomes greedy (Fellows, Mahajan, Rudner, Whiteson,
  "VIREL: A Variational Inference Framework for Reinforcement Learning", 2019).

  Args:
    td_error: TD errors of a batch [B].
    scale: c > 0.

  Returns:
    ε_ω [].
  """
  chex.assert_rank(td_error, 1, custom_message="`td_error` must be [B]")
  chex.assert_type(td_error, float, custom_message="`td_error` must be floating point")
  return jax.lax.stop_gradient(scale * jnp.mean(jnp.square(td_error)))


def virel_actor_loss(log_pi: Array, q: Array, bellman_error: Numeric) -> Array:
  """VIREL's E-step: the reverse KL from π to π_ω ∝ exp(Q/ε_ω), times ε_ω.

    L = mean_k [ε_ω log π(a_k|s) − Q(s, a_k)],   ε_ω stop-gradient,

  i.e. `reverse_kl_loss` at τ = ε_ω (`virel_temperature`); exact for
  categorical policies with `categorical_reverse_kl_loss`. At ε_ω = 0 it is
  the greedy loss −mean Q (Fellows et al., 2019).

  Args:
    log_pi: log π(a_k|s) of N samples [N].
    q: Q(s, a_k) [N].
    bellman_error: ε_ω ≥ 0 [].

  Returns:
    The scalar loss.
  """
  _check_samples(log_pi, q, None)
  _check_temperature(bellman_error, "bellman_error")
  return reverse_kl_loss(log_pi, q, jax.lax.stop_gradient(bellman_error))


def virel_critic_loss(q_tm1: Array, r_t: Array, discount_t: Array, q_t: Array) -> Array:
  """VIREL's M-step: policy evaluation of the current actor, ½ δ².

    δ = r_t + γ_t Q(s_t, a_t) − Q(s_{t−1}, a_{t−1}),   a_t ~ π,  target stop-gradient,

  an unbiased semi-gradient of the mean squared Bellman error ε_ω under π (no
  entropy term: VIREL's critic evaluates, the temperature lives in the actor).

  Args:
    q_tm1: Q(s_{t−1}, a_{t−1}) [].
    r_t: reward [].
    discount_t: γ_t [].
    q_t: Q(s_t, a_t) [] with a_t ~ π(·|s_t) (or E_π Q(s_t, ·)).

  Returns:
    The scalar loss.
  """
  chex.assert_rank([q_tm1, r_t, discount_t, q_t], 0)
  chex.assert_type([q_tm1, r_t, discount_t, q_t], float)
  target = jax.lax.stop_gradient(r_t + discount_t * q_t)
  return 0.5 * jnp.square(target - q_tm1)
