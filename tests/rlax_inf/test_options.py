"""options: sampling, exact inference, bounds and gradient estimators, against enumeration."""
import itertools

from absl.testing import parameterized
import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlax_inf


def _problem(seed, t=4, o=3):
  ks = jax.random.split(jax.random.PRNGKey(seed), 4)
  log_pi_a = jax.nn.log_softmax(jax.random.normal(ks[0], (t, o, 2)))[..., 0]
  log_init = jax.nn.log_softmax(jax.random.normal(ks[1], (o,)))
  cont = jax.nn.sigmoid(jax.random.normal(ks[2], (t, o)))
  log_q = jax.nn.log_softmax(jax.random.normal(ks[3], (t, o)))
  return log_pi_a, log_init, cont, log_q


def brute_force(log_pi_a, log_init, cont, log_q):
  t, o = log_pi_a.shape
  lp, li, c, q = (np.asarray(x, np.float64) for x in (log_pi_a, log_init, cont, log_q))
  total = 0.0
  for seq in itertools.product(range(o), repeat=t):
    p = np.exp(li[seq[0]] + lp[0, seq[0]])
    for k in range(1, t):
      prev, cur = seq[k - 1], seq[k]
      trans = c[k, prev] * (cur == prev) + (1 - c[k, prev]) * np.exp(q[k, cur])
      p *= trans * np.exp(lp[k, cur])
    total += p
  return np.log(total)


class OptionsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_transition_log_probs(self):
    c = jnp.array([0.3, 0.9, 0.0]); log_q = jnp.log(jnp.array([0.5, 0.25, 0.25]))
    got = self.variant(rlax_inf.option_transition_log_probs)(jnp.int32(0), c, log_q)
    np.testing.assert_allclose(jnp.exp(got), [0.3 + 0.7 * 0.5, 0.7 * 0.25, 0.7 * 0.25], rtol=1e-6)
    got = self.variant(rlax_inf.option_transition_log_probs)(jnp.int32(2), c, log_q)
    np.testing.assert_allclose(jnp.exp(got), jnp.exp(log_q), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_likelihood_matches_enumeration(self):
    for seed in range(3):
      args = _problem(seed)
      got = self.variant(rlax_inf.options_log_likelihood)(*args)
      np.testing.assert_allclose(got, brute_force(*args), rtol=1e-5, atol=1e-5)


def test_single_option_reduces_to_flat_policy():
  log_pi_a, _, cont, _ = _problem(5, o=1)
  got = rlax_inf.options_log_likelihood(log_pi_a, jnp.zeros(1), cont, jnp.zeros_like(cont))
  np.testing.assert_allclose(got, log_pi_a.sum(), rtol=1e-6)


def test_extremes_and_gradients_finite():
  log_pi_a, log_init, cont, log_q = _problem(6)
  cont = cont.at[:, 0].set(1.0).at[:, 1].set(0.0)  # always / never continue
  log_q = log_q.at[:, 2].set(-jnp.inf)
  log_init = log_init.at[2].set(-jnp.inf)
  f = jax.jit(jax.value_and_grad(rlax_inf.options_log_likelihood, argnums=(0, 1, 2, 3)))
  v, grads = f(log_pi_a, log_init, cont, log_q)
  np.testing.assert_allclose(v, brute_force(log_pi_a, log_init, cont, log_q), rtol=1e-5)
  for g in grads:
    assert np.all(np.isfinite(g))


def test_vmap():
  batch = [_problem(s) for s in range(3)]
  stacked = [jnp.stack(x) for x in zip(*batch)]
  got = jax.vmap(rlax_inf.options_log_likelihood)(*stacked)
  np.testing.assert_allclose(got, [rlax_inf.options_log_likelihood(*b) for b in batch], rtol=1e-6)
  got = jax.vmap(rlax_inf.option_transition_log_probs)(jnp.arange(3), stacked[2][:, 0],
                                                        stacked[3][:, 0])
  assert got.shape == (3, 3)


def test_bad_input():
  log_pi_a, log_init, cont, log_q = _problem(0)
  with pytest.raises(AssertionError):
    rlax_inf.options_log_likelihood(log_pi_a, log_init[:2], cont, log_q)
  with pytest.raises(AssertionError):
    rlax_inf.option_transition_log_probs(jnp.float32(0.0), cont[0], log_q[0])


# =================================================================== issue 13
# Sampling, exact inference, bounds and their gradient estimators. Oracles:
# enumeration of every option sequence (T = 5, O = 3) in float64 numpy, exact
# expectations over every (option, action) sequence or K-tuple of them, and
# Gauss–Hermite quadrature for Gaussian actions. Monte Carlo checks allow
# 5 standard errors.

T, O, A = 5, 3, 2
TAU = 0.7
NUM_SEEDS = 2048


def _enumerate(log_pi_a, log_init, cont, log_q):
  """All O^T option sequences [N, T] and their joint log-probs [N] (float64)."""
  t, o = log_pi_a.shape
  lp, li, c, q = (np.asarray(x, np.float64) for x in (log_pi_a, log_init, cont, log_q))
  seqs = np.array(list(itertools.product(range(o), repeat=t)))
  with np.errstate(divide="ignore"):
    log_joint = li[seqs[:, 0]] + lp[0, seqs[:, 0]]
    for k in range(1, t):
      prev, cur = seqs[:, k - 1], seqs[:, k]
      trans = c[k, prev] * (cur == prev) + (1 - c[k, prev]) * np.exp(q[k, cur])
      log_joint = log_joint + np.log(trans) + lp[k, cur]
  return seqs, log_joint


def _np_lse(x, axis=None):
  m = np.max(x, axis=axis, keepdims=True)
  m = np.where(np.isfinite(m), m, 0.0)
  with np.errstate(divide="ignore"):
    return np.squeeze(np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m, axis)


def _enumerated_posterior(seqs, log_joint):
  t = seqs.shape[1]
  o = seqs.max() + 1
  log_z = _np_lse(log_joint)
  marg = np.full((t, o), -np.inf)
  pair = np.full((t - 1, o, o), -np.inf)
  for k in range(t):
    for i in range(o):
      marg[k, i] = _np_lse(log_joint[seqs[:, k] == i]) - log_z
      if k < t - 1:
        for j in range(o):
          sel = (seqs[:, k] == i) & (seqs[:, k + 1] == j)
          pair[k, i, j] = _np_lse(log_joint[sel]) - log_z
  return marg, pair


_joint_all = jax.jit(jax.vmap(rlax_inf.options_joint_log_prob, (None,) * 4 + (0,)))
_chain_all = jax.jit(jax.vmap(rlax_inf.option_chain_log_probs, (0, None, None)))
_elbo_all = jax.jit(jax.vmap(rlax_inf.options_elbo, (None,) * 4 + (0, 0)))


def _degenerate(seed, kind):
  """Problems with c in {0, 1} and −inf log-probabilities (still possible actions)."""
  log_pi_a, log_init, cont, log_q = _problem(seed, t=T, o=O)
  if kind == "never":
    cont = jnp.zeros_like(cont)
  elif kind == "always":
    cont = jnp.ones_like(cont)
  elif kind == "mixed":
    cont = cont.at[:, 0].set(1.0).at[:, 1].set(0.0)
  log_pi_a = log_pi_a.at[1, 2].set(-jnp.inf).at[3, 1].set(-jnp.inf)
  log_init = log_init.at[1].set(-jnp.inf)
  log_q = log_q.at[2:, 1].set(-jnp.inf)
  return log_pi_a, log_init, cont, log_q


class ExactInferenceTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_joint_and_posterior_match_enumeration(self):
    for args in [_problem(7, t=T, o=O), _degenerate(8, "mixed")]:
      seqs, log_joint = _enumerate(*args)
      got = _joint_all(*args, jnp.asarray(seqs))
      np.testing.assert_allclose(got, log_joint, rtol=1e-5, atol=1e-5)
      log_z = _np_lse(log_joint)
      np.testing.assert_allclose(rlax_inf.options_log_likelihood(*args), log_z, rtol=1e-5)
      marg, pair = self.variant(rlax_inf.option_posterior)(*args)
      want_marg, want_pair = _enumerated_posterior(seqs, log_joint)
      np.testing.assert_allclose(np.exp(marg), np.exp(want_marg), atol=1e-5)
      np.testing.assert_allclose(np.exp(pair), np.exp(want_pair), atol=1e-5)
      np.testing.assert_allclose(np.exp(marg).sum(1), 1.0, rtol=1e-5)
      np.testing.assert_allclose(np.exp(pair).sum(2), np.exp(marg[:-1]), atol=1e-5)
      np.testing.assert_allclose(np.exp(pair).sum(1), np.exp(marg[1:]), atol=1e-5)

  def test_posterior_chain_is_exact_and_makes_the_bound_tight(self):
    for args in [_problem(9, t=T, o=O), _degenerate(10, "always")]:
      seqs, log_joint = _enumerate(*args)
      log_z = _np_lse(log_joint)
      chain = jax.jit(rlax_inf.option_posterior_chain)(*args)
      log_q = _chain_all(jnp.asarray(seqs), *chain)
      # Every sequence's chain probability is its posterior probability ...
      np.testing.assert_allclose(np.exp(log_q.sum(1)), np.exp(log_joint - log_z), atol=1e-5)
      np.testing.assert_allclose(np.exp(chain[1]).sum(-1), 1.0, rtol=1e-5)
      # ... so the bound equals the log-likelihood for every sample of positive probability.
      log_w = _elbo_all(*args, jnp.asarray(seqs), log_q)
      possible = np.isfinite(log_joint)
      np.testing.assert_allclose(log_w[possible], log_z, rtol=1e-5, atol=1e-5)

  def test_bound_below_likelihood_for_any_reverse_model(self):
    args = _problem(11, t=T, o=O)
    seqs, log_joint = _enumerate(*args)
    log_z = _np_lse(log_joint)
    reverse_models = [(jnp.zeros(O), jnp.zeros((T, O, O)))]  # uniform
    reverse_models.append((args[1], jax.vmap(jax.vmap(
        rlax_inf.option_transition_log_probs, (0, None, None)), (None, 0, 0))(
            jnp.arange(O), args[2], args[3])))  # the prior over options
    for s in range(3):
      k1, k2 = jax.random.split(jax.random.PRNGKey(s))
      reverse_models.append((2 * jax.random.normal(k1, (O,)),
                             2 * jax.random.normal(k2, (T, O, O))))
    for rev in reverse_models:
      log_q = np.asarray(_chain_all(jnp.asarray(seqs), *rev), np.float64).sum(1)
      np.testing.assert_allclose(np.exp(log_q).sum(), 1.0, rtol=1e-5)
      log_w = np.asarray(_elbo_all(*args, jnp.asarray(seqs),
                                   _chain_all(jnp.asarray(seqs), *rev)), np.float64)
      expected = np.sum(np.exp(log_q) * log_w)
      kl = np.sum(np.exp(log_q) * (log_q - (log_joint - log_z)))
      assert expected < log_z - 1e-3
      np.testing.assert_allclose(log_z - expected, kl, rtol=1e-4, atol=1e-5)

  def test_iwae_increases_with_k_towards_the_likelihood(self):
    # Exact expectations over every K-tuple of sequences (T = 3, O = 2).
    args = _problem(12, t=3, o=2)
    seqs, log_joint = _enumerate(*args)
    log_z = _np_lse(log_joint)
    rev = (jnp.array([1.0, -1.0]), jnp.zeros((3, 2, 2)))
    log_q_t = _chain_all(jnp.asarray(seqs), *rev)
    log_q = np.asarray(log_q_t, np.float64).sum(1)
    log_w = np.asarray(_elbo_all(*args, jnp.asarray(seqs), log_q_t), np.float64)
    exact = []
    for k in range(1, 5):
      idx = np.array(list(itertools.product(range(len(seqs)), repeat=k)))
      prob = np.exp(log_q[idx].sum(1))
      exact.append(np.sum(prob * (_np_lse(log_w[idx], axis=1) - np.log(k))))
    np.testing.assert_allclose(exact[0], np.sum(np.exp(log_q) * log_w), rtol=1e-6)
    assert all(b > a + 1e-4 for a, b in zip(exact, exact[1:])), exact
    assert exact[-1] < log_z

  @pytest.mark.slow
  def test_iwae_monte_carlo_at_t5_o3(self):
    # The prior over options as the reverse model; K = 1, 16, 256 over 256 seeds.
    args = _problem(13, t=T, o=O)
    log_z = float(rlax_inf.options_log_likelihood(*args))

    @jax.jit
    def bounds(key):
      out = []
      for k in (1, 16, 256):
        o, log_q = jax.vmap(rlax_inf.sample_options, (0, None, None, None))(
            jax.random.split(jax.random.fold_in(key, k), k), *args[1:])
        out.append(rlax_inf.iwae_bound(
            jax.vmap(rlax_inf.options_elbo, (None,) * 4 + (0, 0))(*args, o, log_q)))
      return jnp.stack(out)

    b = np.asarray(jax.vmap(bounds)(jax.random.split(jax.random.PRNGKey(0), 256)))
    mean, se = b.mean(0), b.std(0) / np.sqrt(b.shape[0])
    assert np.all(np.diff(mean) > -3 * (se[1:] + se[:-1])), (mean, se)
    assert np.all(mean <= log_z + 3 * se), (mean, log_z)
    gaps = log_z - mean
    assert gaps[0] > 0.1 and gaps[-1] < 0.1 * gaps[0], gaps


# ----------------------------------------------------------------- sampling


def _assert_frequencies(samples, probs, num_categories):
  counts = np.bincount(np.asarray(samples), minlength=num_categories)
  n = counts.sum()
  se = np.sqrt(probs * (1 - probs) / n)
  np.testing.assert_array_less(np.abs(counts / n - probs), 5 * se + 1e-3)


class SamplingTest(chex.TestCase):

  def test_sequences_from_the_prior_and_the_posterior(self):
    args = _problem(14, t=3, o=2)
    seqs, log_joint = _enumerate(*args)
    _, log_prior = _enumerate(jnp.zeros_like(args[0]), *args[1:])
    code = jnp.asarray(2 ** np.arange(2, -1, -1))  # sequence -> index in `seqs`
    keys = jax.random.split(jax.random.PRNGKey(0), 20000)
    o, log_p = jax.jit(jax.vmap(rlax_inf.sample_options, (0, None, None, None)))(keys, *args[1:])
    _assert_frequencies(o @ code, np.exp(log_prior), 8)
    np.testing.assert_allclose(log_p.sum(1), log_prior[np.asarray(o @ code)], rtol=1e-5)
    chain = rlax_inf.option_posterior_chain(*args)
    o, log_q = jax.jit(jax.vmap(rlax_inf.sample_option_chain, (0, None, None)))(keys, *chain)
    post = np.exp(log_joint - _np_lse(log_joint))
    _assert_frequencies(o @ code, post, 8)
    np.testing.assert_allclose(log_q.sum(1), np.log(post[np.asarray(o @ code)]), rtol=1e-4)

  def test_one_step_discrete_and_continuous_actions(self):
    c = jnp.array([0.3, 0.9, 0.0]); log_q = jnp.log(jnp.array([0.5, 0.25, 0.25]))
    n = 8000
    keys = jax.random.split(jax.random.PRNGKey(1), n)
    logits = jnp.array([[2.0, 0.0], [0.0, 0.0], [-1.0, 1.0]])
    policies = {
        "categorical": distrax.Categorical(logits=logits),
        "gaussian": distrax.MultivariateNormalDiag(
            jnp.array([[-1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]), jnp.full((3, 2), 0.5)),
        "tanh": rlax_inf.TanhGaussian(jnp.array([[-1.0], [0.0], [1.0]]), jnp.full((3, 1), 0.5)),
    }
    for name, policy in policies.items():

      @jax.jit
      def run(keys, first, policy=policy, name=name):
        step = jax.vmap(lambda k: rlax_inf.sample_option_and_action(
            k, jnp.int32(1), c, log_q, policy, first))(keys)
        if name == "tanh":  # the taken action under every option, from a = tanh(u)
          u = jnp.broadcast_to(jnp.arctanh(step.action[:, None]), (n, 3, 1))
          direct = jax.vmap(policy.log_prob_from_pre_tanh)(u)
        else:
          a = step.action[:, None] if name == "categorical" else step.action[:, None, :]
          direct = jax.vmap(policy.log_prob)(jnp.broadcast_to(a, (n, 3) + a.shape[2:]))
        return step, direct

      for first in (False, True):
        step, direct = jax.device_get(run(keys, jnp.asarray(first)))
        want = np.log(np.where(np.arange(3) == 1, 0.0 if first else 0.9, 0.0)
                      + (1.0 if first else 0.1) * np.array([0.5, 0.25, 0.25]))
        np.testing.assert_allclose(step.log_option_probs[0], want, rtol=1e-6)
        _assert_frequencies(step.option, np.exp(want), 3)
        tol = 1e-3 if name == "tanh" else 1e-5
        np.testing.assert_allclose(step.log_action_probs, direct, rtol=tol, atol=tol)
        if name == "tanh":
          assert np.all(np.abs(step.action) < 1)
        for o in range(3):
          sel = np.asarray(step.option) == o
          if name == "categorical":
            _assert_frequencies(step.action[sel], np.asarray(jax.nn.softmax(logits[o])), 2)
          elif name == "gaussian":
            np.testing.assert_allclose(step.action[sel].mean(0), np.asarray(policy.loc[o]),
                                       atol=5 * 0.5 / np.sqrt(sel.sum()))
    # Reparameterised: the action moves with its own option's mean only.
    loc = jnp.zeros((3, 2))
    grad = jax.jacobian(lambda m: rlax_inf.sample_option_and_action(
        jax.random.PRNGKey(2), jnp.int32(1), c, log_q,
        distrax.MultivariateNormalDiag(m, jnp.ones((3, 2)))).action)(loc)
    o = int(rlax_inf.sample_option_and_action(
        jax.random.PRNGKey(2), jnp.int32(1), c, log_q,
        distrax.MultivariateNormalDiag(loc, jnp.ones((3, 2)))).option)
    np.testing.assert_allclose(grad[:, o], jnp.eye(2))
    assert np.all(np.delete(np.asarray(grad), o, axis=1) == 0)


# ------------------------------------------- the augmented RL bound (discrete)


def _rl_problem(seed, t, o, a):
  ks = jax.random.split(jax.random.PRNGKey(seed), 8)
  theta = dict(select=jax.random.normal(ks[0], (t, o)), cont=jax.random.normal(ks[1], (t, o)),
               intra=jax.random.normal(ks[2], (t, o, a)))
  phi = dict(init=jax.random.normal(ks[3], (o,)), trans=jax.random.normal(ks[4], (t, o, o)),
             act=jax.random.normal(ks[5], (t, a, o)))
  log_prior = jax.nn.log_softmax(jax.random.normal(ks[6], (t, a)))
  rewards = jax.random.normal(ks[7], (t, a))
  return theta, phi, log_prior, rewards


def _policy(theta):
  """(log p(o_1), c, log q, log π_o(a|s_t) [T, O, A]); the first option comes from q(·|s_1)."""
  log_q = jax.nn.log_softmax(theta["select"])
  return log_q[0], jax.nn.sigmoid(theta["cont"]), log_q, jax.nn.log_softmax(theta["intra"])


def _reverse(phi, a):
  """Logits of a reverse model q̃(o_t | o_{t−1}, a_t) that looks at the actions."""
  act = phi["act"][jnp.arange(a.shape[0]), a]  # [T, O]
  return phi["init"] + act[0], phi["trans"] + act[:, None, :]


def _trajectory_terms(theta, phi, log_prior, rewards, o, a, tau, reverse):
  """(b_t, log π(o_t|·), log π_{o_t}(a_t)) of one trajectory, each [T]."""
  log_init, cont, log_q, log_pi = _policy(theta)
  steps = jnp.arange(o.shape[0])
  log_option_probs = jnp.concatenate([log_init[None], jax.vmap(
      rlax_inf.option_transition_log_probs)(o[:-1], cont[1:], log_q[1:])])
  kl_all = jax.vmap(jax.vmap(rlax_inf.kl, (0, None)))(log_pi, log_prior)
  log_pi_a = log_pi[steps, :, a]
  if reverse == "learned":
    log_q_o = rlax_inf.option_chain_log_probs(o, *_reverse(phi, a))
  elif reverse == "exact":
    log_q_o = rlax_inf.option_chain_log_probs(
        o, *rlax_inf.option_posterior_chain(log_pi_a, log_init, cont, log_q))
  else:
    log_q_o = None
  b = rlax_inf.options_augmented_rewards(
      rewards[steps, a], kl_all[steps, o], o, log_option_probs, log_q_o, tau)
  return b, log_option_probs[steps, o], log_pi[steps, o, a]


def _terms_all(theta, phi, log_prior, rewards, os, as_, tau, reverse):
  return jax.vmap(lambda o, a: _trajectory_terms(
      theta, phi, log_prior, rewards, o, a, tau, reverse))(os, as_)


def _all_trajectories(t, o, a):
  pairs = list(itertools.product(itertools.product(range(o), repeat=t),
                                 itertools.product(range(a), repeat=t)))
  return jnp.asarray([p[0] for p in pairs]), jnp.asarray([p[1] for p in pairs])


def _exact_bound(theta, phi, log_prior, rewards, os, as_, tau, reverse):
  b, lpo, lpa = _terms_all(theta, phi, log_prior, rewards, os, as_, tau, reverse)
  return jnp.sum(jnp.exp(jnp.sum(lpo + lpa, 1)) * jnp.sum(b, 1))


def _exact_objective(theta, log_prior, rewards, t, a, tau):
  """J = E Σ r − τ E [log p(a_{1:T}) − Σ log π0(a_t)], the options summed out; and E H(o|a)."""
  log_init, cont, log_q, log_pi = _policy(theta)
  actions = jnp.asarray(list(itertools.product(range(a), repeat=t)))
  steps = jnp.arange(t)

  def per_actions(acts):
    log_pi_a = log_pi[steps, :, acts]
    log_lik = rlax_inf.options_log_likelihood(log_pi_a, log_init, cont, log_q)
    ret = jnp.sum(rewards[steps, acts]) - tau * (log_lik - jnp.sum(log_prior[steps, acts]))
    seqs = jnp.asarray(list(itertools.product(range(log_init.shape[0]), repeat=t)))
    log_post = _joint_all(log_pi_a, log_init, cont, log_q, seqs) - log_lik
    return log_lik, ret, -jnp.sum(jnp.exp(log_post) * log_post)

  log_lik, ret, ent = jax.vmap(per_actions)(actions)
  p = jnp.exp(log_lik)
  return jnp.sum(p * ret), jnp.sum(p * ent)


class AugmentedBoundTest(chex.TestCase):

  def test_bound_against_the_exact_objective(self):
    theta, phi, log_prior, rewards = _rl_problem(0, T, O, A)
    os, as_ = _all_trajectories(T, O, A)

    @jax.jit
    def everything(tau):
      bounds = [_exact_bound(theta, phi, log_prior, rewards, os, as_, tau, rev)
                for rev in ("learned", "exact", None)]
      return bounds, _exact_objective(theta, log_prior, rewards, T, A, tau)

    for tau in (TAU, 0.0):
      (learned, exact, joint_entropy), (j, ent) = everything(tau)
      np.testing.assert_allclose(exact, j, rtol=1e-4, atol=1e-4)
      np.testing.assert_allclose(joint_entropy, j + tau * ent, rtol=1e-4, atol=1e-4)
      if tau > 0:
        assert learned < j - 1e-2 and ent > 1e-2
      else:
        np.testing.assert_allclose(learned, j, rtol=1e-5)

  def test_per_step_terms(self):
    log_o = jnp.log(jnp.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]))
    r, kl, o = jnp.array([1.0, 0.0, -1.0]), jnp.array([0.1, 0.2, 0.3]), jnp.array([0, 1, 1])
    log_q = jnp.log(jnp.array([0.4, 0.3, 1.0]))
    got = rlax_inf.options_augmented_rewards(r, kl, o, log_o, log_q, 2.0)
    want = r - 2.0 * (kl + log_o[jnp.arange(3), o] - log_q)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    got = rlax_inf.options_augmented_rewards(r, kl, o, log_o, None, 2.0)
    ent = -jnp.sum(jnp.exp(log_o) * log_o, 1)
    np.testing.assert_allclose(got, r - 2.0 * (kl - ent), rtol=1e-6)
    for lq in (log_q, None):
      np.testing.assert_allclose(rlax_inf.options_augmented_rewards(r, kl, o, log_o, lq, 0.0), r)


# ----------------------------------------------------------- gradients


def _assert_unbiased(mean, variance, exact, num_seeds):
  for m, v, e in zip(jax.tree_util.tree_leaves(mean), jax.tree_util.tree_leaves(variance),
                     jax.tree_util.tree_leaves(exact)):
    m, v, e = (np.asarray(x, np.float64) for x in (m, v, e))
    se = np.sqrt(v / num_seeds)
    assert np.all(np.abs(m - e) <= 5 * se + 1e-5), (m, e, se)


def _surrogate(params, log_prior, rewards, os, as_, tau, reverse, action_score=True):
  b, lpo, lpa = _terms_all(params["theta"], params["phi"], log_prior, rewards, os, as_, tau,
                           reverse)
  return rlax_inf.options_bound_surrogate(b, lpo, lpa if action_score else None)


def _sample_trajectory(theta, key):
  """One (o_{1:T}, a_{1:T}) from the policy over options (categorical actions)."""
  _, cont, log_q, log_pi = _policy(theta)
  t = cont.shape[0]

  def step(o_tm1, xs):
    k, c, lq, lp, first = xs
    s = rlax_inf.sample_option_and_action(k, o_tm1, c, lq, distrax.Categorical(logits=lp), first)
    return s.option, (s.option, s.action)

  _, (o, a) = jax.lax.scan(step, jnp.int32(0), (jax.random.split(key, t), cont, log_q, log_pi,
                                                 jnp.arange(t) == 0))
  return o, a


class BoundGradientTest(chex.TestCase):

  @parameterized.parameters("learned", None)
  def test_surrogate_is_exactly_unbiased_by_enumeration(self, reverse):
    # E over every pair (K = 2, leave-one-out baseline) of the 16 trajectories of T = O = A = 2.
    theta, phi, log_prior, rewards = _rl_problem(1, 2, 2, 2)
    params = dict(theta=theta, phi=phi)
    os, as_ = _all_trajectories(2, 2, 2)
    n = os.shape[0]
    i, j = np.divmod(np.arange(n * n), n)

    @jax.jit
    def expected_and_exact(params):
      exact = jax.grad(lambda p: _exact_bound(p["theta"], p["phi"], log_prior, rewards,
                                              os, as_, TAU, reverse))(params)
      _, lpo, lpa = _terms_all(theta, phi, log_prior, rewards, os, as_, TAU, reverse)
      log_p = jnp.sum(lpo + lpa, 1)
      grads = jax.vmap(lambda o2, a2: jax.grad(_surrogate)(
          params, log_prior, rewards, o2, a2, TAU, reverse))(
              jnp.stack([os[i], os[j]], 1), jnp.stack([as_[i], as_[j]], 1))
      w = jnp.exp(log_p[i] + log_p[j])
      return jax.tree_util.tree_map(lambda g: jnp.tensordot(w, g, 1), grads), exact

    expected, exact = expected_and_exact(params)
    chex.assert_trees_all_close(expected, exact, atol=2e-5)
    assert np.abs(exact["theta"]["cont"]).max() > 1e-2  # every family of parameters moves
    if reverse:
      assert np.abs(exact["phi"]["trans"]).max() > 1e-2

  @pytest.mark.slow
  def test_surrogate_mean_over_seeds_matches_exact_gradient(self):
    theta, phi, log_prior, rewards = _rl_problem(2, T, O, A)
    params = dict(theta=theta, phi=phi)
    os, as_ = _all_trajectories(T, O, A)
    exact = jax.jit(jax.grad(lambda p: _exact_bound(
        p["theta"], p["phi"], log_prior, rewards, os, as_, TAU, "learned")))(params)

    def grad_fn(p, key):
      o, a = jax.vmap(_sample_trajectory, (None, 0))(p["theta"], jax.random.split(key, 4))
      return jax.grad(_surrogate)(p, log_prior, rewards, o, a, TAU, "learned")

    keys = jax.random.split(jax.random.PRNGKey(3), NUM_SEEDS)
    mean, var = jax.jit(rlax_inf.gradient_variance, static_argnums=0)(grad_fn, params, keys)
    _assert_unbiased(mean, var, exact, NUM_SEEDS)

  def test_reparameterised_gaussian_actions(self):
    # T = 3, O = 2, a_t ~ N(μ_{o_t}, σ_{o_t}) reparameterised, r_t = −(a_t − g_t)²,
    # π0 = N(0, 1), reverse model logits W[o_{t−1}, o_t] + v[o_t] a_t. Exact bound by
    # enumerating the options and Gauss–Hermite quadrature over each action.
    t, o = 3, 2
    ks = jax.random.split(jax.random.PRNGKey(4), 7)
    params = dict(select=jax.random.normal(ks[0], (t, o)), cont=jax.random.normal(ks[1], (t, o)),
                  loc=jax.random.normal(ks[2], (t, o)),
                  log_scale=0.3 * jax.random.normal(ks[3], (t, o)),
                  w0=jax.random.normal(ks[4], (o,)), w=jax.random.normal(ks[5], (t, o, o)),
                  v=jax.random.normal(ks[6], (t, o)))
    goal = jnp.array([0.5, -0.5, 1.0])
    nodes, weights = np.polynomial.hermite.hermgauss(40)
    nodes, weights = jnp.asarray(nodes), jnp.asarray(weights / np.sqrt(np.pi))

    def pieces(p):
      log_q = jax.nn.log_softmax(p["select"])
      cont = jax.nn.sigmoid(p["cont"])
      scale = jnp.exp(p["log_scale"])
      kl = rlax_inf.kl_divergence(distrax.Normal(p["loc"], scale), distrax.Normal(0.0, 1.0))
      return log_q, cont, scale, kl

    def rev_logits(p, o_tm1, step, a):  # logits over o_t (o_tm1 < 0: first step)
      base = jnp.where(o_tm1 < 0, p["w0"], p["w"][step, jnp.maximum(o_tm1, 0)])
      return base + p["v"][step] * a

    def terms(p, key):
      log_q, cont, scale, kl = pieces(p)

      def step(o_tm1, xs):
        k, s = xs
        out = rlax_inf.sample_option_and_action(
            k, jnp.maximum(o_tm1, 0), cont[s], log_q[s],
            distrax.Normal(p["loc"][s], scale[s]), s == 0)
        lq = jax.nn.log_softmax(rev_logits(p, o_tm1, s, out.action))[out.option]
        return out.option, (out.option, out.action, out.log_option_probs, lq)

      _, (os, a, log_o, lq) = jax.lax.scan(step, jnp.int32(-1), (jax.random.split(key, t),
                                                                  jnp.arange(t)))
      b = rlax_inf.options_augmented_rewards(
          -jnp.square(a - goal), kl[jnp.arange(t), os], os, log_o, lq, TAU)
      return b, log_o[jnp.arange(t), os]

    def exact_bound(p):
      log_q, cont, scale, kl = pieces(p)
      seqs = jnp.asarray(list(itertools.product(range(o), repeat=t)))
      steps = jnp.arange(t)

      def value(seq):
        prev = jnp.concatenate([jnp.array([-1]), seq[:-1]])
        log_o = jnp.concatenate([log_q[0, seq[:1]], jax.vmap(
            rlax_inf.option_transition_log_probs)(seq[:-1], cont[1:], log_q[1:])[
                jnp.arange(t - 1), seq[1:]]])
        loc, sc = p["loc"][steps, seq], scale[steps, seq]
        a = loc[:, None] + np.sqrt(2.0) * sc[:, None] * nodes  # [T, nodes]
        log_rev = jax.vmap(jax.vmap(lambda pr, st, x, cur: jax.nn.log_softmax(
            rev_logits(p, pr, st, x))[cur], (None, None, 0, None)))(prev, steps, a, seq)
        e_r = -(jnp.square(loc - goal) + jnp.square(sc))
        per_step = e_r - TAU * (kl[steps, seq] + log_o - log_rev @ weights)
        return jnp.sum(log_o), jnp.sum(per_step)

      log_p, values_ = jax.vmap(value)(seqs)
      return jnp.sum(jnp.exp(log_p) * values_)

    def grad_fn(p, key):
      def surrogate(p):
        b, lpo = jax.vmap(terms, (None, 0))(p, jax.random.split(key, 4))
        return rlax_inf.options_bound_surrogate(b, lpo)  # no action score: reparameterised
      return jax.value_and_grad(surrogate)(p)

    exact_value, exact = jax.jit(jax.value_and_grad(exact_bound))(params)
    keys = jax.random.split(jax.random.PRNGKey(6), NUM_SEEDS)
    (value, mean), (value_var, var) = jax.jit(rlax_inf.gradient_variance, static_argnums=0)(
        grad_fn, params, keys)
    # The Monte Carlo value of the bound agrees with the quadrature ...
    np.testing.assert_allclose(value, exact_value, atol=5 * np.sqrt(value_var / NUM_SEEDS))
    # ... and so does its gradient, for every family of parameters.
    _assert_unbiased(mean, var, exact, NUM_SEEDS)
    assert np.abs(exact["loc"]).max() > 1e-2 and np.abs(exact["v"]).max() > 1e-2


def _iwae_params(seed, t, o):
  log_pi_a, log_init, cont, log_q = _problem(seed, t=t, o=o)
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed + 100))
  return dict(log_pi_a=log_pi_a, log_init=log_init, cont=jnp.log(cont / (1 - cont)),
              log_q=log_q, rev_init=jax.random.normal(k1, (o,)),
              rev_trans=jax.random.normal(k2, (t, o, o)))


def _iwae_log_w(p, seqs):
  model = (p["log_pi_a"], jax.nn.log_softmax(p["log_init"]),
           jax.nn.sigmoid(p["cont"]), jax.nn.log_softmax(p["log_q"]))
  log_q_t = jax.vmap(rlax_inf.option_chain_log_probs, (0, None, None))(
      seqs, p["rev_init"], p["rev_trans"])
  return jax.vmap(rlax_inf.options_elbo, (None,) * 4 + (0, 0))(*model, seqs, log_q_t), \
      jnp.sum(log_q_t, 1)


def _iwae_surrogate(p, seqs):
  return rlax_inf.options_iwae_surrogate(*_iwae_log_w(p, seqs))


class IwaeGradientTest(chex.TestCase):

  def test_vimco_is_exactly_unbiased_by_enumeration(self):
    params = _iwae_params(20, 2, 2)
    seqs = jnp.asarray(list(itertools.product(range(2), repeat=2)))
    for k in (1, 3):  # K = 1: plain REINFORCE; K = 2 in the Monte Carlo test below
      idx = jnp.asarray(list(itertools.product(range(4), repeat=k)))

      @jax.jit
      def expected_and_exact(p, idx=idx, k=k):
        def exact_bound(p):
          log_w, log_q = _iwae_log_w(p, seqs)
          return jnp.sum(jnp.exp(log_q[idx].sum(1))
                         * (jax.nn.logsumexp(log_w[idx], axis=1) - jnp.log(k)))
        _, log_q = _iwae_log_w(p, seqs)
        grads = jax.vmap(jax.grad(_iwae_surrogate), (None, 0))(p, seqs[idx])
        w = jnp.exp(log_q[idx].sum(1))
        return (jax.tree_util.tree_map(lambda g: jnp.tensordot(w, g, 1), grads),
                jax.grad(exact_bound)(p))

      expected, exact = expected_and_exact(params)
      chex.assert_trees_all_close(expected, exact, atol=2e-5)
      assert np.abs(exact["rev_trans"]).max() > 1e-3

  @pytest.mark.slow
  def test_vimco_mean_over_seeds_matches_exact_gradient(self):
    params = _iwae_params(21, T, O)
    seqs = jnp.asarray(list(itertools.product(range(O), repeat=T)))

    def exact_bound(p):  # K = 2: every pair of the 243 sequences
      log_w, log_q = _iwae_log_w(p, seqs)
      pair = jnp.logaddexp(log_w[:, None], log_w[None, :]) - jnp.log(2.0)
      return jnp.sum(jnp.exp(log_q[:, None] + log_q[None, :]) * pair)

    def grad_fn(p, key):
      o, _ = jax.vmap(rlax_inf.sample_option_chain, (0, None, None))(
          jax.random.split(key, 2), p["rev_init"], p["rev_trans"])
      return jax.grad(_iwae_surrogate)(p, o)

    exact = jax.jit(jax.grad(exact_bound))(params)
    keys = jax.random.split(jax.random.PRNGKey(7), NUM_SEEDS)
    mean, var = jax.jit(rlax_inf.gradient_variance, static_argnums=0)(grad_fn, params, keys)
    _assert_unbiased(mean, var, exact, NUM_SEEDS)


# --------------------------------------------------------- degenerate inputs


def _all_finite(tree):
  return all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(tree))


@jax.jit
def _degenerate_run(args, w_marg, w_pair):
  """Values, gradients and posterior samples of every exact-inference function."""

  def posterior_sum(*a):
    marg, pair = rlax_inf.option_posterior(*a)
    return jnp.sum(jnp.exp(marg) * w_marg) + jnp.sum(jnp.exp(pair) * w_pair)

  def chain_sum(*a):
    init, trans = rlax_inf.option_posterior_chain(*a)
    return jnp.sum(jnp.exp(init) * w_marg[0]) + jnp.sum(jnp.exp(trans[1:]) * w_pair)

  def elbo_of(*a):  # a sample of the exact posterior
    o, log_q = rlax_inf.sample_option_chain(
        jax.random.PRNGKey(2), *rlax_inf.option_posterior_chain(*a))
    return rlax_inf.options_elbo(*a, o, log_q)

  impossible = jnp.array([1, 1, 1, 1, 1])  # log p(o_1 = 1) = −inf
  joint = lambda *a: rlax_inf.options_joint_log_prob(*a, impossible)
  grads = {name: jax.grad(f, argnums=(0, 1, 2, 3))(*args) for name, f in [
      ("lik", rlax_inf.options_log_likelihood), ("post", posterior_sum),
      ("chain", chain_sum), ("elbo", elbo_of), ("joint", joint)]}
  samples, _ = jax.vmap(rlax_inf.sample_option_chain, (0, None, None))(
      jax.random.split(jax.random.PRNGKey(3), 500), *rlax_inf.option_posterior_chain(*args))
  return (rlax_inf.options_log_likelihood(*args), rlax_inf.option_posterior(*args),
          elbo_of(*args), joint(*args), grads, samples)


@pytest.mark.parametrize("kind", ["never", "always", "mixed"])
def test_degenerate_continuation_and_minus_inf(kind):
  args = _degenerate(30, kind)
  seqs, log_joint = _enumerate(*args)
  log_z = _np_lse(log_joint)
  possible = np.isfinite(log_joint)
  w_marg = jax.random.normal(jax.random.PRNGKey(0), (T, O))
  w_pair = jax.random.normal(jax.random.PRNGKey(1), (T - 1, O, O))
  lik, (marg, pair), elbo, joint, grads, samples = _degenerate_run(args, w_marg, w_pair)
  np.testing.assert_allclose(lik, log_z, rtol=1e-5)
  want_marg, want_pair = _enumerated_posterior(seqs, log_joint)
  np.testing.assert_allclose(np.exp(marg), np.exp(want_marg), atol=1e-5)
  np.testing.assert_allclose(np.exp(pair), np.exp(want_pair), atol=1e-5)
  np.testing.assert_allclose(elbo, log_z, rtol=1e-5)
  assert joint == -np.inf
  assert _all_finite(grads), grads
  # Posterior samples never take an impossible sequence.
  code = jnp.asarray(O ** np.arange(T - 1, -1, -1))
  assert np.all(possible[np.asarray(samples @ code)])
  if kind == "always":  # options never switch: the first option is kept throughout
    assert np.all(samples == samples[:, :1])


def test_single_option_everything_collapses_to_the_flat_policy():
  log_pi_a, _, cont, _ = _problem(31, t=T, o=1)
  args = (log_pi_a, jnp.zeros(1), cont, jnp.zeros_like(cont))

  @jax.jit
  def run(args):
    chain = rlax_inf.option_posterior_chain(*args)
    o, log_q = rlax_inf.sample_option_chain(jax.random.PRNGKey(0), *chain)
    o_prior, log_p = rlax_inf.sample_options(jax.random.PRNGKey(0), *args[1:])
    b = rlax_inf.options_augmented_rewards(jnp.ones(T), jnp.zeros(T), o, jnp.zeros((T, 1)))
    g = jax.grad(lambda x: rlax_inf.options_iwae_surrogate(x, jnp.zeros(1)))(jnp.zeros(1))
    return (rlax_inf.option_posterior(*args), o, rlax_inf.options_elbo(*args, o, log_q),
            o_prior, log_p, b, g)

  (marg, pair), o, elbo, o_prior, log_p, b, g = run(args)
  np.testing.assert_allclose(marg, 0.0, atol=1e-6)
  np.testing.assert_allclose(pair, 0.0, atol=1e-6)
  np.testing.assert_array_equal(o, 0)
  np.testing.assert_allclose(elbo, log_pi_a.sum(), rtol=1e-6)
  np.testing.assert_array_equal(o_prior, 0)
  np.testing.assert_allclose(log_p, 0.0, atol=1e-6)
  np.testing.assert_allclose(b, 1.0)
  np.testing.assert_allclose(g, 1.0)


def test_impossible_actions_and_minus_inf_weights_give_no_nan():
  log_pi_a, log_init, cont, log_q = _problem(32, t=T, o=O)
  args = (log_pi_a.at[2].set(-jnp.inf), log_init, cont, log_q)  # no option explains a_3
  log_o = jnp.log(jnp.array([[1.0, 0.0], [0.5, 0.5]]))

  @jax.jit
  def run(args):
    out = {}
    out["lik"], out["lik_grad"] = jax.value_and_grad(
        rlax_inf.options_log_likelihood, argnums=(0, 1, 2, 3))(*args)
    out["posterior"] = rlax_inf.option_posterior(*args)
    out["posterior_grad"] = jax.grad(lambda *a: jnp.sum(jnp.exp(
        rlax_inf.option_posterior(*a)[0])), argnums=(0, 1, 2, 3))(*args)
    out["chain"] = rlax_inf.option_posterior_chain(*args)
    # Estimators with −inf log-weights (a sample of probability zero, or all of them).
    log_qs = jnp.array([-1.0, -2.0, -0.5])
    out["iwae_grads"] = [jax.grad(rlax_inf.options_iwae_surrogate, argnums=(0, 1))(lw, log_qs)
                         for lw in (jnp.array([0.3, -jnp.inf, -1.0]), jnp.full(3, -jnp.inf))]
    out["bound_grad"] = jax.grad(rlax_inf.options_bound_surrogate, argnums=(0, 1, 2))(
        jnp.array([[0.5, -jnp.inf], [1.0, 2.0]]), -jnp.ones((2, 2)), -jnp.ones((2, 2)))
    # An option policy with −inf entries in the entropy variant; τ = 0 with −inf log q̃.
    out["entropy_grad"] = jax.grad(lambda x: jnp.sum(rlax_inf.options_augmented_rewards(
        jnp.ones(2), jnp.zeros(2), jnp.array([0, 1]), x, None)))(log_o)
    out["tau0"] = rlax_inf.options_augmented_rewards(
        jnp.ones(2), jnp.zeros(2), jnp.array([0, 1]), log_o, jnp.array([0.0, -jnp.inf]), 0.0)
    return out

  out = run(args)
  assert out["lik"] == -np.inf
  assert np.all(out["posterior"][0] == -np.inf) and np.all(out["posterior"][1] == -np.inf)
  init, trans = out["chain"]  # falls back to the prior
  np.testing.assert_allclose(init, log_init, rtol=1e-6)
  np.testing.assert_allclose(np.exp(trans).sum(-1), 1.0, rtol=1e-5)
  for name in ("lik_grad", "posterior_grad", "iwae_grads", "bound_grad", "entropy_grad"):
    assert _all_finite(out[name]), (name, out[name])
  np.testing.assert_allclose(out["tau0"], 1.0)


def test_new_functions_vmap_and_reject_bad_input():
  batch = [_problem(s, t=T, o=O) for s in range(3)]
  stacked = [jnp.stack(x) for x in zip(*batch)]
  marg, pair = jax.vmap(rlax_inf.option_posterior)(*stacked)
  chex.assert_shape([marg, pair], [(3, T, O), (3, T - 1, O, O)])
  np.testing.assert_allclose(marg[1], rlax_inf.option_posterior(*batch[1])[0], rtol=1e-5,
                             atol=1e-6)
  o, log_p = jax.vmap(rlax_inf.sample_options)(jax.random.split(jax.random.PRNGKey(0), 3),
                                               *stacked[1:])
  chex.assert_shape([o, log_p], [(3, T), (3, T)])
  log_pi_a, log_init, cont, log_q = batch[0]
  with pytest.raises(AssertionError, match="log_initial_option"):
    rlax_inf.option_posterior(log_pi_a, log_init[:2], cont, log_q)
  with pytest.raises(AssertionError):
    rlax_inf.options_joint_log_prob(log_pi_a, log_init, cont, log_q, jnp.zeros(T))
  with pytest.raises(AssertionError, match="o_t"):
    rlax_inf.options_joint_log_prob(log_pi_a, log_init, cont, log_q, jnp.zeros(T - 1, jnp.int32))
  with pytest.raises(AssertionError, match="log_q_o_t"):
    rlax_inf.options_elbo(log_pi_a, log_init, cont, log_q, jnp.zeros(T, jnp.int32), jnp.zeros(2))
  with pytest.raises(AssertionError, match="log_transition_t"):
    rlax_inf.sample_option_chain(jax.random.PRNGKey(0), jnp.zeros(O), jnp.zeros((T, O, 2)))
  with pytest.raises(AssertionError, match="log_option_probs_t"):
    rlax_inf.options_augmented_rewards(jnp.zeros(T), jnp.zeros(T), jnp.zeros(T, jnp.int32),
                                       jnp.zeros((T + 1, O)))
  with pytest.raises(AssertionError, match="log_prob_o_t"):
    rlax_inf.options_bound_surrogate(jnp.zeros((4, T)), jnp.zeros((4, T - 1)))
  with pytest.raises(AssertionError, match="log_q"):
    rlax_inf.options_iwae_surrogate(jnp.zeros(4), jnp.zeros(3))
  with pytest.raises(ValueError, match="batch shape"):
    rlax_inf.sample_option_and_action(jax.random.PRNGKey(0), jnp.int32(0), cont[0], log_q[0],
                                      distrax.Categorical(logits=jnp.zeros((2, 4))))
