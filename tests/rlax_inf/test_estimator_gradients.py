"""Every gradient estimator against an exact gradient.

Oracles: closed-form gradients (Gaussian bandit), autodiff of exact
expectations on small categorical problems and tiny MDPs (enumeration of all
sample tuples / trajectories), so E[estimator] is known exactly. Monte Carlo
checks use fixed seeds, vmap over seeds, and tolerances of 5 standard errors
(plus, for the self-normalised forward KL, an O(1/N) bias bound calibrated by
exact enumeration at small N).
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlax_inf
from rlax_inf import estimators
from rlax_inf import policy_losses
from rlax_inf import values

NUM_SEEDS = 4096
TAU = 0.7

# A small categorical problem: one state, four actions, a non-uniform prior.
LOGITS = jnp.array([0.3, -0.5, 1.0, 0.1])
Q = jnp.array([1.0, 2.0, -0.5, 0.4])
LOG_PRIOR = jax.nn.log_softmax(jnp.array([0.0, 0.5, -0.2, 0.1]))


def _assert_unbiased(mean, variance, exact, num_seeds, extra_tol=0.0):
  mean, variance, exact = (np.asarray(x, np.float64) for x in (mean, variance, exact))
  se = np.sqrt(variance / num_seeds)
  err = np.abs(mean - exact)
  assert np.all(err <= 5 * se + extra_tol + 1e-6), (mean, exact, se)


def _all_tuples(num_actions, n):
  return jnp.asarray(list(itertools.product(range(num_actions), repeat=n)))


def _expected_over_tuples(estimate, logits, num_actions, n):
  """Exact E[estimate(actions)] over actions ~ π^n i.i.d., by enumeration."""
  tuples = _all_tuples(num_actions, n)
  log_pi = jax.nn.log_softmax(logits)
  weights = jnp.exp(jnp.sum(log_pi[tuples], axis=1))
  grads = jax.vmap(estimate)(tuples)
  return jnp.tensordot(weights, grads, axes=1)


# ------------------------------------------------------------ categorical RKL


def _rkl_score_grad(logits, actions):
  def loss(th):
    log_pi = jax.nn.log_softmax(th)[actions]
    return policy_losses.reverse_kl_score_loss(
        log_pi, Q[actions], TAU, LOG_PRIOR[actions])
  return jax.grad(loss)(logits)


def _exact_rkl_grad(logits):
  return jax.grad(lambda th: policy_losses.categorical_reverse_kl_loss(
      jax.nn.log_softmax(th), Q, TAU, LOG_PRIOR))(logits)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_rkl_score_function_is_exactly_unbiased_by_enumeration(n):
  expected = jax.jit(lambda th: _expected_over_tuples(
      lambda a: _rkl_score_grad(th, a), th, 4, n))(LOGITS)
  np.testing.assert_allclose(expected, _exact_rkl_grad(LOGITS), atol=2e-5)


def test_rkl_score_function_mean_over_seeds_matches_exact_gradient():
  def grad_fn(th, key):
    actions = jax.random.categorical(key, th, shape=(4,))
    return _rkl_score_grad(th, actions)
  keys = jax.random.split(jax.random.PRNGKey(0), NUM_SEEDS)
  mean, var = jax.jit(estimators.gradient_variance, static_argnums=0)(grad_fn, LOGITS, keys)
  _assert_unbiased(mean, var, _exact_rkl_grad(LOGITS), NUM_SEEDS)
  # The leave-one-out baseline is a real control variate: the estimator no
  # longer depends on an offset of Q, while without a baseline the variance grows
  # with it.
  def shifted(th, key, baseline):
    actions = jax.random.categorical(key, th, shape=(4,))
    return jax.grad(lambda t: policy_losses.reverse_kl_score_loss(
        jax.nn.log_softmax(t)[actions], Q[actions] + 10.0, TAU, LOG_PRIOR[actions],
        baseline=baseline))(th)
  stats = jax.jit(estimators.gradient_variance, static_argnums=0)
  mean_loo, var_loo = stats(lambda th, k: shifted(th, k, None), LOGITS, keys)
  np.testing.assert_allclose(mean_loo, mean, atol=1e-5)
  np.testing.assert_allclose(var_loo, var, rtol=1e-3, atol=1e-6)
  _, var_none = stats(lambda th, k: shifted(th, k, jnp.zeros(())), LOGITS, keys)
  assert np.sum(var_none) > 20 * np.sum(var_loo)


# ------------------------------------------------------------ categorical FKL


def _fkl_grad(logits, actions, q, log_prior):
  return jax.grad(lambda th: policy_losses.forward_kl_loss(
      jax.nn.log_softmax(th)[actions], q[actions], TAU, log_prior[actions]))(logits)


def test_fkl_bias_shrinks_with_n_and_mean_over_seeds_matches():
  logits, q, log_prior = LOGITS[:3], Q[:3], jax.nn.log_softmax(LOG_PRIOR[:3])
  exact = jax.grad(lambda th: policy_losses.categorical_forward_kl_loss(
      jax.nn.log_softmax(th), q, TAU, log_prior))(logits)
  # The exact gradient of KL(p* ‖ π) is π − p*.
  p_star = jnp.exp(values.boltzmann_log_policy(q, TAU, log_prior))
  np.testing.assert_allclose(exact, jax.nn.softmax(logits) - p_star, atol=1e-6)
  biases = []
  for n in range(1, 5):
    expected = jax.jit(lambda th: _expected_over_tuples(
        lambda a: _fkl_grad(th, a, q, log_prior), th, 3, n))(logits)
    biases.append(float(np.linalg.norm(expected - exact)))
  # N = 1: the single weight is 1, so E[ĝ] = −E[∇log π] = 0 and the bias is the gradient.
  np.testing.assert_allclose(biases[0], np.linalg.norm(exact), rtol=1e-4)
  assert all(b1 < b0 for b0, b1 in zip(biases, biases[1:])), biases
  # SNIS bias is O(1/N): calibrate the constant at N = 4 and allow twice it.
  bias_constant = 4 * biases[-1]
  n = 256
  def grad_fn(th, key):
    actions = jax.random.categorical(key, th, shape=(n,))
    return _fkl_grad(th, actions, q, log_prior)
  keys = jax.random.split(jax.random.PRNGKey(1), 1024)
  mean, var = jax.jit(estimators.gradient_variance, static_argnums=0)(grad_fn, logits, keys)
  _assert_unbiased(mean, var, exact, 1024, extra_tol=2 * bias_constant / n)


# ------------------------------------------------- continuous Gaussian bandit

MU, LOG_SIGMA, CENTRE = 0.3, -0.2, 1.1


def _gaussian_log_prob(a, mu, log_sigma):
  return -0.5 * jnp.square((a - mu) / jnp.exp(log_sigma)) - log_sigma - 0.5 * jnp.log(2 * jnp.pi)


def _bandit_q(a):
  return -jnp.square(a - CENTRE)


def _exact_bandit_grad(tau):
  # L = E[τ log π − Q] = −τ H + (μ − c)² + σ²,  H = log σ + const.
  sigma2 = np.exp(2 * LOG_SIGMA)
  return np.array([2 * (MU - CENTRE), -tau + 2 * sigma2])


@pytest.mark.parametrize("estimator", ["pathwise", "score"])
def test_gaussian_bandit_rkl_estimators_match_closed_form(estimator):
  params = jnp.array([MU, LOG_SIGMA])

  def pathwise_cost(p, key):
    eps = jax.random.normal(key, (1,))
    a = p[0] + jnp.exp(p[1]) * eps
    return policy_losses.reverse_kl_loss(_gaussian_log_prob(a, p[0], p[1]), _bandit_q(a), TAU)

  def grad_fn(p, key):
    if estimator == "pathwise":
      return estimators.pathwise_gradient(pathwise_cost, p, key, 4)[1]
    a = jax.lax.stop_gradient(p[0] + jnp.exp(p[1]) * jax.random.normal(key, (4,)))
    return jax.grad(lambda p: policy_losses.reverse_kl_score_loss(
        _gaussian_log_prob(a, p[0], p[1]), _bandit_q(a), TAU))(p)

  keys = jax.random.split(jax.random.PRNGKey(2), NUM_SEEDS)
  mean, var = jax.jit(estimators.gradient_variance, static_argnums=0)(grad_fn, params, keys)
  _assert_unbiased(mean, var, _exact_bandit_grad(TAU), NUM_SEEDS)


def test_score_function_gradient_helper_matches_surrogate():
  def sample_fn(th, key, n):
    return jax.random.categorical(key, th, shape=(n,))
  def log_prob_fn(th, a):
    return jax.nn.log_softmax(th)[a]
  def cost_fn(a):
    return -Q[a]
  exact = jax.grad(lambda th: -jnp.sum(jax.nn.softmax(th) * Q))(LOGITS)
  keys = jax.random.split(jax.random.PRNGKey(3), NUM_SEEDS)
  grad_fn = lambda th, k: estimators.score_function_gradient(
      sample_fn, log_prob_fn, cost_fn, th, k, 3)[1]
  mean, var = jax.jit(estimators.gradient_variance, static_argnums=0)(grad_fn, LOGITS, keys)
  _assert_unbiased(mean, var, exact, NUM_SEEDS)


def test_stable_em_pathwise_matches_closed_form_gaussian_kl():
  # π = N(μ, σ), π_old = N(0, 1): E[τ (log π − log π_old) − Q] = τ KL(π ‖ π_old) − E_π Q.
  params = jnp.array([MU, LOG_SIGMA])

  def exact_loss(p):
    sigma2 = jnp.exp(2 * p[1])
    kl = 0.5 * (sigma2 + p[0] ** 2 - 1.0) - p[1]
    return TAU * kl + jnp.square(p[0] - CENTRE) + sigma2

  def cost(p, key):
    a = p[0] + jnp.exp(p[1]) * jax.random.normal(key, (2,))
    return policy_losses.stable_em_loss(
        _gaussian_log_prob(a, p[0], p[1]), _bandit_q(a), _gaussian_log_prob(a, 0.0, 0.0), TAU)

  grad_fn = lambda p, k: estimators.pathwise_gradient(cost, p, k)[1]
  keys = jax.random.split(jax.random.PRNGKey(4), NUM_SEEDS)
  mean, var = jax.jit(estimators.gradient_variance, static_argnums=0)(grad_fn, params, keys)
  _assert_unbiased(mean, var, jax.grad(exact_loss)(params), NUM_SEEDS)


# ---------------------------------------------------------------- tiny MDPs

S, A, T = 2, 2, 3
_rng = np.random.default_rng(0)
TRANSITIONS = jnp.asarray(_rng.dirichlet(np.ones(S), size=(S, A)), jnp.float32)
REWARDS = jnp.asarray(_rng.normal(size=(S, A)), jnp.float32)
INITIAL = jnp.array([0.6, 0.4])
PRIOR_LOGITS = jnp.asarray(_rng.normal(size=(S, A)), jnp.float32)
THETA = jnp.asarray(_rng.normal(size=(S, A)), jnp.float32)


def _enumerate_trajectories(horizon):
  combos = np.array(list(itertools.product(range(S), range(A), repeat=horizon)))
  return jnp.asarray(combos[:, 0::2]), jnp.asarray(combos[:, 1::2])


def _log_p_dynamics(states, actions):
  lp = jnp.log(INITIAL[states[0]])
  for t in range(states.shape[0] - 1):
    lp += jnp.log(TRANSITIONS[states[t], actions[t], states[t + 1]])
  return lp


def _sample_trajectory(theta, key, horizon):
  keys = jax.random.split(key, 2 * horizon + 1)
  s = jax.random.categorical(keys[0], jnp.log(INITIAL))
  states, actions = [], []
  for t in range(horizon):
    a = jax.random.categorical(keys[2 * t + 1], theta[s])
    states.append(s)
    actions.append(a)
    s = jax.random.categorical(keys[2 * t + 2], jnp.log(TRANSITIONS[s, a]))
  return jnp.stack(states), jnp.stack(actions)


def _kl_pg_grad(theta, states, actions, long_term, baseline):
  def loss(th):
    log_pi = jax.nn.log_softmax(th)
    log_prior = jax.nn.log_softmax(PRIOR_LOGITS)
    kl_t = jax.vmap(lambda s: values.kl(log_pi[s], log_prior[s]))(states)
    return policy_losses.kl_regularized_pg_loss(
        log_pi[states, actions], kl_t, REWARDS[states, actions], jnp.ones(T), TAU,
        long_term=long_term, baseline_t=baseline)
  return jax.grad(loss)(theta)


@functools.partial(jax.jit, static_argnums=0)
def _exact_kl_pg_grad(long_term):
  states, actions = _enumerate_trajectories(T)
  log_prior = jax.nn.log_softmax(PRIOR_LOGITS)

  def log_q(th):  # log q_θ(τ) of every trajectory
    log_pi = jax.nn.log_softmax(th)
    return (jax.vmap(_log_p_dynamics)(states, actions)
            + jnp.sum(log_pi[states, actions], axis=1))

  def kls(th):
    log_pi = jax.nn.log_softmax(th)
    return jax.vmap(jax.vmap(lambda s: values.kl(log_pi[s], log_prior[s])))(states)

  ret = jnp.sum(REWARDS[states, actions], axis=1)
  if long_term:  # −∇ E_q Σ_t (r_t − τ KL_t)
    return jax.grad(lambda th: -jnp.sum(jnp.exp(log_q(th)) * (ret - TAU * jnp.sum(kls(th), 1))))(THETA)
  # Instantaneous: ∇ of the return, and ∇KL_t at the visited states only.
  return jax.grad(lambda th: -jnp.sum(jnp.exp(log_q(th)) * ret)
                  + TAU * jnp.sum(jax.lax.stop_gradient(jnp.exp(log_q(th))) * jnp.sum(kls(th), 1)))(THETA)


@pytest.mark.parametrize("long_term", [True, False])
def test_kl_regularized_pg_is_unbiased(long_term):
  exact = _exact_kl_pg_grad(long_term)
  # Exact expectation of the estimator over all 64 trajectories.
  @jax.jit
  def expected(states, actions):
    log_q = (jax.vmap(_log_p_dynamics)(states, actions)
             + jnp.sum(jax.nn.log_softmax(THETA)[states, actions], axis=1))
    grads = jax.vmap(lambda s, a: _kl_pg_grad(THETA, s, a, long_term, None))(states, actions)
    return jnp.tensordot(jnp.exp(log_q), grads, axes=1)
  np.testing.assert_allclose(expected(*_enumerate_trajectories(T)), exact, atol=2e-5)
  # Monte Carlo over seeds, with a constant baseline (still unbiased).
  def grad_fn(th, key):
    s, a = _sample_trajectory(th, key, T)
    return _kl_pg_grad(th, s, a, long_term, jnp.full((T,), 0.5))
  keys = jax.random.split(jax.random.PRNGKey(5), NUM_SEEDS)
  mean, var = jax.jit(estimators.gradient_variance, static_argnums=0)(grad_fn, THETA, keys)
  _assert_unbiased(mean, var, exact, NUM_SEEDS)


def test_trajectory_fkl_bias_shrinks_with_m_and_mean_over_seeds_matches():
  horizon = 2
  states, actions = _enumerate_trajectories(horizon)
  log_prior = jax.nn.log_softmax(PRIOR_LOGITS)
  log_dyn = jax.jit(jax.vmap(_log_p_dynamics))(states, actions)
  r = REWARDS[states, actions]
  # Posterior p(τ|O) ∝ p(s_1) Π π0 P exp(Σ r/τ), by enumeration.
  log_post = jax.nn.log_softmax(
      log_dyn + jnp.sum(log_prior[states, actions], 1) + jnp.sum(r, 1) / TAU)
  exact = jax.jit(jax.grad(lambda th: -jnp.sum(jnp.exp(log_post) * jnp.sum(
      jax.nn.log_softmax(th)[states, actions], 1))))(THETA)

  def grad_of(th, idx):  # idx: M trajectory indices
    return jax.grad(lambda t: policy_losses.trajectory_forward_kl_loss(
        jax.nn.log_softmax(t)[states[idx], actions[idx]], r[idx], TAU,
        log_prior[states[idx], actions[idx]]))(th)

  log_q = log_dyn + jnp.sum(jax.nn.log_softmax(THETA)[states, actions], 1)
  m = 256

  def grad_fn(th, key):
    idx = jax.random.categorical(key, log_q, shape=(m,))
    return grad_of(th, idx)

  @jax.jit
  def run(keys):
    expectations = []
    for size in (1, 2):  # exact E[ĝ] over all M-tuples of the 16 trajectories
      tuples = _all_tuples(states.shape[0], size)
      w = jnp.exp(jnp.sum(log_q[tuples], 1))
      expectations.append(jnp.tensordot(w, jax.vmap(lambda i: grad_of(THETA, i))(tuples), axes=1))
    return expectations, estimators.gradient_variance(grad_fn, THETA, keys)

  expectations, (mean, var) = run(jax.random.split(jax.random.PRNGKey(6), 1024))
  biases = [float(np.linalg.norm(e - exact)) for e in expectations]
  assert biases[0] > biases[1], biases
  _assert_unbiased(mean, var, exact, 1024, extra_tol=2 * 2 * biases[-1] / m)


def test_gradient_variance_is_the_per_parameter_sample_variance():
  def grad_fn(p, key):
    return {"a": p["a"] * jax.random.normal(key, (3,)), "b": jax.random.uniform(key)}
  keys = jax.random.split(jax.random.PRNGKey(7), 50)
  mean, var = jax.jit(estimators.gradient_variance, static_argnums=0)(
      grad_fn, {"a": jnp.ones(3), "b": 0.0}, keys)
  samples = np.asarray(jax.vmap(lambda k: jax.random.normal(k, (3,)))(keys))
  np.testing.assert_allclose(mean["a"], samples.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(var["a"], samples.var(0, ddof=1), rtol=1e-5)
  assert var["b"].shape == ()


def test_leave_one_out_baseline_and_surrogate_value():
  cost = jnp.array([1.0, 2.0, 6.0])
  np.testing.assert_allclose(estimators.leave_one_out_baseline(cost), [4.0, 3.5, 1.5])
  np.testing.assert_allclose(estimators.leave_one_out_baseline(cost[:1]), [0.0])
  log_p = jnp.log(jnp.array([0.2, 0.3, 0.5]))
  value, grad = jax.value_and_grad(estimators.score_function_surrogate)(log_p, cost)
  np.testing.assert_allclose(value, 3.0)
  np.testing.assert_allclose(grad, (cost - jnp.array([4.0, 3.5, 1.5])) / 3, rtol=1e-6)
  grad_cost = jax.grad(estimators.score_function_surrogate, argnums=1)(log_p, cost)
  np.testing.assert_allclose(grad_cost, 0.0)
  assert rlax_inf.reverse_kl_loss is policy_losses.reverse_kl_loss
