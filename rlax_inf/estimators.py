"""Importance weights and variational bounds.

Log-weights `log_w` are log p(x, O) − log q(x) of samples x ~ q. Everything is in
log space; −inf log-weights (samples with no posterior mass) are allowed as long
as at least one weight along `axis` is finite.
"""

from typing import Any, Callable, Optional, Tuple

import chex
import jax
import jax.numpy as jnp

from rlax_inf import _checks
from rlax_inf import values

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
  return _logsumexp(log_w, axis) - jnp.log(jnp.asarray(k, log_w.dtype))


def _logsumexp(x: Array, axis: int) -> Array:
  """logsumexp that is −inf with a zero gradient (not NaN) when every x is −inf."""
  m = jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
  m = jnp.where(jnp.isfinite(m), m, 0.0)
  s = jnp.sum(jnp.exp(x - m), axis=axis)
  positive = s > 0
  # Double where: the log never sees 0, so the masked branch's cotangent stays finite.
  return jnp.where(positive, jnp.log(jnp.where(positive, s, 1.0)) + jnp.squeeze(m, axis),
                   -jnp.inf)


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
  _checks.check_args(
      ("r_t", r_t, 1, None), ("log_pi_t", log_pi_t, 1, None), ("log_prior_t", log_prior_t, 1, None))
  _checks.check_same_shape(("r_t", r_t), ("log_pi_t", log_pi_t), ("log_prior_t", log_prior_t))
  _checks.check_args(
      ("r_t", r_t, None, float), ("log_pi_t", log_pi_t, None, float),
      ("log_prior_t", log_prior_t, None, float))
  _checks.check_temperature(temperature)
  tau = jnp.asarray(temperature, r_t.dtype)
  total = jnp.sum(r_t)
  safe_tau = values.safe_temperature(tau)
  reward_term = jnp.where(
      tau > 0, total / safe_tau,
      jnp.where(total > 0, jnp.inf, jnp.where(total < 0, -jnp.inf, 0.0)))
  return reward_term - jnp.sum(log_pi_t - log_prior_t)


# ------------------------------------------------------ gradient estimators


def leave_one_out_baseline(cost: Array) -> Array:
  """Leave-one-out control variate b_k = (1/(N−1)) Σ_{j≠k} f_j (0 when N = 1).

  Independent of sample k, so subtracting it keeps a score-function estimator
  unbiased (Kool, van Hoof, Welling, "Buy 4 REINFORCE samples, get a baseline
  for free!", 2019). The result is stop-gradient.

  Args:
    cost: per-sample costs f_k [N].

  Returns:
    The baselines [N].
  """
  chex.assert_rank(cost, 1, custom_message="`cost` must be [N]")
  chex.assert_type(cost, float, custom_message="`cost` must be floating point")
  cost = jax.lax.stop_gradient(cost)
  n = cost.shape[0]
  if n == 1:
    return jnp.zeros_like(cost)
  return (jnp.sum(cost) - cost) / (n - 1)


def score_function_surrogate(
    log_prob: Array, cost: Array, baseline: Optional[Array] = None
) -> Array:
  """Surrogate whose value is mean_k f_k and whose gradient is the score-function estimator.

    ∇ = (1/N) Σ_k (f_k − b_k) ∇ log p_θ(x_k),   x_k ~ p_θ,

  f and b stop-gradient (Williams, "Simple statistical gradient-following
  algorithms", 1992). The default baseline is `leave_one_out_baseline`.
  Samples with non-finite f_k − b_k or log p = −inf carry no gradient.

  Args:
    log_prob: log p_θ(x_k) [N] (the gradient flows through this).
    cost: f(x_k) [N].
    baseline: b [] or [N] (independent of x_k), or None for leave-one-out.

  Returns:
    The scalar surrogate.
  """
  _checks.check_args(("log_prob", log_prob, 1, None), ("cost", cost, 1, None))
  chex.assert_equal_shape([log_prob, cost], custom_message="`log_prob` and `cost` must match")
  _checks.check_args(("log_prob", log_prob, None, float), ("cost", cost, None, float))
  cost = jax.lax.stop_gradient(cost)
  if baseline is None:
    baseline = leave_one_out_baseline(cost)
  baseline = jax.lax.stop_gradient(jnp.broadcast_to(baseline, cost.shape))
  advantage = cost - baseline
  finite = jnp.isfinite(advantage) & (log_prob > -jnp.inf)
  advantage = jnp.where(finite, advantage, 0.0)
  safe = jnp.where(log_prob > -jnp.inf, log_prob, 0.0)
  return jnp.mean(cost) + jnp.mean(advantage * (safe - jax.lax.stop_gradient(safe)))


def score_function_gradient(
    sample_fn: Callable[[Any, Array, int], Array],
    log_prob_fn: Callable[[Any, Array], Array],
    cost_fn: Callable[[Array], Array],
    params: Any,
    key: Array,
    num_samples: int = 2,
    use_baseline: bool = True,
) -> Tuple[Array, Any]:
  """Score-function estimate of ∇_θ E_{x~p_θ}[f(x)] from N samples.

    ĝ = (1/N) Σ_k (f(x_k) − b_k) ∇_θ log p_θ(x_k),   b = leave-one-out (or 0).

  Args:
    sample_fn: (params, key, n) -> n samples (not differentiated).
    log_prob_fn: (params, samples) -> log p_θ of each sample [N].
    cost_fn: samples -> f of each sample [N] (independent of θ).
    params: θ, a pytree.
    key: PRNG key.
    num_samples: N.
    use_baseline: leave-one-out baseline (True) or none (False).

  Returns:
    (mean cost, gradient pytree).
  """
  samples = jax.lax.stop_gradient(sample_fn(params, key, num_samples))
  cost = cost_fn(samples)
  baseline = None if use_baseline else jnp.zeros((), cost.dtype)
  return jax.value_and_grad(
      lambda p: score_function_surrogate(log_prob_fn(p, samples), cost, baseline))(params)


def pathwise_gradient(
    cost_fn: Callable[[Any, Array], Array],
    params: Any,
    key: Array,
    num_samples: int = 1,
) -> Tuple[Array, Any]:
  """Pathwise (reparameterisation) estimate of ∇_θ E_ε[f(g_θ(ε))] from N samples.

    ĝ = (1/N) Σ_k ∇_θ f(g_θ(ε_k)),   ε_k ~ p(ε) independent of θ

  (Kingma & Welling, 2014; Rezende et al., 2014).

  Args:
    cost_fn: (params, key) -> the cost of one reparameterised sample [].
    params: θ, a pytree.
    key: PRNG key.
    num_samples: N.

  Returns:
    (mean cost, gradient pytree).
  """
  keys = jax.random.split(key, num_samples)
  return jax.value_and_grad(
      lambda p: jnp.mean(jax.vmap(cost_fn, in_axes=(None, 0))(p, keys)))(params)


def gradient_variance(
    grad_fn: Callable[[Any, Array], Any], params: Any, keys: Array
) -> Tuple[Any, Any]:
  """Per-parameter mean and variance of a stochastic gradient over seeds.

    mean = (1/S) Σ_s ĝ_s,   variance = (1/(S−1)) Σ_s (ĝ_s − mean)²   (elementwise),

  with ĝ_s = grad_fn(params, keys[s]), vmapped over the S seeds. The standard
  error of `mean` is sqrt(variance / S).

  Args:
    grad_fn: (params, key) -> gradient pytree.
    params: θ, a pytree.
    keys: S PRNG keys [S, 2] (or [S] typed keys), S ≥ 2.

  Returns:
    (mean, variance), two pytrees shaped like the gradient.
  """
  chex.assert_rank(keys, {1, 2}, custom_message="`keys` must be [S, 2] or [S]")
  grads = jax.vmap(grad_fn, in_axes=(None, 0))(params, keys)
  mean = jax.tree_util.tree_map(lambda g: jnp.mean(g, axis=0), grads)
  variance = jax.tree_util.tree_map(lambda g: jnp.var(g, axis=0, ddof=1), grads)
  return mean, variance
