"""estimators: SNIS weights, ESS, IWAE / ELBO bounds, trajectory log-weights."""
import chex
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rlax_inf

log_weights = hnp.arrays(np.float32, st.integers(1, 16), elements=st.floats(-30, 30, width=32))


class EstimatorsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_values(self):
    log_w = jnp.log(jnp.array([1.0, 2.0, 3.0, 0.0]))
    w = self.variant(rlax_inf.snis_weights)(log_w)
    np.testing.assert_allclose(w, [1 / 6, 2 / 6, 3 / 6, 0.0], rtol=1e-6)
    ess = self.variant(rlax_inf.effective_sample_size)(log_w)
    np.testing.assert_allclose(ess, 1.0 / np.sum(np.array([1, 2, 3]) ** 2 / 36), rtol=1e-5)
    np.testing.assert_allclose(self.variant(rlax_inf.iwae_bound)(log_w), np.log(6 / 4), rtol=1e-6)
    np.testing.assert_allclose(self.variant(rlax_inf.elbo)(log_w[:3]), np.mean(np.log([1, 2, 3])),
                               rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_axis(self):
    log_w = jax.random.normal(jax.random.PRNGKey(0), (3, 5))
    for fn in (rlax_inf.snis_weights, rlax_inf.effective_sample_size,
               rlax_inf.iwae_bound, rlax_inf.elbo):
      a = self.variant(fn, static_argnums=1)(log_w, 0)
      b = self.variant(fn, static_argnums=1)(log_w.T, 1)
      np.testing.assert_allclose(a, b.T if a.ndim == 2 else b, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_trajectory_log_weights(self):
    r = jnp.array([1.0, 2.0, -0.5]); lpi = jnp.array([-0.1, -0.2, -0.3])
    lp0 = jnp.full(3, -np.log(2.0))
    got = self.variant(rlax_inf.trajectory_log_weights)(r, lpi, lp0, 0.5)
    np.testing.assert_allclose(got, 2.5 / 0.5 - np.sum(lpi - lp0), rtol=1e-6)
    assert self.variant(rlax_inf.trajectory_log_weights)(r, lpi, lp0, 0.0) == np.inf


def test_vmap():
  log_w = jax.random.normal(jax.random.PRNGKey(1), (4, 6))
  for fn in (rlax_inf.snis_weights, rlax_inf.effective_sample_size,
             rlax_inf.iwae_bound, rlax_inf.elbo):
    np.testing.assert_allclose(jax.vmap(fn)(log_w), jnp.stack([fn(x) for x in log_w]),
                               rtol=1e-6)
  r = log_w[:, :3]
  got = jax.vmap(rlax_inf.trajectory_log_weights)(r, r, r * 0, jnp.ones(4))
  np.testing.assert_allclose(got, jnp.zeros(4), atol=1e-6)


def test_iwae_is_unbiased_for_the_evidence_on_a_known_model():
  # p(x) = N(0, 1) prior, O observed with p(O|x) = N(1; x, 1): log p(O) = log N(1; 0, 2).
  keys = jax.random.split(jax.random.PRNGKey(3), 4000)

  def log_w(key, k):
    x = jax.random.normal(key, (k,))  # proposal = prior
    return -0.5 * (1.0 - x) ** 2 - 0.5 * np.log(2 * np.pi)

  exact = -0.25 - 0.5 * np.log(4 * np.pi)
  prev = -np.inf
  for k in (1, 8, 64):
    lw = jax.vmap(lambda key: log_w(key, k))(keys)
    bounds = jax.vmap(rlax_inf.iwae_bound)(lw)
    # exp(bound) is an unbiased estimator of p(O); the bound tightens in K.
    z = jnp.exp(bounds)
    assert abs(z.mean() - np.exp(exact)) < 4 * z.std() / np.sqrt(z.size)
    assert bounds.mean() <= exact + 1e-3
    assert bounds.mean() >= prev - 1e-3
    prev = bounds.mean()


@given(log_w=log_weights)
def test_iwae_at_least_elbo_and_ess_in_range(log_w):
  log_w = jnp.asarray(log_w)
  assert rlax_inf.iwae_bound(log_w) >= rlax_inf.elbo(log_w) - 1e-4
  ess = rlax_inf.effective_sample_size(log_w)
  assert 1.0 - 1e-4 <= ess <= log_w.shape[0] + 1e-3
  np.testing.assert_allclose(rlax_inf.snis_weights(log_w).sum(), 1.0, rtol=1e-5)


def test_extremes():
  log_w = jnp.array([-jnp.inf, 1e6, 1e6 - 1.0, -1e6])
  for fn in (rlax_inf.snis_weights, rlax_inf.effective_sample_size, rlax_inf.iwae_bound):
    out = fn(log_w)
    assert np.all(np.isfinite(out))
    g = jax.grad(lambda x: jnp.sum(fn(x) * jnp.arange(1.0, 1.0 + fn(x).size)))(log_w)
    assert np.all(np.isfinite(g))
  np.testing.assert_allclose(rlax_inf.effective_sample_size(log_w),
                             1 / ((1 / (1 + np.exp(-1))) ** 2 + (np.exp(-1) / (1 + np.exp(-1))) ** 2),
                             rtol=1e-5)


def test_bad_input():
  with pytest.raises(AssertionError, match="`log_w`"):
    rlax_inf.snis_weights(jnp.float32(1.0))
  with pytest.raises(AssertionError, match="`log_w`"):
    rlax_inf.iwae_bound(jnp.arange(3))
  with pytest.raises(AssertionError):
    rlax_inf.trajectory_log_weights(jnp.zeros(3), jnp.zeros(2), jnp.zeros(3))


def test_iwae_with_every_weight_minus_inf_has_a_zero_gradient_not_nan():
  # A sample set with no posterior mass: the bound is -inf and its gradient 0.
  log_w = jnp.full((2, 4), -jnp.inf).at[1, 2].set(0.5)
  bound = rlax_inf.iwae_bound(log_w)
  assert bound[0] == -np.inf
  np.testing.assert_allclose(bound[1], 0.5 - np.log(4), rtol=1e-6)
  g = jax.grad(lambda x: jnp.sum(jnp.where(jnp.isfinite(rlax_inf.iwae_bound(x)),
                                           rlax_inf.iwae_bound(x), 0.0)))(log_w)
  assert np.all(np.isfinite(g))
  np.testing.assert_array_equal(g[0], 0.0)
  np.testing.assert_allclose(g[1], [0, 0, 1, 0], atol=1e-7)  # softmax over the finite one
  # Against jax.nn.logsumexp wherever that is defined.
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 5)) * 30
  np.testing.assert_allclose(rlax_inf.iwae_bound(x, 0),
                             jax.nn.logsumexp(x, 0) - np.log(3), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(lambda v: rlax_inf.iwae_bound(v).sum())(x),
                             jax.nn.softmax(x, -1), rtol=1e-5, atol=1e-7)
