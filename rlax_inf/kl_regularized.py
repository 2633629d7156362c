"""KL-regularised policy improvement: the policy gradient and stable EM.

Both keep the policy near a reference π0 by a KL penalty of weight τ:
  * `kl_regularized_pg_loss` (Bartunov): a score-function surrogate of one
    trajectory with the KL inside (long-term) or beside (instantaneous) the return;
  * `stable_em_loss`, `swap_prior` (Rawlik et al., 2012): the reverse-KL loss with
    the previous policy as the prior, the KL-penalised trust region.

Returns, KLs inside them and baselines are stop-gradient; losses are to be minimised.
"""

from typing import Any, Optional

import chex
import jax
import jax.numpy as jnp

from rlax_inf import _checks
from rlax_inf import divergences
from rlax_inf._checks import check_samples as _check_samples
from rlax_inf._checks import check_temperature as _check_temperature

Array = chex.Array
Numeric = chex.Numeric


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
  _checks.check_args(
      ("log_pi_t", log_pi_t, 1, None), ("kl_t", kl_t, 1, None), ("r_t", r_t, 1, None),
      ("discount_t", discount_t, 1, None))
  chex.assert_equal_shape([log_pi_t, kl_t, r_t, discount_t],
                          custom_message="`log_pi_t`, `kl_t`, `r_t`, `discount_t` must match")
  _checks.check_args(
      ("log_pi_t", log_pi_t, None, float), ("kl_t", kl_t, None, float), ("r_t", r_t, None, float),
      ("discount_t", discount_t, None, float))
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
  return divergences.reverse_kl_loss(log_pi, q, temperature, log_pi_old)


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
  chex.assert_trees_all_equal_structs(
      prior_params, policy_params,
      custom_message="`prior_params` and `policy_params` must be pytrees of one structure")
  swap = jnp.asarray(step) % period == 0
  return jax.tree_util.tree_map(
      lambda old, new: jnp.where(swap, jax.lax.stop_gradient(new), old),
      prior_params, policy_params)
