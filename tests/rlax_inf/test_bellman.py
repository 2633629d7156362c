"""bellman: soft TD errors and returns, against rlax at τ = 0 and by hand."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

import rlax_inf

KEY = jax.random.PRNGKey(42)


def _transition(key, num_actions=4):
  k1, k2, k3 = jax.random.split(key, 3)
  q_tm1 = jax.random.normal(k1, (num_actions,))
  q_t = jax.random.normal(k2, (num_actions,))
  log_pi_t = jax.nn.log_softmax(jax.random.normal(k3, (num_actions,)))
  return q_tm1, jnp.int32(2), jnp.float32(0.5), jnp.float32(0.9), q_t, log_pi_t


class OneStepTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_soft_q_learning_is_rlax_q_learning_at_zero(self):
    q_tm1, a, r, d, q_t, _ = _transition(KEY)
    got = self.variant(rlax_inf.soft_q_learning)(q_tm1, a, r, d, q_t, 0.0)
    np.testing.assert_allclose(got, rlax.q_learning(q_tm1, a, r, d, q_t), rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_soft_q_learning_formula(self):
    q_tm1, a, r, d, q_t, log_pi = _transition(KEY)
    got = self.variant(rlax_inf.soft_q_learning)(q_tm1, a, r, d, q_t, 0.5, log_pi)
    want = r + d * 0.5 * np.log(np.sum(np.exp(log_pi) * np.exp(q_t / 0.5))) - q_tm1[a]
    np.testing.assert_allclose(got, want, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_regularized_expected_sarsa_is_rlax_expected_sarsa_at_zero(self):
    q_tm1, a, r, d, q_t, log_pi = _transition(KEY)
    got = self.variant(rlax_inf.regularized_expected_sarsa)(q_tm1, a, r, d, q_t, log_pi, 0.0)
    want = rlax.expected_sarsa(q_tm1, a, r, d, q_t, jnp.exp(log_pi))
    np.testing.assert_allclose(got, want, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_expected_sarsa_at_boltzmann_equals_soft_q_learning(self):
    q_tm1, a, r, d, q_t, log_prior = _transition(KEY)
    for prior in (None, log_prior):
      pi = rlax_inf.boltzmann_log_policy(q_t, 0.7, prior)
      got = self.variant(rlax_inf.regularized_expected_sarsa)(q_tm1, a, r, d, q_t, pi, 0.7, prior)
      want = rlax_inf.soft_q_learning(q_tm1, a, r, d, q_t, 0.7, prior)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_soft_td_target(self):
    r = jnp.array([1.0, 0.0]); d = jnp.array([0.9, 0.0])
    q = jnp.array([2.0, 3.0]); lp = jnp.array([-1.0, -2.0]); prior = jnp.array([-0.5, -0.5])
    got = self.variant(rlax_inf.soft_td_target)(r, d, q, lp, 0.2, prior)
    np.testing.assert_allclose(got, r + d * (q - 0.2 * (lp - prior)), rtol=1e-6)
    got0 = self.variant(rlax_inf.soft_td_target)(r, d, q, lp, 0.0)
    np.testing.assert_allclose(got0, r + d * q, rtol=1e-6)


def test_targets_are_stopped_by_default():
  q_tm1, a, r, d, q_t, log_pi = _transition(KEY)
  g = jax.grad(lambda q: rlax_inf.soft_q_learning(q, a, r, d, q, 1.0))(q_t)
  np.testing.assert_allclose(g, -jax.nn.one_hot(a, 4))
  g = jax.grad(lambda q: rlax_inf.soft_q_learning(q, a, r, d, q, 1.0,
                                                  stop_target_gradients=False))(q_t)
  want = d * jnp.exp(rlax_inf.boltzmann_log_policy(q_t, 1.0)) - jax.nn.one_hot(a, 4)
  np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6)
  g = jax.grad(lambda q: rlax_inf.regularized_expected_sarsa(q, a, r, d, q, log_pi))(q_t)
  np.testing.assert_allclose(g, -jax.nn.one_hot(a, 4))


def _trajectory(key, t=7, num_actions=3):
  ks = jax.random.split(key, 6)
  r = jax.random.normal(ks[0], (t,))
  d = jnp.where(jax.random.uniform(ks[1], (t,)) < 0.2, 0.0, 0.9)
  v = jax.random.normal(ks[2], (t,))
  reg = jax.random.normal(ks[3], (t,))
  q = jax.random.normal(ks[4], (t, num_actions))
  a = jax.random.randint(ks[5], (t,), 0, num_actions)
  return r, d, v, reg, q, a


class MultiStepTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @pytest.mark.filterwarnings("ignore")
  def test_lambda_returns_match_rlax_without_regulariser(self):
    r, d, v, _, _, _ = _trajectory(KEY)
    for lam in (0.0, 0.5, 1.0):
      got = self.variant(rlax_inf.soft_lambda_returns)(r, d, v, jnp.zeros_like(r), lam)
      np.testing.assert_allclose(got, rlax.lambda_returns(r, d, v, lam), rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_lambda_returns_by_hand(self):
    r, d, v, reg, _, _ = _trajectory(KEY, t=4)
    lam = 0.6
    got = self.variant(rlax_inf.soft_lambda_returns)(r, d, v, reg, lam)
    g = r[3] + d[3] * v[3]
    want = [g]
    for i in (2, 1, 0):
      g = r[i] + d[i] * ((1 - lam) * v[i] + lam * (g - reg[i]))
      want.append(g)
    np.testing.assert_allclose(got, want[::-1], rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_n_step_matches_rlax_and_lambda_one(self):
    r, d, v, reg, _, _ = _trajectory(KEY)
    for n in (1, 3, 7):
      got = self.variant(rlax_inf.soft_n_step_returns, static_argnums=4)(
          r, d, v, jnp.zeros_like(r), n)
      np.testing.assert_allclose(got, rlax.n_step_bootstrapped_returns(r, d, v, n),
                                 rtol=1e-5, atol=1e-6)
    long = self.variant(rlax_inf.soft_n_step_returns, static_argnums=4)(r, d, v, reg, 9)
    np.testing.assert_allclose(long, rlax_inf.soft_lambda_returns(r, d, v, reg, 1.0),
                               rtol=1e-5, atol=1e-6)
    one = self.variant(rlax_inf.soft_n_step_returns, static_argnums=4)(r, d, v, reg, 1)
    np.testing.assert_allclose(one, r + d * v, rtol=1e-6)

  def test_n_step_by_hand(self):
    r, d, v, reg, _, _ = _trajectory(KEY, t=5)
    got = rlax_inf.soft_n_step_returns(r, d, v, reg, 2)
    want = [r[i] + d[i] * (r[i + 1] + d[i + 1] * v[i + 1] - reg[i]) for i in range(4)]
    want.append(r[4] + d[4] * v[4])
    np.testing.assert_allclose(got, want, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_retrace_matches_rlax_at_zero(self):
    r, d, _, _, q_t, a_t = _trajectory(KEY)
    k1, k2, k3 = jax.random.split(KEY, 3)
    q_tm1 = jax.random.normal(k1, q_t.shape)
    a_tm1 = jax.random.randint(k2, a_t.shape, 0, 3)
    log_pi = jax.nn.log_softmax(jax.random.normal(k3, q_t.shape))
    mu = jax.nn.softmax(jax.random.normal(KEY, q_t.shape))
    mu_a = jax.vmap(lambda m, a: m[a])(mu, a_t)
    got = self.variant(rlax_inf.soft_retrace)(
        q_tm1, q_t, a_tm1, a_t, r, d, log_pi, jnp.log(mu_a), 0.0, None, 0.8)
    want = rlax.retrace(q_tm1, q_t, a_tm1, a_t, r, d, jnp.exp(log_pi), mu_a, 0.8, eps=0.0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  def test_retrace_with_zero_traces_is_expected_sarsa(self):
    r, d, _, _, q_t, a_t = _trajectory(KEY)
    log_pi = jax.nn.log_softmax(q_t)
    got = rlax_inf.soft_retrace_targets(q_t, a_t, r, d, log_pi, jnp.zeros_like(r), 0.5,
                                        lambda_=0.0)
    want = r + d * jax.vmap(rlax_inf.regularized_value, (0, 0, None))(q_t, log_pi, 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

  def test_on_policy_retrace_is_unbiased_for_the_soft_q(self):
    # Tabular one-state MDP with self-loops: the soft Q of π is the fixed point,
    # so the mean of on-policy retrace targets from sampled actions equals it.
    num_actions, tau, gamma, t = 3, 0.5, 0.8, 6
    rewards = jnp.array([1.0, 0.0, -0.5])
    log_pi = jnp.log(jnp.array([0.5, 0.3, 0.2]))
    reg_v = rlax_inf.regularized_value(jnp.zeros(3), log_pi, tau)
    # Q = r + γ V,  V = Σ π Q − τ Σ π log π  =>  V = (Σ π r + reg) / (1 − γ).
    v = (jnp.sum(jnp.exp(log_pi) * rewards) + reg_v) / (1 - gamma)
    q = rewards + gamma * v
    keys = jax.random.split(KEY, 20000)

    def one(key):
      a = jax.random.categorical(key, log_pi, shape=(t + 1,))
      q_t = jnp.tile(q, (t, 1))
      return rlax_inf.soft_retrace_targets(
          q_t, a[1:], rewards[a[:-1]], jnp.full(t, gamma), jnp.tile(log_pi, (t, 1)),
          log_pi[a[1:]], tau)[0], a[0]

    targets, a0 = jax.jit(jax.vmap(one))(keys)
    for a in range(num_actions):
      sel = targets[a0 == a]
      se = sel.std() / np.sqrt(sel.size)
      assert abs(sel.mean() - q[a]) < 4 * se + 1e-4


def test_vmap_over_batch():
  q_tm1 = jax.random.normal(KEY, (5, 4)); q_t = q_tm1[::-1]
  a = jnp.arange(5) % 4; r = jnp.linspace(0, 1, 5); d = jnp.full(5, 0.9)
  taus = jnp.linspace(0, 1, 5)
  got = jax.vmap(rlax_inf.soft_q_learning)(q_tm1, a, r, d, q_t, taus)
  want = [rlax_inf.soft_q_learning(q_tm1[i], a[i], r[i], d[i], q_t[i], taus[i]) for i in range(5)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  log_pi = jax.nn.log_softmax(q_t)
  got = jax.vmap(rlax_inf.regularized_expected_sarsa)(q_tm1, a, r, d, q_t, log_pi, taus)
  want = [rlax_inf.regularized_expected_sarsa(q_tm1[i], a[i], r[i], d[i], q_t[i], log_pi[i],
                                              taus[i]) for i in range(5)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  rr, dd, vv, reg, qq, aa = jax.vmap(_trajectory)(jax.random.split(KEY, 3))
  got = jax.vmap(rlax_inf.soft_lambda_returns)(rr, dd, vv, reg)
  want = [rlax_inf.soft_lambda_returns(rr[i], dd[i], vv[i], reg[i]) for i in range(3)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  got = jax.vmap(lambda *x: rlax_inf.soft_n_step_returns(*x, 3))(rr, dd, vv, reg)
  want = [rlax_inf.soft_n_step_returns(rr[i], dd[i], vv[i], reg[i], 3) for i in range(3)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  lpi = jax.nn.log_softmax(qq)
  got = jax.vmap(rlax_inf.soft_retrace_targets)(qq, aa, rr, dd, lpi, reg * 0 - 1.0)
  want = [rlax_inf.soft_retrace_targets(qq[i], aa[i], rr[i], dd[i], lpi[i], reg[i] * 0 - 1.0)
          for i in range(3)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  got = jax.vmap(rlax_inf.soft_td_target)(r, d, q_t[:, 0], log_pi[:, 0], taus)
  np.testing.assert_allclose(got, r + d * (q_t[:, 0] - taus * log_pi[:, 0]), rtol=1e-5)


@pytest.mark.parametrize("tau", [0.0, 1e-6, 1.0, 1e6])
def test_extremes_finite(tau):
  q = jnp.array([1e6, -1e6, 0.0])
  lp = jnp.array([0.0, -jnp.inf, -1.0])
  for prior in (None, lp):
    f = lambda q_tm1, q_t: rlax_inf.soft_q_learning(q_tm1, 0, jnp.float32(1e6), jnp.float32(0.99),
                                                   q_t, tau, prior, False)
    v, g = jax.value_and_grad(f, argnums=(0, 1))(q, q)
    assert np.isfinite(v) and all(np.all(np.isfinite(x)) for x in g)
    log_pi = rlax_inf.boltzmann_log_policy(q, tau, prior)
    f = lambda q_t: rlax_inf.regularized_expected_sarsa(q, 0, jnp.float32(1.0), jnp.float32(0.9),
                                                       q_t, log_pi, tau, prior, False)
    v, g = jax.value_and_grad(f)(q)
    assert np.isfinite(v) and np.all(np.isfinite(g))


def test_bad_input():
  q = jnp.zeros(3)
  with pytest.raises(AssertionError):
    rlax_inf.soft_q_learning(q, 0.5, 0.0, 0.9, q)  # float action
  with pytest.raises(AssertionError):
    rlax_inf.soft_q_learning(q[None], 0, 0.0, 0.9, q)  # wrong rank
  with pytest.raises(AssertionError):
    rlax_inf.soft_lambda_returns(q, q, q, jnp.zeros(4))
  with pytest.raises(ValueError, match="`n`"):
    rlax_inf.soft_n_step_returns(q, q, q, q, 0)


def test_soft_q_learning_errors_name_the_argument():
  q = jnp.zeros(3)
  cases = {
      "a_tm1": lambda: rlax_inf.soft_q_learning(q, 0.5, 0.0, 0.9, q),
      "q_tm1": lambda: rlax_inf.soft_q_learning(q[None], 0, 0.0, 0.9, q),
      "r_t": lambda: rlax_inf.soft_q_learning(q, 0, jnp.zeros(2), 0.9, q),
      "discount_t": lambda: rlax_inf.soft_q_learning(q, 0, 0.0, jnp.zeros(2), q),
      "q_t": lambda: rlax_inf.soft_q_learning(q, 0, 0.0, 0.9, jnp.zeros(3, jnp.int32)),
  }
  for name, call in cases.items():
    with pytest.raises(AssertionError, match=f"`{name}`"):
      call()
  # q_tm1 and q_t of different lengths.
  with pytest.raises(AssertionError, match="`q_tm1` and `q_t`"):
    rlax_inf.soft_q_learning(q, 0, 0.0, 0.9, jnp.zeros(4))
  # A discount outside [0, 1], as a Python or a NumPy number.
  for bad in (1.5, -0.1, np.float32(1.5)):
    with pytest.raises(AssertionError, match="`discount_t`"):
      rlax_inf.soft_q_learning(q, 0, 0.0, bad, q)
    with pytest.raises(AssertionError, match="`discount_t`"):
      rlax_inf.regularized_expected_sarsa(q, 0, 0.0, bad, q, jnp.log(jnp.full(3, 1 / 3)))
  # Traced discounts pass through (checked only when known at trace time).
  assert np.isfinite(jax.jit(rlax_inf.soft_q_learning)(q, 0, 0.0, 0.9, q))


def test_soft_n_step_returns_takes_numpy_inputs():
  # Smallest case, T = 1, n = 1: G = r + γ v (the last regulariser is never paid).
  args = (np.array([1.0]), np.array([0.9]), np.array([2.0]), np.array([0.3]))
  np.testing.assert_allclose(rlax_inf.soft_n_step_returns(*args, 1), [2.8], rtol=1e-6)
  r, d, v, reg = (np.random.default_rng(0).normal(size=5) for _ in range(4))
  d = np.abs(d) / 3
  np.testing.assert_allclose(rlax_inf.soft_n_step_returns(r, d, v, reg, 2),
                             rlax_inf.soft_n_step_returns(*map(jnp.asarray, (r, d, v, reg)), 2),
                             rtol=1e-6)
  np.testing.assert_allclose(rlax_inf.soft_n_step_returns(r, d, v, np.zeros(5), 2),
                             rlax.n_step_bootstrapped_returns(r, d, v, 2), rtol=1e-5)


@pytest.mark.parametrize("stop", [True, False])
def test_soft_retrace_zero_probability_step_matches_rlax(stop):
  # π(a_t) = μ(a_t) = 0 at step 1 (a padded or masked step): the trace is 0
  # there, as rlax's λ min(1, π / (μ + ε)), and no NaN reaches earlier steps.
  pi = jnp.array([[0.5, 0.5], [1.0, 0.0], [0.5, 0.5]])
  mu = jnp.array([0.5, 0.0, 0.5])
  a_t = jnp.array([0, 1, 0])
  q_tm1 = jnp.array([[0.1, -0.4], [0.7, 0.2], [-0.3, 0.5]])
  q_t = jnp.array([[0.6, -0.1], [0.3, 0.9], [0.2, -0.8]])
  a_tm1 = jnp.array([1, 0, 1])
  r_t, discount_t = jnp.array([1.0, -0.5, 0.3]), jnp.full(3, 0.9)
  log_pi, log_mu = jnp.log(pi), jnp.log(mu)
  want = rlax.retrace(q_tm1, q_t, a_tm1, a_t, r_t, discount_t, pi, mu, 0.8)
  got = rlax_inf.soft_retrace(q_tm1, q_t, a_tm1, a_t, r_t, discount_t, log_pi, log_mu,
                              0.0, None, 0.8, stop)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # τ > 0 and the gradients stay finite too.
  f = lambda lp, lm, q: jnp.sum(rlax_inf.soft_retrace(
      q_tm1, q, a_tm1, a_t, r_t, discount_t, lp, lm, 0.5, None, 0.8, stop))
  value, grads = jax.value_and_grad(f, (0, 1, 2))(log_pi, log_mu, q_t)
  assert np.isfinite(value)
  for g in grads:
    assert np.all(np.isfinite(g))


def test_sequence_and_expected_sarsa_errors_name_the_argument():
  t, a = 3, 2
  q, acts, r, d = jnp.zeros((t, a)), jnp.zeros(t, jnp.int32), jnp.zeros(t), jnp.full(t, 0.9)
  log_pi, log_mu = jnp.log(jnp.full((t, a), 0.5)), jnp.log(jnp.full(t, 0.5))
  good = dict(q_t=q, a_t=acts, r_t=r, discount_t=d, log_pi_t=log_pi, log_mu_t=log_mu)

  def retrace_targets(**bad):
    return rlax_inf.soft_retrace_targets(**{**good, **bad})

  cases = {
      # rank, dtype and shape, each on the argument it names
      "q_t": lambda: retrace_targets(q_t=q[0]),
      "a_t": lambda: retrace_targets(a_t=acts.astype(jnp.float32)),
      "r_t": lambda: retrace_targets(r_t=jnp.zeros(t + 1)),
      "discount_t": lambda: retrace_targets(discount_t=np.full(t, 1.5, np.float32)),
      "log_pi_t": lambda: retrace_targets(log_pi_t=log_pi[:, :1]),
      "log_mu_t": lambda: retrace_targets(log_mu_t=log_mu[None]),
      "log_prior_t": lambda: retrace_targets(log_prior_t=log_pi[0]),
      "lambda_": lambda: retrace_targets(lambda_=jnp.ones((t, 1))),
      "temperature": lambda: retrace_targets(temperature=-1.0),
      "q_tm1": lambda: rlax_inf.soft_retrace(q[:, :1], q, acts, acts, r, d, log_pi, log_mu),
      "a_tm1": lambda: rlax_inf.soft_retrace(q, q, acts[:2], acts, r, d, log_pi, log_mu),
  }
  for name, call in cases.items():
    with pytest.raises(AssertionError, match=f"`{name}`"):
      call()
  # q_t with a different number of steps than r_t: both are named.
  with pytest.raises(AssertionError, match="`q_t`.*`r_t`"):
    retrace_targets(q_t=q[:2], log_pi_t=log_pi[:2])

  q1, lp1 = q[0], log_pi[0]
  sarsa = {
      "log_pi_t": lambda: rlax_inf.regularized_expected_sarsa(q1, 0, 0.0, 0.9, q1, lp1[:1]),
      "log_prior_t": lambda: rlax_inf.regularized_expected_sarsa(q1, 0, 0.0, 0.9, q1, lp1, 1.0,
                                                                 log_pi),
      "a_tm1": lambda: rlax_inf.regularized_expected_sarsa(q1, 0.5, 0.0, 0.9, q1, lp1),
      "q_tm1": lambda: rlax_inf.regularized_expected_sarsa(q, 0, 0.0, 0.9, q1, lp1),
      "r_t": lambda: rlax_inf.regularized_expected_sarsa(q1, 0, r, 0.9, q1, lp1),
  }
  for name, call in sarsa.items():
    with pytest.raises(AssertionError, match=f"`{name}`"):
      call()
  # The sequence returns and SAC's target name the argument of a wrong shape or dtype.
  with pytest.raises(AssertionError, match="`regularizer_t`"):
    rlax_inf.soft_lambda_returns(r, d, r, jnp.zeros(t + 1))
  with pytest.raises(AssertionError, match="`v_t`"):
    rlax_inf.soft_n_step_returns(r, d, jnp.zeros(t, jnp.int32), r, 1)
  with pytest.raises(AssertionError, match="`log_pi_t`"):
    rlax_inf.soft_td_target(r, d, r, log_pi[:2, 0])
  # No message names a position ("input 0") instead of the argument.
  with pytest.raises(AssertionError) as info:
    retrace_targets(a_t=acts.astype(jnp.float32))
  assert "input" not in str(info.value)
  # Traced arguments of the right shapes still pass (checks run at trace time only).
  got = jax.jit(rlax_inf.soft_retrace_targets)(q, acts, r, d, log_pi, log_mu)
  assert got.shape == (t,) and np.all(np.isfinite(got))
