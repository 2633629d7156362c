"""messages: exact control as inference, against brute-force enumeration and
the published values of Sutton & Barto's 5x5 gridworld."""
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rlax_inf

# Jitted once per module (static horizons / flags); eager scans retrace on every call.
log_partition = jax.jit(rlax_inf.log_partition, static_argnums=(3,))
marginals = jax.jit(rlax_inf.state_action_marginals, static_argnums=(3, 6))
backward = jax.jit(rlax_inf.backward_messages, static_argnums=(2, 5))
soft_vi = jax.jit(rlax_inf.soft_value_iteration, static_argnums=(5,))
policy_evaluation = jax.jit(rlax_inf.policy_evaluation)

def random_mdp(seed, num_states=3, num_actions=2, sparse=True):
  rng = np.random.default_rng(seed)
  rewards = rng.normal(size=(num_states, num_actions))
  transitions = rng.dirichlet(np.ones(num_states), size=(num_states, num_actions))
  if sparse:  # deterministic rows make zero-probability entries (log 0 = -inf).
    transitions[0, 0] = np.eye(num_states)[1]
  initial = rng.dirichlet(np.ones(num_states))
  log_prior = np.log(rng.dirichlet(np.ones(num_actions), size=num_states))
  return rewards, transitions, initial, log_prior


def brute_force(rewards, transitions, initial, horizon, tau, log_prior):
  """log p(O) and posterior marginals by enumerating every trajectory (float64)."""
  num_states, num_actions = rewards.shape
  lp = np.zeros_like(rewards) if log_prior is None else log_prior
  log_ws, paths = [], []
  for ss in itertools.product(range(num_states), repeat=horizon):
    for aa in itertools.product(range(num_actions), repeat=horizon):
      lw = np.log(initial[ss[0]] + 1e-300)
      for t in range(horizon):
        lw += lp[ss[t], aa[t]] + rewards[ss[t], aa[t]] / tau
        if t < horizon - 1:
          lw += np.log(transitions[ss[t], aa[t], ss[t + 1]] + 1e-300)
      log_ws.append(lw)
      paths.append((ss, aa))
  log_ws = np.array(log_ws)
  m = log_ws.max()
  log_z = m + np.log(np.exp(log_ws - m).sum())
  mu = np.zeros((horizon, num_states, num_actions))
  for lw, (ss, aa) in zip(log_ws, paths):
    for t in range(horizon):
      mu[t, ss[t], aa[t]] += np.exp(lw - log_z)
  return log_z, mu


def brute_force_optimistic_values(rewards, transitions, horizon, tau, log_prior):
  """V[0](s) = τ log Σ_{trajectories from s} p(τ|s) exp(Σ r / τ), by enumeration."""
  num_states = rewards.shape[0]
  out = []
  for s in range(num_states):
    init = np.eye(num_states)[s]
    log_z, _ = brute_force(rewards, transitions, init, horizon, tau, log_prior)
    out.append(tau * log_z)
  return np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("tau", [0.3, 1.0, 5.0])
@pytest.mark.parametrize("use_prior", [False, True])
def test_log_partition_and_marginals_match_enumeration(seed, tau, use_prior):
  r, p, init, lp = random_mdp(seed)
  lp = lp if use_prior else None
  horizon = 3
  log_z, mu = brute_force(r, p, init, horizon, tau, lp)
  args = (jnp.asarray(r, jnp.float32), jnp.asarray(p, jnp.float32),
          jnp.asarray(init, jnp.float32), horizon, tau,
          None if lp is None else jnp.asarray(lp, jnp.float32))
  np.testing.assert_allclose(log_partition(*args), log_z, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(marginals(*args), mu, atol=1e-5)
  v_opt = brute_force_optimistic_values(r, p, horizon, tau, lp)
  _, v = backward(args[0], args[1], horizon, tau, args[5], optimistic=True)
  np.testing.assert_allclose(v[0], v_opt, rtol=1e-4, atol=1e-4)


def test_forward_messages_match_enumeration():
  r, p, init, lp = random_mdp(3)
  tau, horizon = 0.7, 3
  log_alpha = rlax_inf.forward_messages(jnp.asarray(r, jnp.float32), jnp.asarray(p, jnp.float32),
                                        jnp.asarray(init, jnp.float32), horizon, tau,
                                        jnp.asarray(lp, jnp.float32))
  # α_t(s) = p(s_t = s, O_{1:t-1}): enumerate prefixes of length t.
  for t in range(horizon):
    want = np.zeros(r.shape[0])
    for ss in itertools.product(range(r.shape[0]), repeat=t + 1):
      for aa in itertools.product(range(r.shape[1]), repeat=t):
        w = init[ss[0]]
        for k in range(t):
          w *= np.exp(lp[ss[k], aa[k]] + r[ss[k], aa[k]] / tau) * p[ss[k], aa[k], ss[k + 1]]
        want[ss[-1]] += w
    np.testing.assert_allclose(np.exp(log_alpha[t]), want, rtol=1e-4)


def test_variational_marginals_follow_the_soft_optimal_policy():
  r, p, init, lp = random_mdp(4)
  r, p, init = (jnp.asarray(x, jnp.float32) for x in (r, p, init))
  tau, horizon = 0.5, 4
  q, _ = backward(r, p, horizon, tau)
  mu = marginals(r, p, init, horizon, tau, optimistic=False)
  d = np.asarray(init)
  for t in range(horizon):
    pi = np.exp(jax.vmap(lambda x: rlax_inf.boltzmann_log_policy(x, tau))(q[t]))
    np.testing.assert_allclose(mu[t], d[:, None] * pi, atol=1e-6)
    d = np.einsum("sa,sat->t", d[:, None] * pi, p)


def sutton_barto_gridworld():
  """Example 3.5 of Sutton & Barto (2018): 5x5, teleports A -> A', B -> B'."""
  n = 5
  rewards = np.zeros((n * n, 4))
  transitions = np.zeros((n * n, 4, n * n))
  moves = [(-1, 0), (1, 0), (0, -1), (0, 1)]
  for i in range(n):
    for j in range(n):
      s = i * n + j
      for a, (di, dj) in enumerate(moves):
        if (i, j) == (0, 1):
          nxt, rew = (4, 1), 10.0
        elif (i, j) == (0, 3):
          nxt, rew = (2, 3), 5.0
        else:
          ni, nj = i + di, j + dj
          if 0 <= ni < n and 0 <= nj < n:
            nxt, rew = (ni, nj), 0.0
          else:
            nxt, rew = (i, j), -1.0
        rewards[s, a] = rew
        transitions[s, a, nxt[0] * n + nxt[1]] = 1.0
  return jnp.asarray(rewards, jnp.float32), jnp.asarray(transitions, jnp.float32)


# Figures 3.2 and 3.5 of Sutton & Barto (2018), to one decimal.
SB_RANDOM = np.array([[3.3, 8.8, 4.4, 5.3, 1.5], [1.5, 3.0, 2.3, 1.9, 0.5],
                      [0.1, 0.7, 0.7, 0.4, -0.4], [-1.0, -0.4, -0.4, -0.6, -1.2],
                      [-1.9, -1.3, -1.2, -1.4, -2.0]])
SB_OPTIMAL = np.array([[22.0, 24.4, 22.0, 19.4, 17.5], [19.8, 22.0, 19.8, 17.8, 16.0],
                       [17.8, 19.8, 17.8, 16.0, 14.4], [16.0, 17.8, 16.0, 14.4, 13.0],
                       [14.4, 16.0, 14.4, 13.0, 11.7]])


def test_sutton_barto_gridworld_published_values():
  r, p = sutton_barto_gridworld()
  rlax_inf.validate_mdp(r, p, discount=0.9)
  v_random = policy_evaluation(r, p, jnp.full((25, 4), 0.25), 0.9)
  np.testing.assert_allclose(v_random.reshape(5, 5), SB_RANDOM, atol=0.051)
  _, v_star = rlax_inf.value_iteration(r, p, 0.9, num_iterations=500)
  np.testing.assert_allclose(v_star.reshape(5, 5), SB_OPTIMAL, atol=0.051)
  # Soft value iteration tends to value iteration as τ → 0 and is bounded by
  # V* + τ log|A| / (1 − γ) above.
  for tau in (1.0, 0.1, 0.0):
    _, v_soft = soft_vi(r, p, 0.9, tau, num_iterations=500)
    assert np.all(v_soft >= v_star - 1e-3)
    assert np.all(v_soft <= v_star + tau * np.log(4) / 0.1 + 1e-3)


def test_soft_value_iteration_fixed_point_and_policy_evaluation():
  r, p, _, lp = random_mdp(5, num_states=6, num_actions=3, sparse=False)
  r, p, lp = (jnp.asarray(x, jnp.float32) for x in (r, p, lp))
  tau, gamma = 0.4, 0.8
  q, v = soft_vi(r, p, gamma, tau, lp, num_iterations=300)
  np.testing.assert_allclose(q, r + gamma * jnp.einsum("sat,t->sa", p, v), atol=1e-4)
  # V is the regularised value of the Boltzmann policy: evaluate it exactly with
  # the KL folded into the reward.
  log_pi = jax.vmap(lambda x, l: rlax_inf.boltzmann_log_policy(x, tau, l))(q, lp)
  r_reg = r - tau * (log_pi - lp)
  v_pi = policy_evaluation(r_reg, p, jnp.exp(log_pi), gamma)
  np.testing.assert_allclose(v_pi, v, rtol=1e-4, atol=1e-4)


@given(seed=st.integers(0, 1000), tau=st.floats(0.05, 20.0), horizon=st.sampled_from([1, 4]))
def test_properties_marginals_sum_to_one_and_variational_below_optimistic(seed, tau, horizon):
  r, p, init, lp = random_mdp(seed, num_states=4, num_actions=3)
  r, p, init, lp = (jnp.asarray(x, jnp.float32) for x in (r, p, init, lp))
  for prior in (None, lp):
    _, v_var = backward(r, p, horizon, tau, prior, optimistic=False)
    _, v_opt = backward(r, p, horizon, tau, prior, optimistic=True)
    assert np.all(v_var <= v_opt + 1e-4 * (1 + np.abs(v_opt)))
    for optimistic in (True, False):
      mu = marginals(r, p, init, horizon, tau, prior, optimistic)
      np.testing.assert_allclose(mu.sum(axis=(1, 2)), 1.0, rtol=1e-5)
      assert np.all(mu >= 0)


@pytest.mark.parametrize("tau", [0.0, 1e-6, 1e-2, 1e6])
def test_extremes_finite(tau):
  r, p, init, lp = random_mdp(7, num_states=4, num_actions=3)
  lp = lp.copy(); lp[0, 1] = -np.inf
  r = jnp.asarray(r * 1e6, jnp.float32)
  p, init, lp = (jnp.asarray(x, jnp.float32) for x in (p, init, lp))
  for prior in (None, lp):
    for optimistic in (True, False):
      q, v = backward(r, p, 4, tau, prior, optimistic)
      assert np.all(np.isfinite(q)) and np.all(np.isfinite(v))
      mu = marginals(r, p, init, 4, tau, prior, optimistic)
      np.testing.assert_allclose(mu.sum(axis=(1, 2)), 1.0, rtol=1e-4)
    q, v = soft_vi(r, p, 0.9, tau, prior, num_iterations=50)
    assert np.all(np.isfinite(q))
    g = jax.jit(jax.grad(lambda r: backward(r, p, 3, tau, prior, True)[1][0].sum()))(r)
    assert np.all(np.isfinite(g))
  if tau > 0:
    assert np.isfinite(log_partition(r / 1e6, p, init, 3, tau, lp))


def test_hard_limit_at_zero_temperature():
  r, p, init, _ = random_mdp(8)
  r, p, init = (jnp.asarray(x, jnp.float32) for x in (r, p, init))
  q0, v0 = backward(r, p, 3, 0.0, optimistic=False)
  qs, vs = backward(r, p, 3, 1e-4, optimistic=False)
  np.testing.assert_allclose(v0, vs, atol=1e-3)
  # Optimistic at τ = 0: the best reachable next state, not the expectation.
  q0, v0 = backward(r, p, 2, 0.0, optimistic=True)
  best_next = jnp.max(jnp.where(p > 0, jnp.max(r, 1)[None, None], -jnp.inf), -1)
  np.testing.assert_allclose(q0[0], r + best_next, atol=1e-6)


def test_gradient_of_log_partition_is_expected_reward():
  # d log Z / d r(s,a) = Σ_t mu_t(s,a) / τ: an exact identity of the posterior.
  r, p, init, lp = random_mdp(9)
  r, p, init, lp = (jnp.asarray(x, jnp.float32) for x in (r, p, init, lp))
  tau, horizon = 0.8, 4
  g = jax.jit(jax.grad(rlax_inf.log_partition), static_argnums=(3,))(r, p, init, horizon, tau, lp)
  mu = marginals(r, p, init, horizon, tau, lp)
  np.testing.assert_allclose(g, mu.sum(0) / tau, rtol=1e-4, atol=1e-5)


class VariantsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_all_message_functions(self):
    r, p, init, lp = random_mdp(10, num_states=5, num_actions=2)
    r, p, init, lp = (jnp.asarray(x, jnp.float32) for x in (r, p, init, lp))
    pol = jnp.exp(lp)
    fns = {
        "policy_evaluation": (rlax_inf.policy_evaluation, (r, p, pol, 0.9), ()),
        "value_iteration": (rlax_inf.value_iteration, (r, p, 0.9, 50), (3,)),
        "soft_value_iteration": (rlax_inf.soft_value_iteration, (r, p, 0.9, 0.5, lp, 50), (5,)),
        "backward_messages": (rlax_inf.backward_messages, (r, p, 3, 0.5, lp, True), (2, 5)),
        "forward_messages": (rlax_inf.forward_messages, (r, p, init, 3, 0.5, lp), (3,)),
        "log_partition": (rlax_inf.log_partition, (r, p, init, 3, 0.5, lp), (3,)),
        "state_action_marginals": (rlax_inf.state_action_marginals,
                                   (r, p, init, 3, 0.5, lp, False), (3, 6)),
    }
    for name, (fn, args, static) in fns.items():
      got = self.variant(fn, static_argnums=static)(*args)
      want = jax.jit(fn, static_argnums=static)(*args)
      chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5, custom_message=name)


def test_vmap_over_a_batch_of_mdps():
  mdps = [random_mdp(s, num_states=4, num_actions=2) for s in range(3)]
  r, p, init, lp = (jnp.asarray(np.stack(x), jnp.float32) for x in zip(*mdps))
  taus = jnp.array([0.0, 0.5, 2.0])
  batched = jax.vmap(lambda r, p, i, l, t: marginals(r, p, i, 3, t, l))
  mus = batched(r, p, init, lp, taus)
  for k in range(3):
    np.testing.assert_allclose(
        mus[k], marginals(r[k], p[k], init[k], 3, taus[k], lp[k]),
        atol=1e-6)
  qs, vs = jax.vmap(lambda r, p, t: soft_vi(r, p, 0.9, t, None, 20))(
      r, p, taus)
  for k in range(3):
    np.testing.assert_allclose(vs[k], soft_vi(r[k], p[k], 0.9, taus[k],
                                                                    None, 20)[1], rtol=1e-5)
  others = {
      "log_partition": lambda r, p, i, l, t: log_partition(r, p, i, 3, t + 0.1, l),
      "forward_messages": lambda r, p, i, l, t: rlax_inf.forward_messages(r, p, i, 3, t + 0.1, l),
      "backward_messages": lambda r, p, i, l, t: backward(r, p, 3, t, l, True),
      "value_iteration": lambda r, p, i, l, t: rlax_inf.value_iteration(r, p, 0.9, 20),
      "policy_evaluation": lambda r, p, i, l, t: policy_evaluation(r, p, jnp.exp(l), 0.9),
  }
  for name, fn in others.items():
    got = jax.vmap(fn)(r, p, init, lp, taus)
    for k in range(3):
      chex.assert_trees_all_close(jax.tree.map(lambda x: x[k], got),
                                  fn(r[k], p[k], init[k], lp[k], taus[k]),
                                  rtol=1e-5, atol=1e-5, custom_message=name)


def test_bad_input():
  r, p, init, _ = random_mdp(0)
  r, p, init = (jnp.asarray(x, jnp.float32) for x in (r, p, init))
  with pytest.raises(AssertionError, match="`transitions`"):
    rlax_inf.soft_value_iteration(r, p[:, :, :2], 0.9)
  with pytest.raises(AssertionError, match="`rewards`"):
    rlax_inf.backward_messages(r[0], p, 3)
  with pytest.raises(AssertionError, match="`initial`"):
    rlax_inf.log_partition(r, p, init[:2], 3)
  with pytest.raises(ValueError, match="horizon"):
    rlax_inf.backward_messages(r, p, 0)
  bad = np.array(p); bad[1, 0, 0] += 0.1
  with pytest.raises(ValueError, match=r"transitions\[1, 0, :\] sums to 1.1"):
    rlax_inf.validate_mdp(r, bad)
  with pytest.raises(ValueError, match="initial"):
    rlax_inf.validate_mdp(r, p, initial=np.ones(3))
  with pytest.raises(ValueError, match="discount"):
    rlax_inf.validate_mdp(r, p, discount=1.5)
  # A negative entry is named even when the entries sum to 1.
  r4, p4 = np.zeros((4, 2)), np.full((4, 2, 4), 0.25)
  with pytest.raises(ValueError, match=r"initial\[1\] = -0.5 is negative"):
    rlax_inf.validate_mdp(r4, p4, initial=[1.5, -0.5, 0, 0])
  with pytest.raises(ValueError, match=r"initial\[2\] = nan is NaN"):
    rlax_inf.validate_mdp(r4, p4, initial=[0.5, 0.5, np.nan, 0])
