"""options: option transitions and the exact likelihood, against enumeration."""
import itertools

import chex
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
