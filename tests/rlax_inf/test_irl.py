"""irl: maximum (causal) entropy IRL on exact messages.

Oracles: the expert's own counts and policy (recovery), jax.grad against the
feature-matching formula, brute-force enumeration of trajectories (the
likelihoods and the τ = 0 limit), and the exact partition gradient for the
SNIS estimate.
"""
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rlax_inf

# Static: horizon (3), causal (7).
loss = jax.jit(rlax_inf.maxent_irl_loss, static_argnums=(3, 7))
marginals = jax.jit(rlax_inf.state_action_marginals, static_argnums=(3, 6))
log_policy = jax.jit(rlax_inf.soft_optimal_log_policy, static_argnums=(2, 5))
loss_grad_and_formula = jax.jit(
    lambda *a: (jax.value_and_grad(rlax_inf.maxent_irl_loss)(*a), rlax_inf.maxent_irl_gradient(*a)),
    static_argnums=(3, 7))
# Static: reward_fn, optimizer, num_steps, horizon, causal.
fit = jax.jit(rlax_inf.maxent_irl_fit, static_argnums=(0, 2, 3, 6, 10))

HORIZON = 4


def random_mdp(seed, num_states=4, num_actions=3, deterministic=False, dtype=np.float32):
  rng = np.random.default_rng(seed)
  rewards = rng.normal(size=(num_states, num_actions))
  if deterministic:
    transitions = np.eye(num_states)[rng.integers(0, num_states, (num_states, num_actions))]
  else:
    transitions = rng.dirichlet(np.ones(num_states), size=(num_states, num_actions))
  initial = rng.dirichlet(np.ones(num_states))
  log_prior = np.log(rng.dirichlet(np.ones(num_actions), size=num_states))
  return tuple(jnp.asarray(x, dtype) for x in (rewards, transitions, initial, log_prior))


def policy_counts(log_pi, transitions, initial):
  """Expected counts [T, S, A] of a time-varying policy under the true dynamics."""
  def step(d, lp):
    mu = d[:, None] * jnp.exp(lp)
    return jnp.einsum("sa,sat->t", mu, transitions), mu
  return jax.lax.scan(step, initial, log_pi)[1]


def random_policy_counts(seed, transitions, initial, horizon=HORIZON):
  """Consistent demo_counts: the expected counts of a random time-varying policy."""
  s, a = transitions.shape[:2]
  log_pi = jax.nn.log_softmax(2.0 * jax.random.normal(jax.random.PRNGKey(seed), (horizon, s, a)))
  return policy_counts(log_pi.astype(transitions.dtype), transitions, initial)


# ------------------------------------------------------------------ recovery


@pytest.mark.parametrize("causal", [True, False])
def test_recovers_expert_counts_and_policy(causal):
  # Infinite data from a soft-optimal expert; L-BFGS (no line search: the
  # problem is convex and smooth, and a fixed step compiles in a fraction of
  # the time) from zero rewards. float64, for the 1e-6 match.
  with jax.enable_x64(True):
    r_true, p, init, lp = random_mdp(0, dtype=np.float64)
    tau = 0.7
    demo = marginals(r_true, p, init, HORIZON, tau, lp, not causal)
    out = fit(lambda r: r, jnp.zeros_like(r_true), optax.lbfgs(1.0, linesearch=None), 150,
              p, init, HORIZON, demo, tau, lp, causal)
    learned = out.params
    np.testing.assert_allclose(marginals(learned, p, init, HORIZON, tau, lp, not causal), demo,
                               atol=1e-6, rtol=0)
    np.testing.assert_allclose(log_policy(learned, p, HORIZON, tau, lp, causal),
                               log_policy(r_true, p, HORIZON, tau, lp, causal), atol=1e-6)
    # Here (dense dynamics, stationary reward) the reward is identified up to a
    # constant; the fit starts far from it.
    shift = np.asarray(learned - r_true)
    np.testing.assert_allclose(shift, shift.mean(), atol=1e-5)
    assert np.abs(np.asarray(r_true)).max() > 0.5
    # At the optimum the loss is its minimum: the expert's own (cross-)entropy.
    np.testing.assert_allclose(out.loss[-1], loss(r_true, p, init, HORIZON, demo, tau, lp, causal),
                               rtol=1e-10)
    assert out.loss[0] > out.loss[-1] + 0.1


def test_recovers_linear_reward_and_learned_log_prior():
  # ψᵀf rewards with a learned log-prior over actions (causal likelihood): the
  # pair reproduces the expert's policy and counts; the split between reward
  # and prior is not identified, the policy is.
  with jax.enable_x64(True):
    r_true, p, init, lp_true = random_mdp(1, dtype=np.float64)
    features = jax.random.normal(jax.random.PRNGKey(2), (4, 3, 5), jnp.float64)
    psi_true = jnp.array([1.0, -0.5, 0.3, 0.0, 0.8])
    tau = 0.5
    demo = marginals(rlax_inf.linear_rewards(psi_true, features), p, init, HORIZON, tau,
                     lp_true, False)

    def model(params):
      psi, logits = params
      return rlax_inf.linear_rewards(psi, features), jax.nn.log_softmax(logits)

    params0 = (jnp.zeros(5), jnp.zeros((4, 3)))
    out = fit(model, params0, optax.lbfgs(1.0, linesearch=None), 500, p, init, HORIZON,
              demo, tau, None, True)
    r_hat, lp_hat = model(out.params)
    np.testing.assert_allclose(log_policy(r_hat, p, HORIZON, tau, lp_hat, True),
                               log_policy(rlax_inf.linear_rewards(psi_true, features), p,
                                          HORIZON, tau, lp_true, True), atol=1e-6)
    np.testing.assert_allclose(marginals(r_hat, p, init, HORIZON, tau, lp_hat, False), demo,
                               atol=1e-6, rtol=0)


def test_fit_continues_from_its_state_and_refuses_two_log_priors():
  r, p, init, lp = random_mdp(3)
  demo = marginals(r, p, init, HORIZON, 1.0, None, False)
  adam = optax.adam(0.1)
  table = lambda x: x
  state0 = adam.init(jnp.zeros_like(r))
  whole = fit(table, jnp.zeros_like(r), adam, 20, p, init, HORIZON, demo, 1.0, None, True, state0)
  half = fit(table, jnp.zeros_like(r), adam, 10, p, init, HORIZON, demo, 1.0, None, True, state0)
  rest = fit(table, half.params, adam, 10, p, init, HORIZON, demo, 1.0, None, True,
             half.opt_state)
  np.testing.assert_allclose(rest.params, whole.params, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jnp.concatenate([half.loss, rest.loss]), whole.loss, rtol=1e-5)
  with pytest.raises(ValueError, match="log_prior=None"):
    rlax_inf.maxent_irl_fit(lambda x: (x, lp), r, adam, 1, p, init, HORIZON, demo,
                            log_prior=lp)


# ------------------------------------------------------------------ gradients


def test_analytic_gradient_equals_autodiff():
  # Both likelihoods, with and without a log-prior, on tabular, linear (ψᵀf)
  # and nonlinear rewards; demo_counts consistent with the dynamics (the
  # expected counts of a random time-varying policy). One jitted program.
  r, p, init, lp = random_mdp(4)
  tau = 0.6
  demo = random_policy_counts(5, p, init)
  # Counts no policy can produce (wrong initial distribution).
  bad_demo = random_policy_counts(8, p, jnp.roll(init, 1))
  features = jax.random.normal(jax.random.PRNGKey(6), (4, 3, 2))
  psi = jnp.array([0.4, -1.0])
  net = lambda w: jnp.tanh(features @ w) * 2.0

  @jax.jit
  def gradients(r, demo, bad_demo, lp):
    out = {}
    for causal in (True, False):
      for prior in (None, lp):
        l = lambda x, d=demo: rlax_inf.maxent_irl_loss(x, p, init, HORIZON, d, tau, prior, causal)
        g = lambda x, d=demo: rlax_inf.maxent_irl_gradient(x, p, init, HORIZON, d, tau, prior,
                                                           causal)
        rows = out[causal, prior is None] = {"tabular": (jax.grad(l)(r), g(r))}
        # The chain rule and the counts' consistency do not depend on the
        # prior: once per likelihood.
        if (prior is None) == causal:
          _, vjp = jax.vjp(net, psi)
          rows["linear"] = (jax.grad(lambda w: l(rlax_inf.linear_rewards(w, features)))(psi),
                            jnp.einsum("saf,sa->f", features,
                                       g(rlax_inf.linear_rewards(psi, features))))
          rows["network"] = (jax.grad(lambda w: l(net(w)))(psi), vjp(g(net(psi)))[0])
          rows["inconsistent"] = (jax.grad(lambda x: l(x, bad_demo))(r), g(r, bad_demo))
    return out

  for (causal, no_prior), rows in gradients(r, demo, bad_demo, lp).items():
    for name, (auto, formula) in rows.items():
      msg = f"causal={causal}, log_prior={'None' if no_prior else 'lp'}, {name}"
      assert np.abs(formula).max() > 0.05, msg
      if name == "inconsistent" and causal:
        # The likelihood's gradient and feature matching part, as documented.
        assert np.abs(auto - formula).max() > 1e-2, msg
      else:
        np.testing.assert_allclose(auto, formula, rtol=1e-4, atol=1e-5, err_msg=msg)


# ------------------------------------------------------- against enumeration


def enumerate_trajectories(transitions, initial, horizon, log_prior, log_pi=None):
  """Every (s_1..T, a_1..T) with log p0(τ) = log p(s_1) Π π0 P and log q(τ) under log_pi."""
  num_states, num_actions = log_prior.shape
  out = []
  with np.errstate(divide="ignore"):  # log 0 = −inf: impossible trajectories.
    for ss, aa in itertools.product(itertools.product(range(num_states), repeat=horizon),
                                    itertools.product(range(num_actions), repeat=horizon)):
      lp0 = lq = np.log(initial[ss[0]])
      for t in range(horizon):
        lp0 += log_prior[ss[t], aa[t]]
        if log_pi is not None:
          lq += log_pi[t, ss[t], aa[t]]
        if t < horizon - 1:
          lp0 += np.log(transitions[ss[t], aa[t], ss[t + 1]])
          lq += np.log(transitions[ss[t], aa[t], ss[t + 1]])
      out.append((ss, aa, lp0, lq))
  return out


@pytest.mark.parametrize("causal", [True, False])
def test_loss_is_the_likelihood_of_enumerated_trajectories(causal):
  # Demonstrator: a random time-varying policy q. Its trajectories' expected
  # negative log-likelihood under the model differs from maxent_irl_loss by a
  # term that does not depend on the rewards (checked at two rewards).
  r, p, init, lp = (np.asarray(x, np.float64) for x in random_mdp(9, num_states=3, num_actions=2))
  horizon, tau = 3, 0.8
  log_q = np.asarray(jax.nn.log_softmax(jax.random.normal(jax.random.PRNGKey(1), (3, 3, 2))),
                     np.float64)
  trajs = enumerate_trajectories(p, init, horizon, lp, log_q)
  demo = np.zeros((horizon, 3, 2))
  for ss, aa, _, lq in trajs:
    for t in range(horizon):
      demo[t, ss[t], aa[t]] += np.exp(lq)

  def nll(rewards):
    if causal:
      log_pi = np.asarray(log_policy(jnp.asarray(rewards, jnp.float32), jnp.asarray(p, jnp.float32),
                                     horizon, tau, jnp.asarray(lp, jnp.float32), True))
      return -sum(np.exp(lq) * sum(log_pi[t, ss[t], aa[t]] for t in range(horizon))
                  for ss, aa, _, lq in trajs)
    log_joint = np.array([lp0 + sum(rewards[ss[t], aa[t]] for t in range(horizon)) / tau
                          for ss, aa, lp0, _ in trajs])
    log_z = np.log(np.sum(np.exp(log_joint)))
    return -sum(np.exp(lq) * (lj - log_z) for (_, _, _, lq), lj in zip(trajs, log_joint))

  args = lambda rewards: (jnp.asarray(rewards, jnp.float32), jnp.asarray(p, jnp.float32),
                          jnp.asarray(init, jnp.float32), horizon,
                          jnp.asarray(demo, jnp.float32), tau, jnp.asarray(lp, jnp.float32),
                          causal)
  offsets = [nll(x) - float(loss(*args(x))) for x in (r, -2.0 * r + 1.0)]
  np.testing.assert_allclose(offsets[0], offsets[1], atol=2e-4)


def test_both_likelihoods_agree_on_deterministic_dynamics_from_one_start():
  # Deterministic P and a point-mass start: optimistic = variational messages,
  # and with consistent counts the two losses differ by −Σ D log π0, which
  # does not depend on the rewards (0 for the counting measure).
  r, p, _, lp = random_mdp(10, deterministic=True)
  init = jnp.eye(4, dtype=jnp.float32)[2]
  demo = random_policy_counts(11, p, init)
  offset = -np.sum(demo * lp)
  for x in (r, 3.0 * r):
    for prior, want in ((None, 0.0), (lp, offset)):
      np.testing.assert_allclose(loss(x, p, init, HORIZON, demo, 0.5, prior, True)
                                 - loss(x, p, init, HORIZON, demo, 0.5, prior, False),
                                 want, atol=2e-5)


# ------------------------------------------------------------------ SNIS


def test_snis_partition_gradient_converges_to_the_exact_one():
  # ∇_r log Z = Σ_t μ_t / τ (posterior marginals). Guided cost learning
  # estimates it from N trajectories of a proposal q (here uniform actions) with
  # self-normalised weights w ∝ exp(Σ r/τ) / Π q: Σ_j w̄_j C_j / τ, C_j the
  # counts of trajectory j, which is also jax.grad of the IWAE estimate of log Z.
  r, p, init, _ = random_mdp(12, num_states=3, num_actions=2)
  horizon, tau = 3, 1.0
  exact = jax.jit(jax.grad(rlax_inf.log_partition), static_argnums=(3,))(r, p, init, horizon, tau)
  np.testing.assert_allclose(exact, marginals(r, p, init, horizon, tau, None, True).sum(0) / tau,
                             atol=1e-5)
  log_q = jnp.full((horizon,), -jnp.log(2.0))

  def sample(key):
    k0, ks, ka = jax.random.split(key, 3)
    a = jax.random.randint(ka, (horizon,), 0, 2)
    def step(s, xs):
      k, a_t = xs
      return jax.random.categorical(k, jnp.log(p[s, a_t])), s
    s0 = jax.random.categorical(k0, jnp.log(init))
    _, s = jax.lax.scan(step, s0, (jax.random.split(ks, horizon), a))
    return s, a

  def estimate(key, n, rewards, sizes=None):
    s, a = jax.vmap(sample)(jax.random.split(key, n))
    log_w = jax.vmap(lambda s_, a_: rlax_inf.trajectory_log_weights(
        rewards[s_, a_], log_q, jnp.zeros(horizon), tau))(s, a)
    counts = (jax.nn.one_hot(s, 3)[..., None] * jax.nn.one_hot(a, 2)[..., None, :]).sum(1)
    if sizes is None:
      return jnp.einsum("n,nsa->sa", rlax_inf.snis_weights(log_w), counts) / tau, log_w
    # The estimate from the first m samples, for each m in `sizes`.
    return jnp.stack([jnp.einsum("n,nsa->sa", rlax_inf.snis_weights(log_w[:m]), counts[:m]) / tau
                      for m in sizes])

  sizes, repeats = (8, 64, 512, 2048), 100

  @jax.jit
  def run(key):
    snis, _ = estimate(key, 64, r)
    surrogate = jax.grad(lambda x: rlax_inf.iwae_bound(estimate(key, 64, x)[1]))(r)
    keys = jax.random.split(key, repeats)
    return snis, surrogate, jax.vmap(lambda k: estimate(k, sizes[-1], r, sizes))(keys)

  snis, surrogate, est = run(jax.random.PRNGKey(0))
  np.testing.assert_allclose(snis, surrogate, rtol=1e-5, atol=1e-6)
  rows = []
  for i, n in enumerate(sizes):
    bias = np.abs(np.mean(est[:, i], 0) - exact).max()
    var = np.mean(np.var(est[:, i], 0))
    rows.append((n, bias, var, np.mean((est[:, i] - exact) ** 2)))
  print("N, max |bias|, mean variance, MSE:", rows)
  (_, b_small, v_small, m_small), (_, b_big, v_big, m_big) = rows[0], rows[-1]
  # Variance falls like 1/N (a factor 256 here; allow 100), the MSE with it.
  assert v_big < v_small / 100 and m_big < m_small / 100
  assert all(a[3] > b[3] for a, b in zip(rows, rows[1:]))
  # The bias at N = 2048 is within the noise of 100 repeats, and SNIS's O(1/N)
  # bias at N = 8 is larger than that.
  assert b_big < 4 * np.sqrt(v_big / repeats) + 1e-3
  assert b_small > b_big


# ------------------------------------------------------------------ numerics


@pytest.mark.parametrize("tau", [0.0, 1e-6, 1e-2, 1e6])
@pytest.mark.parametrize("causal", [True, False])
def test_extremes_have_no_nan(tau, causal):
  r, p, init, lp = random_mdp(13)
  lp = lp.at[0, 1].set(-jnp.inf)
  r = r * 1e6
  demo = random_policy_counts(14, p, init)
  # No demonstrated mass on the forbidden action: the loss stays finite at τ > 0.
  pi = jnp.exp(lp)
  demo_prior = policy_counts(jnp.broadcast_to(jnp.log(pi), (HORIZON,) + pi.shape), p, init)
  for prior, counts in ((None, demo), (lp, demo_prior)):
    (value, g), g_formula = loss_grad_and_formula(r, p, init, HORIZON, counts, tau, prior, causal)
    assert not np.isnan(value)
    assert np.all(np.isfinite(g))
    assert not np.any(np.isnan(g_formula))
    if tau > 0:
      assert np.isfinite(value)
    if prior is not None:
      assert g[0, 1] == 0.0 and g_formula[0, 1] == 0.0


def enumerate_hard_limit(r, p, init, horizon, log_prior):
  """(R*, log W*) by enumeration: best return and the prior weight of its trajectories."""
  best, weight = -np.inf, 0.0
  for ss, aa, lp0, _ in enumerate_trajectories(p, init, horizon, log_prior):
    if lp0 == -np.inf:
      continue
    ret = sum(r[ss[t], aa[t]] for t in range(horizon))
    if ret > best:
      best, weight = ret, np.exp(lp0)
    elif ret == best:
      weight += np.exp(lp0)
  return best, np.log(weight)


def test_zero_temperature_is_the_hard_limit():
  # Integer rewards with ties; sparse dynamics (zero-probability transitions).
  rng = np.random.default_rng(15)
  r = rng.integers(-1, 2, size=(3, 2)).astype(np.float64)
  p = np.zeros((3, 2, 3)); p[:, 0, :] = [0.5, 0.5, 0.0]; p[:, 1, :] = [0.0, 0.3, 0.7]
  p[2, 1] = [1.0, 0.0, 0.0]
  init = np.array([0.6, 0.0, 0.4])
  lp = np.log(np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]))
  horizon = 3
  best, log_w = enumerate_hard_limit(r, p, init, horizon, lp)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  # Optimal demonstrations: one optimal trajectory of positive probability.
  ss, aa = next((ss, aa) for ss, aa, lp0, _ in enumerate_trajectories(p, init, horizon, lp)
                if lp0 > -np.inf and sum(r[s, a] for s, a in zip(ss, aa)) == best)
  demo = jnp.asarray(np.eye(3)[list(ss)][:, :, None] * np.eye(2)[list(aa)][:, None, :],
                     jnp.float32)
  for tau in (0.0, jnp.float32(0.0)):  # Python and traced τ.
    np.testing.assert_allclose(
        loss(f32(r), f32(p), f32(init), horizon, demo, tau, f32(lp), False), log_w, rtol=1e-5)
  # Continuity: log Z − R*/τ → log W* (gap between returns ≥ 1, so e^{−1/τ}).
  np.testing.assert_allclose(
      loss(f32(r), f32(p), f32(init), horizon, demo, 0.02, f32(lp), False), log_w, atol=1e-3)
  # Suboptimal demonstrations: +inf; the causal loss of greedy demonstrations is
  # finite at τ = 0 and of others +inf.
  uniform = jnp.full((horizon, 3, 2), 1.0 / 6)
  assert loss(f32(r), f32(p), f32(init), horizon, uniform, 0.0, f32(lp), False) == np.inf
  greedy = marginals(f32(r), f32(p), f32(init), horizon, 0.0, None, False)
  assert np.isfinite(loss(f32(r), f32(p), f32(init), horizon, greedy, 0.0, None, True))
  assert loss(f32(r), f32(p), f32(init), horizon, uniform, 0.0, None, True) == np.inf


# ------------------------------------------------------------------ plumbing


class VariantsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_and_eager_agree(self):
    r, p, init, lp = random_mdp(16)
    demo = random_policy_counts(17, p, init)
    for causal in (True, False):
      got = self.variant(rlax_inf.maxent_irl_loss, static_argnums=(3, 7))(
          r, p, init, HORIZON, demo, 0.5, lp, causal)
      np.testing.assert_allclose(got, loss(r, p, init, HORIZON, demo, 0.5, lp, causal),
                                 rtol=1e-5)


def test_vmap_over_mdps_and_temperatures():
  mdps = [random_mdp(s) for s in range(3)]
  r, p, init, lp = (jnp.stack(x) for x in zip(*mdps))
  demo = jnp.stack([random_policy_counts(20 + k, p[k], init[k]) for k in range(3)])
  taus = jnp.array([0.0, 0.5, 2.0])
  for causal in (True, False):
    fn = lambda *a, c=causal: rlax_inf.maxent_irl_loss(*a[:3], HORIZON, *a[3:], causal=c)
    got = jax.jit(jax.vmap(fn))(r, p, init, demo, taus, lp)
    for k in range(3):
      np.testing.assert_allclose(got[k], loss(r[k], p[k], init[k], HORIZON, demo[k], taus[k],
                                              lp[k], causal), rtol=1e-5)


def test_bad_input_names_the_argument():
  r, p, init, _ = random_mdp(0)
  demo = jnp.full((HORIZON, 4, 3), 1.0 / 12)
  with pytest.raises(AssertionError, match="`demo_counts`"):
    rlax_inf.maxent_irl_loss(r, p, init, HORIZON, demo[:, :3])
  with pytest.raises(AssertionError, match="`demo_counts`"):
    rlax_inf.maxent_irl_loss(r, p, init, HORIZON + 1, demo)
  with pytest.raises(AssertionError, match="`demo_counts`"):
    rlax_inf.maxent_irl_gradient(r, p, init, HORIZON, demo.astype(jnp.int32))
  with pytest.raises(AssertionError, match="`rewards`"):
    rlax_inf.maxent_irl_loss(r[0], p, init, HORIZON, demo)
  with pytest.raises(AssertionError, match="`initial`"):
    rlax_inf.maxent_irl_loss(r, p, init[:2], HORIZON, demo)
  with pytest.raises(AssertionError, match="`log_prior`"):
    rlax_inf.maxent_irl_loss(r, p, init, HORIZON, demo, log_prior=r[:2])
  with pytest.raises(AssertionError, match="`temperature`"):
    rlax_inf.maxent_irl_loss(r, p, init, HORIZON, demo, temperature=jnp.ones(2))
  with pytest.raises(ValueError, match="horizon"):
    rlax_inf.maxent_irl_loss(r, p, init, 0, demo[:0])
  with pytest.raises(AssertionError, match="`features`"):
    rlax_inf.linear_rewards(jnp.ones(3), jnp.ones((4, 3, 2)))
  with pytest.raises(AssertionError, match="`weights`"):
    rlax_inf.linear_rewards(jnp.ones((3, 1)), jnp.ones((4, 3, 3)))
