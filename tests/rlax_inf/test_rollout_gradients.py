"""Rollout gradient estimators against exact gradients and finite differences.

Oracles: a tiny linear-quadratic system (pure JAX, the `rlax_inf.envs`
interface) whose smoothed return F(K) = E[Σ_t r_t] under a_t = K x_t + σ ε_t
is a closed-form matrix recursion, differentiated exactly; a one-step
threshold reward whose smoothed gradient is a Gaussian density (the pathwise
estimator is 0 there: the case Suh et al.'s bias check exists for); float64
central differences on the pendulum (pure JAX) and on Brax inverted_pendulum
(slow: a Brax compile). Monte Carlo checks vmap over seeds with tolerances of
5 standard errors.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy import stats

import rlax_inf
from rlax_inf import envs
from rlax_inf.envs import core

A = np.array([[1.0, 0.1], [-0.2, 0.95]])
B = np.array([[0.0], [0.1]])
Q = np.diag([1.0, 0.5])
R = np.array([[0.1]])
X0 = np.array([1.0, -0.5])
K0 = np.array([[-0.5, -0.8]])
SIGMA = 0.3
H = 6
N = 8
SEEDS = 256


class LinearQuadratic(core.Environment):
  """x' = A x + B a, r = −(x'ᵀ Q x' + aᵀ R a), fixed start x0, never ends."""

  stochastic_dynamics = False

  def __init__(self, blow_up_above=None):
    self.blow_up_above = blow_up_above
    super().__init__(core.EnvSpec(
        name='lq', suite='classic', backend='jax', observation_size=2,
        action_size=1, discrete=False, action_low=-1e6, action_high=1e6,
        episode_length=1000, action_repeat=1, differentiable=True))

  def core_reset(self, key):
    x = jnp.asarray(X0, jnp.result_type(float))
    return x, x

  def core_step(self, inner, action, key):
    del key
    x = jnp.asarray(A, inner.dtype) @ inner + jnp.asarray(B, inner.dtype) @ action
    if self.blow_up_above is not None:  # A forced overflow on large actions.
      x = x + jnp.where(action[0] > self.blow_up_above, jnp.inf, 0.0)
    return x, x, lq_reward(x, action), jnp.zeros(())


def lq_reward(x_next, action):
  dtype = x_next.dtype
  return -(x_next @ jnp.asarray(Q, dtype) @ x_next
           + action @ jnp.asarray(R, dtype) @ action)


def float64_reward(next_state, action):
  """The reward from the float64 observation (`State.reward` is float32)."""
  return lq_reward(next_state.final_obs, action)


def linear_policy(k, obs):
  return k @ obs


def exact_objective(k, sigma=SIGMA, horizon=H):
  """F(K) = −Σ_{t<H} [tr(Q Σ_{t+1}) + tr(R K Σ_t Kᵀ) + σ² tr R] in closed form.

  Σ_t = E[x_t x_tᵀ]: Σ_0 = x0 x0ᵀ, Σ_{t+1} = M Σ_t Mᵀ + σ² B Bᵀ, M = A + B K.
  """
  dtype = k.dtype
  a, b, q, r = (jnp.asarray(m, dtype) for m in (A, B, Q, R))
  x0 = jnp.asarray(X0, dtype)
  m = a + b @ k
  cov = jnp.outer(x0, x0)
  total = 0.0
  for _ in range(horizon):
    nxt = m @ cov @ m.T + sigma**2 * b @ b.T
    total -= jnp.trace(q @ nxt) + jnp.trace(r @ k @ cov @ k.T) + sigma**2 * jnp.trace(r)
    cov = nxt
  return total


def _seed_estimates(estimator, seeds=SEEDS):
  """Estimates [S, P] of `estimator(key)` over S seeds, plus the outputs."""
  out = jax.jit(jax.vmap(estimator))(jax.random.split(jax.random.PRNGKey(0), seeds))
  return np.asarray(out.grad, np.float64).reshape(seeds, -1), out


def _assert_within_se(est, exact, extra=0.0):
  mean = est.mean(axis=0)
  se = est.std(axis=0, ddof=1) / np.sqrt(est.shape[0])
  exact = np.asarray(exact, np.float64).reshape(-1)
  assert np.all(np.abs(mean - exact) <= 5 * se + extra), (mean, exact, se)


def _estimators(env, state, k, reward_fn=None):
  kw = dict(sigma=SIGMA, horizon=H, num_samples=N, reward_fn=reward_fn)
  return {
      'zeroth': lambda key: rlax_inf.zeroth_order_gradient(
          env, linear_policy, k, state, key, **kw),
      'first': lambda key: rlax_inf.first_order_gradient(
          env, linear_policy, k, state, key, **kw),
      'alpha': lambda key: rlax_inf.alpha_order_gradient(
          env, linear_policy, k, state, key, bias_threshold=jnp.inf, **kw),
  }


# float64 is slow (~20 s on the shared VM); the default set keeps float32, and
# float64 through the pendulum central-difference test.
@pytest.mark.parametrize('x64', [False, pytest.param(True, marks=pytest.mark.slow)])
def test_every_estimator_mean_is_the_exact_lq_gradient(x64):
  with jax.enable_x64(x64):
    dtype = jnp.float64 if x64 else jnp.float32
    env = LinearQuadratic()
    state = env.reset(jax.random.PRNGKey(0))
    assert state.obs.dtype == dtype
    k = jnp.asarray(K0, dtype)
    exact = np.asarray(jax.grad(exact_objective)(k), np.float64)
    reward_fn = float64_reward if x64 else None  # float32: State.reward.
    value = None
    for name, fn in _estimators(env, state, k, reward_fn).items():
      est, out = _seed_estimates(fn)
      assert out.grad.dtype == dtype and int(np.sum(out.num_nonfinite)) == 0, name
      _assert_within_se(est, exact)
      value = float(np.mean(out.value)) if value is None else value
      if name != 'alpha':
        # The per-sample variance σ̂² (trace) predicts the spread over seeds of
        # the N-sample mean: Σ_p Var_s(ḡ_p) ≈ E[σ̂²] / N.
        spread = np.sum(np.var(est, axis=0, ddof=1))
        assert 0.7 < spread / (np.mean(out.variance) / N) < 1.4, name
    np.testing.assert_allclose(value, exact_objective(k), rtol=0.05)
    # Pathwise is far less noisy than the score function on this smooth system.
    assert np.mean(out.first.variance) < 0.05 * np.mean(out.zeroth.variance)
    # Without a bias check α is the variance-optimal α* (near 1 here).
    v0, v1 = np.asarray(out.zeroth.variance), np.asarray(out.first.variance)
    np.testing.assert_allclose(out.alpha, v0 / (v0 + v1), rtol=1e-5)


def test_zeroth_order_without_baseline_is_unbiased_and_noisier():
  env = LinearQuadratic()
  state = env.reset(jax.random.PRNGKey(0))
  k = jnp.asarray(K0, jnp.float32)
  exact = jax.grad(exact_objective)(k)
  kw = dict(sigma=SIGMA, horizon=H, num_samples=N)
  plain, out_plain = _seed_estimates(lambda key: rlax_inf.zeroth_order_gradient(
      env, linear_policy, k, state, key, use_baseline=False, **kw))
  _assert_within_se(plain, exact)
  loo, out_loo = _seed_estimates(lambda key: rlax_inf.zeroth_order_gradient(
      env, linear_policy, k, state, key, **kw))
  assert np.mean(out_loo.variance) < 0.5 * np.mean(out_plain.variance)


def test_batched_start_states():
  """N start states (one per sample): the same estimator, averaged over them."""
  env = LinearQuadratic()
  states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), N))
  k = jnp.asarray(K0, jnp.float32)
  est, _ = _seed_estimates(lambda key: rlax_inf.first_order_gradient(
      env, linear_policy, k, states, key, SIGMA, H, N))
  _assert_within_se(est, jax.grad(exact_objective)(k))  # every start is x0
  with pytest.raises(ValueError, match='state'):
    rlax_inf.first_order_gradient(env, linear_policy, k, states, jax.random.PRNGKey(0),
                                  SIGMA, H, N + 1)


def test_num_steps_is_a_shorter_horizon():
  env = LinearQuadratic()
  state = env.reset(jax.random.PRNGKey(0))
  k = jnp.asarray(K0, jnp.float32)
  noise = SIGMA * jax.random.normal(jax.random.PRNGKey(3), (6, 1))

  @jax.jit
  def cut_and_short(p):
    ret = lambda p, e, n: rlax_inf.rollout_return(env, linear_policy, p, state, e,
                                                  num_steps=n)
    return (jax.value_and_grad(ret)(p, noise, jnp.int32(3)),
            jax.value_and_grad(ret)(p, noise[:3], None))

  (cut, g_cut), (full3, g3) = cut_and_short(k)
  np.testing.assert_allclose(cut, full3, rtol=1e-6)
  np.testing.assert_allclose(g_cut, g3, rtol=1e-5)
  est, _ = _seed_estimates(lambda key: rlax_inf.first_order_gradient(
      env, linear_policy, k, state, key, SIGMA, 6, N, num_steps=3))
  _assert_within_se(est, jax.grad(lambda p: exact_objective(p, horizon=3))(k))


def test_bias_check_falls_back_to_zeroth_order_on_a_jump():
  """r = 1[x0 + a > 0] after one step: ∇F = φ((x0 + θ)/σ)/σ, pathwise gives 0."""
  class Threshold(LinearQuadratic):

    def core_step(self, inner, action, key):
      x = inner[:1] + action
      return jnp.concatenate([x, x]), jnp.concatenate([x, x]), (x[0] > 0).astype(
          jnp.float32), jnp.zeros(())

  env = Threshold()
  state = env.reset(jax.random.PRNGKey(0))  # x = 1.0
  theta = jnp.array([-1.2])
  policy = lambda th, obs: th  # an open-loop action
  sigma, n = 0.5, 64
  exact = stats.norm.pdf((1.0 + theta[0]) / sigma) / sigma

  @jax.jit
  def mixed(keys, gamma):  # γ traced: one program for every γ
    return jax.vmap(lambda key: rlax_inf.alpha_order_gradient(
        env, policy, theta, state, key, sigma, 1, n, bias_threshold=gamma))(keys)

  keys = jax.random.split(jax.random.PRNGKey(0), 64)
  out = mixed(keys, jnp.float32(0.1 * exact))
  assert np.all(np.asarray(out.first.grad) == 0.0)
  assert np.mean(out.alpha) < 0.05
  _assert_within_se(np.asarray(out.grad, np.float64), [exact])
  # Without the check, α* ≈ 1 follows the biased pathwise estimate.
  unchecked = mixed(keys, jnp.float32(jnp.inf))
  assert np.all(np.asarray(unchecked.alpha) > 0.99)
  assert abs(float(np.mean(unchecked.grad))) < 0.05 * exact
  # γ = 0 is always zeroth order, exactly.
  out0 = mixed(keys, jnp.float32(0.0))
  assert np.all(np.asarray(out0.alpha) == 0.0)
  np.testing.assert_array_equal(out0.grad, out0.zeroth.grad)


def test_nonfinite_rollouts_are_screened_and_counted():
  """Actions above 1 overflow the state: those samples are counted, not averaged."""
  env = LinearQuadratic(blow_up_above=1.0)
  state = env.reset(jax.random.PRNGKey(0))
  k = jnp.zeros((1, 2), jnp.float32)
  sigma, horizon, n = 1.0, 3, 16
  key = jax.random.PRNGKey(4)
  # The documented noise: ε = jax.random.normal(key, (N, H, action_size)).
  eps = jax.random.normal(key, (n, horizon, 1))
  blown = np.asarray(jnp.any(sigma * eps[..., 0] > 1.0, axis=1))
  assert 0 < blown.sum() < n - 1

  @jax.jit
  def everything(p):
    args = (env, linear_policy, p, state, key, sigma, horizon, n)
    per_sample = jax.vmap(jax.value_and_grad(
        lambda p, e: rlax_inf.rollout_return(env, linear_policy, p, state, sigma * e)),
                          in_axes=(None, 0))(p, eps)
    return (rlax_inf.first_order_gradient(*args), rlax_inf.zeroth_order_gradient(*args),
            rlax_inf.alpha_order_gradient(*args, bias_threshold=jnp.inf), per_sample)

  first, zeroth, mixed, (returns, grads) = everything(k)
  for out in (first, zeroth, mixed):
    assert int(out.num_nonfinite) == blown.sum()
    assert np.all(np.isfinite(np.asarray(out.grad))) and np.isfinite(float(out.value))
  # Exactly the mean over the finite samples.
  keep = ~blown
  assert np.all(~np.isfinite(np.asarray(returns))[blown])
  np.testing.assert_allclose(first.grad, np.mean(np.asarray(grads)[keep], axis=0),
                             rtol=1e-5)
  np.testing.assert_allclose(first.value, np.mean(np.asarray(returns)[keep]), rtol=1e-6)
  # A non-finite first-order sample forces zeroth order.
  assert float(mixed.alpha) == 0.0 and not np.isfinite(float(mixed.bias_gap))


def test_all_samples_nonfinite_gives_zero_and_a_full_count():
  env = LinearQuadratic(blow_up_above=-1e3)  # every action blows up
  state = env.reset(jax.random.PRNGKey(0))
  out = jax.jit(lambda p: rlax_inf.first_order_gradient(
      env, linear_policy, p, state, jax.random.PRNGKey(0), 0.1, 2, 4))(jnp.zeros((1, 2)))
  assert int(out.num_nonfinite) == 4
  np.testing.assert_array_equal(out.grad, 0.0)
  assert float(out.variance) == 0.0


def test_pendulum_pathwise_matches_float64_central_differences():
  """The first-order estimate (N = 2) against central differences of the mean
  return over the same two noise draws, float64, on the pure-JAX pendulum."""
  with jax.enable_x64(True):
    env = envs.make('pendulum', fresh_resets=False)
    state = env.reset(jax.random.PRNGKey(0))
    policy = lambda w, obs: jnp.tanh(obs @ w[:3] + w[3])
    w = jnp.array([0.3, -0.2, 0.1, 0.05])
    key, sigma, horizon = jax.random.PRNGKey(2), 0.2, 15
    reward = lambda s, a: -(s.final_obs[1]**2 + 0.1 * s.final_obs[2]**2)
    out = jax.jit(lambda p: rlax_inf.first_order_gradient(
        env, policy, p, state, key, sigma, horizon, 2, reward_fn=reward))(w)
    assert out.grad.dtype == jnp.float64
    eps = jax.random.normal(key, (2, horizon, 1), jnp.float64)
    mean_return = jax.jit(lambda p: jnp.mean(jax.vmap(
        lambda e: rlax_inf.rollout_return(env, policy, p, state, sigma * e,
                                          reward_fn=reward))(eps)))
    np.testing.assert_allclose(mean_return(w), out.value, rtol=1e-12)
    fd = envs.central_differences(mean_return, w, 1e-6)
    err = np.linalg.norm(np.asarray(out.grad) - fd) / np.linalg.norm(fd)
  assert err < 1e-6, err


@pytest.mark.slow
def test_brax_inverted_pendulum_pathwise_matches_float64_central_differences():
  """Brax generalized (verified by benchmarks/envs_gradients): ~1 min to compile."""
  with jax.enable_x64(True):
    env = envs.make('inverted_pendulum', backend='generalized', fresh_resets=False)
    state = env.reset(jax.random.PRNGKey(0))
    policy = lambda w, obs: obs @ w
    w = jnp.array([[0.1], [-0.4], [0.05], [-0.1]])[:, 0][:, None]
    key, sigma, horizon = jax.random.PRNGKey(2), 0.1, 10
    reward = lambda s, a: -s.final_obs[1]**2
    out = jax.jit(lambda p: rlax_inf.first_order_gradient(
        env, policy, p, state, key, sigma, horizon, 2, reward_fn=reward))(w)
    eps = jax.random.normal(key, (2, horizon, 1), jnp.float64)
    mean_return = jax.jit(lambda p: jnp.mean(jax.vmap(
        lambda e: rlax_inf.rollout_return(env, policy, p, state, sigma * e,
                                          reward_fn=reward))(eps)))
    fd = envs.central_differences(mean_return, w, 1e-6)
  assert np.all(np.isfinite(out.grad)) and np.linalg.norm(fd) > 0
  assert np.linalg.norm(np.asarray(out.grad) - fd) / np.linalg.norm(fd) < 1e-6


_LQ = LinearQuadratic()
_LQ_STATE = _LQ.reset(jax.random.PRNGKey(0))


@pytest.mark.parametrize('kwargs, name', [
    (dict(sigma=0.0), 'sigma'), (dict(sigma=-1.0), 'sigma'),
    (dict(sigma=float('nan')), 'sigma'), (dict(horizon=0), 'horizon'),
    (dict(horizon=2.0), 'horizon'), (dict(num_samples=1), 'num_samples'),
])
def test_bad_input_names_the_argument(kwargs, name):
  args = dict(sigma=0.1, horizon=3, num_samples=4)
  args.update(kwargs)
  for fn in (rlax_inf.zeroth_order_gradient, rlax_inf.first_order_gradient):
    with pytest.raises(ValueError, match=name):
      fn(_LQ, linear_policy, jnp.zeros((1, 2)), _LQ_STATE, jax.random.PRNGKey(0), **args)


def test_bad_mixing_and_noise_arguments_name_themselves():
  for kwargs, name in ((dict(bias_threshold=-1.0), 'bias_threshold'),
                       (dict(bias_threshold=float('nan')), 'bias_threshold'),
                       (dict(bias_threshold=1.0, z=-1.0), 'z')):
    with pytest.raises(ValueError, match=name):
      rlax_inf.alpha_order_gradient(_LQ, linear_policy, jnp.zeros((1, 2)), _LQ_STATE,
                                    jax.random.PRNGKey(0), 0.1, 3, 4, **kwargs)
  with pytest.raises(ValueError, match='noise'):
    rlax_inf.rollout_return(_LQ, linear_policy, jnp.zeros((1, 2)), _LQ_STATE,
                            jnp.zeros((3, 2)))
