"""Soft Bellman backups: TD errors, targets and multi-step returns.

One transition (or one time-major trajectory [T]) per call, with rlax's naming
and argument order (`q_tm1, a_tm1, r_t, discount_t, q_t`); users `jax.vmap`.
At temperature 0 every function reduces to its rlax counterpart.

Arguments are checked at trace time and errors name them; temperatures are
scalars ≥ 0 and discounts lie in [0, 1] where their values are known then
(Python or NumPy numbers; traced arrays pass through).

Targets are stopped by default (`stop_target_gradients=True`) everywhere except
`soft_lambda_returns` and `soft_n_step_returns`, whose defaults follow
`rlax.lambda_returns` / `rlax.n_step_bootstrapped_returns` as docs/API.md fixes
them (they return targets, not TD errors).
"""

from typing import Optional, Union

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rlax_inf import _checks
from rlax_inf import values

Array = chex.Array
Numeric = chex.Numeric


def _maybe_stop(x: Array, stop: bool) -> Array:
  return jax.lax.stop_gradient(x) if stop else x


def _check_transition(q_tm1, a_tm1, r_t, discount_t, q_t):
  """One transition, checked argument by argument so that errors name it."""
  _checks.check_args(("q_tm1", q_tm1, 1, float), ("a_tm1", a_tm1, 0, int),
                     ("r_t", r_t, 0, float), ("discount_t", discount_t, 0, float),
                     ("q_t", q_t, 1, float))
  if jnp.shape(q_tm1) != jnp.shape(q_t):
    raise AssertionError(f"`q_tm1` and `q_t` must have the same length; got "
                         f"{jnp.shape(q_tm1)} and {jnp.shape(q_t)}.")
  _checks.check_discount(discount_t)


def soft_q_learning(
    q_tm1: Array,
    a_tm1: Numeric,
    r_t: Numeric,
    discount_t: Numeric,
    q_t: Array,
    temperature: Numeric = 1.0,
    log_prior_t: Optional[Array] = None,
    stop_target_gradients: bool = True,
) -> Array:
  """Soft Q-learning TD error.

    δ = r_t + γ_t · τ log Σ_a π0(a|s_t) exp(q_t[a]/τ) − q_tm1[a_tm1].

  At τ = 0 this is `rlax.q_learning`.

  Args:
    q_tm1: action values at s_{t−1} [A].
    a_tm1: action taken at s_{t−1} (int).
    r_t: reward.
    discount_t: discount γ_t (0 at terminations).
    q_t: action values at s_t [A].
    temperature: τ ≥ 0.
    log_prior_t: log π0(·|s_t) [A] or None (counting measure).
    stop_target_gradients: stop gradients through the target.

  Returns:
    The scalar TD error.
  """
  _check_transition(q_tm1, a_tm1, r_t, discount_t, q_t)
  _checks.check_temperature(temperature)
  target = r_t + discount_t * values.soft_value(q_t, temperature, log_prior_t)
  return _maybe_stop(target, stop_target_gradients) - q_tm1[a_tm1]


def regularized_expected_sarsa(
    q_tm1: Array,
    a_tm1: Numeric,
    r_t: Numeric,
    discount_t: Numeric,
    q_t: Array,
    log_pi_t: Array,
    temperature: Numeric = 1.0,
    log_prior_t: Optional[Array] = None,
    stop_target_gradients: bool = True,
) -> Array:
  """Regularised expected-SARSA TD error (soft policy evaluation).

    δ = r_t + γ_t Σ_a π(a|s_t) [q_t[a] − τ (log π(a|s_t) − log π0(a|s_t))] − q_tm1[a_tm1].

  At τ = 0 this is `rlax.expected_sarsa` with probabilities exp(log_pi_t).

  Args:
    q_tm1: action values at s_{t−1} [A].
    a_tm1: action taken at s_{t−1} (int).
    r_t: reward.
    discount_t: discount γ_t.
    q_t: action values at s_t [A].
    log_pi_t: log π(·|s_t) [A].
    temperature: τ ≥ 0.
    log_prior_t: log π0(·|s_t) [A] or None (counting measure).
    stop_target_gradients: stop gradients through the target.

  Returns:
    The scalar TD error.
  """
  _check_transition(q_tm1, a_tm1, r_t, discount_t, q_t)
  _checks.check_args(("log_pi_t", log_pi_t, 1, float))
  _checks.check_same_shape(("q_t", q_t), ("log_pi_t", log_pi_t))
  if log_prior_t is not None:
    _checks.check_args(("log_prior_t", log_prior_t, 1, float))
    _checks.check_same_shape(("q_t", q_t), ("log_prior_t", log_prior_t))
  _checks.check_temperature(temperature)
  v_t = values.regularized_value(q_t, log_pi_t, temperature, log_prior_t)
  target = r_t + discount_t * v_t
  return _maybe_stop(target, stop_target_gradients) - q_tm1[a_tm1]


def soft_td_target(
    r_t: Array,
    discount_t: Array,
    q_t: Array,
    log_pi_t: Array,
    temperature: Numeric = 1.0,
    log_prior_t: Optional[Array] = None,
) -> Array:
  """Soft TD target from a sampled next action (SAC's critic target).

    y = r_t + γ_t (q_t − τ (log π(a_t|s_t) − log π0(a_t|s_t))),

  elementwise; pass the minimum over twin target critics as `q_t`. No gradient
  is stopped here: the caller decides (SAC stops it).

  Args:
    r_t: rewards.
    discount_t: discounts (0 at terminations).
    q_t: value of the sampled next action.
    log_pi_t: log π(a_t|s_t) of the sampled next action.
    temperature: τ ≥ 0.
    log_prior_t: log π0(a_t|s_t) or None (counting measure).

  Returns:
    The target, of the common shape of the inputs.
  """
  _checks.check_args(*((name, x, None, float) for name, x in (
      ("r_t", r_t), ("discount_t", discount_t), ("q_t", q_t), ("log_pi_t", log_pi_t))))
  _checks.check_same_shape(("r_t", r_t), ("discount_t", discount_t), ("q_t", q_t),
                           ("log_pi_t", log_pi_t))
  _checks.check_temperature(temperature)
  tau = jnp.asarray(temperature, q_t.dtype)
  reg = log_pi_t if log_prior_t is None else log_pi_t - log_prior_t
  return r_t + discount_t * (q_t - jnp.where(tau > 0, tau * reg, 0.0))


def _check_trajectory(r_t, discount_t, v_t, regularizer_t):
  _checks.check_args(("r_t", r_t, 1, float), ("discount_t", discount_t, 1, float),
                     ("v_t", v_t, 1, float), ("regularizer_t", regularizer_t, 1, float))
  _checks.check_same_shape(("r_t", r_t), ("discount_t", discount_t), ("v_t", v_t),
                           ("regularizer_t", regularizer_t))


def soft_lambda_returns(
    r_t: Array,
    discount_t: Array,
    v_t: Array,
    regularizer_t: Array,
    lambda_: Union[Numeric, Array] = 1.0,
    stop_target_gradients: bool = False,
) -> Array:
  """Soft λ-returns of one trajectory (time-major, rlax indexing).

    G[T−1] = r[T−1] + γ[T−1] v[T−1]
    G[i]   = r[i] + γ[i] ((1 − λ[i]) v[i] + λ[i] (G[i+1] − reg[i])),

  where v[i] is the soft value of the state reached after transition i and
  reg[i] = τ (log π − log π0) of the action then taken there. With reg = 0 this
  is `rlax.lambda_returns`.

  Args:
    r_t: rewards [T].
    discount_t: discounts [T].
    v_t: soft values of the next states [T].
    regularizer_t: τ (log π − log π0) of the next actions [T].
    lambda_: scalar or [T] mixing parameter.
    stop_target_gradients: stop gradients through the returns.

  Returns:
    The returns [T].
  """
  _check_trajectory(r_t, discount_t, v_t, regularizer_t)
  _checks.check_args(("lambda_", lambda_, {0, 1}, None))
  lambda_ = jnp.ones_like(discount_t) * lambda_

  # G[T−1] = r + γ v: seed the scan with v[T−1] and drop the last regulariser
  # (the return bootstraps there). The regulariser enters linearly, so it is
  # folded into the rewards, r − γ λ reg, and the scan carries as few streams as
  # rlax.lambda_returns does.
  last = jnp.arange(r_t.shape[0]) == r_t.shape[0] - 1
  r_reg = r_t - discount_t * lambda_ * jnp.where(last, 0.0, regularizer_t)

  def body(g_next, xs):
    r, discount, v, lam = xs
    g = r + discount * ((1.0 - lam) * v + lam * g_next)
    return g, g

  _, returns = jax.lax.scan(body, v_t[-1], (r_reg, discount_t, v_t, lambda_), reverse=True)
  return _maybe_stop(returns, stop_target_gradients)


def soft_n_step_returns(
    r_t: Array,
    discount_t: Array,
    v_t: Array,
    regularizer_t: Array,
    n: int,
    stop_target_gradients: bool = False,
) -> Array:
  """Soft n-step bootstrapped returns of one trajectory (rlax indexing).

    G[i] = Σ_{k<n} Γ_{i,k} (r[i+k] − γ[i+k−1] reg[i+k−1] 1[k>0]) + Γ_{i,n} v[i+n−1],

  i.e. rewards along the next n steps, minus the regulariser τ (log π − log π0)
  of each intermediate action actually taken, bootstrapped on the soft value
  after n steps (or at the end of the trajectory). With reg = 0 this is
  `rlax.n_step_bootstrapped_returns`; with n ≥ T it equals
  `soft_lambda_returns(..., lambda_=1)`.

  Args:
    r_t: rewards [T].
    discount_t: discounts [T].
    v_t: soft values of the next states [T].
    regularizer_t: τ (log π − log π0) of the next actions [T].
    n: number of steps (static, ≥ 1).
    stop_target_gradients: stop gradients through the returns.

  Returns:
    The returns [T].
  """
  _check_trajectory(r_t, discount_t, v_t, regularizer_t)
  r_t, discount_t, v_t, regularizer_t = map(jnp.asarray, (r_t, discount_t, v_t, regularizer_t))
  if n < 1:
    raise ValueError(f"`n` must be >= 1, got {n}.")
  seq_len = r_t.shape[0]
  pad = n - 1
  # Bootstrap on v[min(i + n − 1, T − 1)].
  targets = jnp.concatenate([v_t[n - 1:], jnp.repeat(v_t[-1:], min(pad, seq_len))])
  # The regulariser of the action in the final state is never paid: the return
  # bootstraps there.
  reg = regularizer_t.at[-1].set(0.0)
  r_p = jnp.concatenate([r_t, jnp.zeros(pad, r_t.dtype)])
  d_p = jnp.concatenate([discount_t, jnp.ones(pad, discount_t.dtype)])
  reg_p = jnp.concatenate([reg, jnp.zeros(pad, reg.dtype)])
  for k in reversed(range(n)):
    inner = targets if k == n - 1 else targets - reg_p[k:k + seq_len]
    targets = r_p[k:k + seq_len] + d_p[k:k + seq_len] * inner
  return _maybe_stop(targets, stop_target_gradients)


def soft_retrace_targets(
    q_t: Array,
    a_t: Array,
    r_t: Array,
    discount_t: Array,
    log_pi_t: Array,
    log_mu_t: Array,
    temperature: Numeric = 1.0,
    log_prior_t: Optional[Array] = None,
    lambda_: Numeric = 1.0,
    stop_target_gradients: bool = True,
) -> Array:
  """Soft Retrace targets of one off-policy trajectory.

    G[T−1] = r[T−1] + γ[T−1] V_π[T−1]
    G[i]   = r[i] + γ[i] (V_π[i] + c[i] (G[i+1] − q_t[i, a_t[i]])),
    V_π[i] = Σ_a π(a|s) [q_t[i, a] − τ (log π(a|s) − log π0(a|s))],
    c[i]   = λ min(1, π(a_t[i]|s) / μ(a_t[i]|s)),

  with s the state reached after transition i (Munos et al., 2016, on the
  regularised target). At τ = 0 it equals rlax's Retrace targets.

  Args:
    q_t: action values of the next states [T, A].
    a_t: behaviour actions taken in the next states [T].
    r_t: rewards [T].
    discount_t: discounts [T].
    log_pi_t: target-policy log-probabilities [T, A].
    log_mu_t: behaviour log-probability of a_t [T].
    temperature: τ ≥ 0.
    log_prior_t: log π0 [T, A] or None (counting measure).
    lambda_: trace parameter λ.
    stop_target_gradients: stop gradients through the targets.

  Returns:
    The targets [T] for q_tm1[a_tm1].
  """
  _checks.check_args(("q_t", q_t, 2, float), ("a_t", a_t, 1, int), ("r_t", r_t, 1, float),
                     ("discount_t", discount_t, 1, float), ("log_pi_t", log_pi_t, 2, float),
                     ("log_mu_t", log_mu_t, 1, float))
  _checks.check_same_shape(("q_t", q_t), ("log_pi_t", log_pi_t))
  _checks.check_same_shape(("r_t", r_t), ("a_t", a_t), ("discount_t", discount_t),
                           ("log_mu_t", log_mu_t))
  if np.shape(q_t)[0] != np.shape(r_t)[0]:
    raise AssertionError(f"`q_t` has {np.shape(q_t)[0]} steps but `r_t` has "
                         f"{np.shape(r_t)[0]}; they must match.")
  _checks.check_discount(discount_t)
  _checks.check_temperature(temperature)
  _checks.check_args(("lambda_", lambda_, {0, 1}, None))
  if log_prior_t is None:
    v_t = jax.vmap(values.regularized_value, (0, 0, None))(q_t, log_pi_t, temperature)
  else:
    _checks.check_args(("log_prior_t", log_prior_t, 2, float))
    _checks.check_same_shape(("q_t", q_t), ("log_prior_t", log_prior_t))
    v_t = jax.vmap(values.regularized_value, (0, 0, None, 0))(
        q_t, log_pi_t, temperature, log_prior_t)
  take = jax.vmap(lambda x, a: x[a])
  q_a_t = take(q_t, a_t)
  # c = λ min(1, π/μ), and 0 where π(a_t) = 0 whatever μ(a_t) (padded or
  # masked steps with π = μ = 0 included, where log π − log μ would be NaN):
  # rlax's λ min(1, π / (μ + 1e-8)) there.
  log_pi_a_t = take(log_pi_t, a_t)
  possible = log_pi_a_t > -jnp.inf
  log_rho = jnp.where(possible, log_pi_a_t, 0.0) - log_mu_t
  c_t = jnp.where(possible, lambda_ * jnp.exp(jnp.minimum(0.0, log_rho)), 0.0)

  # Seeding the scan with V_π[T−1] and a zero last trace gives G[T−1] = r + γ V_π.
  last = jnp.arange(r_t.shape[0]) == r_t.shape[0] - 1
  c_t = jnp.where(last, 0.0, c_t)

  def body(g_next, xs):
    r, discount, v, c, q_a = xs
    g = r + discount * (v + c * (g_next - q_a))
    return g, g

  _, returns = jax.lax.scan(body, v_t[-1], (r_t, discount_t, v_t, c_t, q_a_t), reverse=True)
  return _maybe_stop(returns, stop_target_gradients)


def soft_retrace(
    q_tm1: Array,
    q_t: Array,
    a_tm1: Array,
    a_t: Array,
    r_t: Array,
    discount_t: Array,
    log_pi_t: Array,
    log_mu_t: Array,
    temperature: Numeric = 1.0,
    log_prior_t: Optional[Array] = None,
    lambda_: Numeric = 1.0,
    stop_target_gradients: bool = True,
) -> Array:
  """Soft Retrace TD errors: `soft_retrace_targets(...) − q_tm1[a_tm1]`.

  Argument order as `rlax.retrace`; behaviour probabilities are given as
  log-probabilities `log_mu_t` of the actions `a_t`.

  Returns:
    TD errors [T].
  """
  _checks.check_args(("q_tm1", q_tm1, 2, float), ("a_tm1", a_tm1, 1, int))
  _checks.check_same_shape(("q_t", q_t), ("q_tm1", q_tm1))
  _checks.check_same_shape(("a_t", a_t), ("a_tm1", a_tm1))
  targets = soft_retrace_targets(q_t, a_t, r_t, discount_t, log_pi_t, log_mu_t,
                                 temperature, log_prior_t, lambda_,
                                 stop_target_gradients)
  return targets - jax.vmap(lambda x, a: x[a])(q_tm1, a_tm1)
