"""Tests for rlax_inf.distributions against float64 quadrature and closed forms."""

import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_inf import distributions


def _np_tanh_gaussian_log_density(a, loc, scale):
  """float64 reference: change of variables through u = arctanh(a)."""
  u = np.arctanh(a)
  log_normal = -0.5 * ((u - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)
  return log_normal - np.log1p(-a ** 2)


def test_tanh_log_det_jacobian_stable_and_exact():
  u = jnp.linspace(-40.0, 40.0, 801, dtype=jnp.float32)
  got = distributions.tanh_log_det_jacobian(u)
  u64 = np.asarray(u, np.float64)
  # log(1 − tanh² u) = −2 log cosh u = −2 (logaddexp(u, −u) − log 2).
  want = -2.0 * (np.logaddexp(u64, -u64) - np.log(2.0))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # The naive form is −inf in float32 for |u| ≳ 9: the one rlax shipped.
  assert np.float32(1.0) - np.tanh(np.float32(20.0)) ** 2 == 0.0
  grads = jax.vmap(jax.grad(distributions.tanh_log_det_jacobian))(u)
  assert np.all(np.isfinite(grads))
  np.testing.assert_allclose(grads, -2.0 * np.tanh(u64), rtol=1e-5, atol=1e-5)


def test_tanh_gaussian_density_matches_change_of_variables_and_integrates_to_one():
  loc, scale = 0.4, 0.7
  dist = distributions.TanhGaussian(jnp.array([loc]), jnp.array([scale]))
  a = np.linspace(-0.999, 0.999, 2001)
  u = np.linspace(-8.0, 8.0, 4001)
  got, lp = jax.jit(lambda a, u: (dist.log_prob(a), dist.log_prob_from_pre_tanh(u)))(
      jnp.asarray(a[:, None], jnp.float32), jnp.asarray(u[:, None], jnp.float32))
  got, lp = np.asarray(got, np.float64), np.asarray(lp, np.float64)
  want = _np_tanh_gaussian_log_density(a, loc, scale)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # Integrate over u to avoid the spikes at ±1: ∫ π(tanh u) (1 − tanh² u) du = 1.
  mass = np.trapezoid(np.exp(lp) * (1 - np.tanh(u) ** 2), u)
  np.testing.assert_allclose(mass, 1.0, atol=1e-4)


def test_sample_and_log_prob_agree_and_are_finite_at_saturation():
  key = jax.random.PRNGKey(0)

  @jax.jit
  def run(loc, scale):
    dist = distributions.TanhGaussian(loc, scale)
    return (dist.sample_and_log_prob_with_pre_tanh(key, (64,)),
            dist.sample_and_log_prob(seed=key, sample_shape=(64,)))

  (a, u, lp), (a2, lp2) = run(jnp.array([0.0, 25.0]), jnp.array([1.0, 0.1]))
  chex.assert_shape([a, u], (64, 2))
  chex.assert_shape(lp, (64,))
  np.testing.assert_allclose(a, a2)
  np.testing.assert_allclose(lp, lp2, rtol=1e-6)
  assert np.all(np.abs(a[:, 1]) == 1.0)  # saturated in float32 ...
  assert np.all(np.isfinite(lp))  # ... yet the log-prob from u stays finite.
  # The reference log-density for u ≈ 25: N(u) − Σ_d log(1 − tanh² u_d).
  u64 = np.asarray(u, np.float64)
  ref = (-0.5 * ((u64 - np.array([0.0, 25.0])) / np.array([1.0, 0.1])) ** 2
         - np.log([1.0, 0.1]) - 0.5 * np.log(2 * np.pi)
         + 2.0 * (np.logaddexp(u64, -u64) - np.log(2.0))).sum(-1)
  np.testing.assert_allclose(lp, ref, rtol=1e-5)
  grad = jax.jit(jax.grad(lambda m: jnp.sum(distributions.TanhGaussian(m, jnp.ones(2))
                                            .sample_and_log_prob_with_pre_tanh(key, (8,))[2])))(
                                                jnp.array([0.0, 25.0]))
  assert np.all(np.isfinite(grad))


def test_mode_and_jit_and_replayed_saturated_actions():
  dist = distributions.TanhGaussian(jnp.array([0.3, -2.0]), jnp.array([0.5, 0.5]))
  np.testing.assert_allclose(dist.mode(), np.tanh([0.3, -2.0]), rtol=1e-6)
  sample = jax.jit(lambda d, k: d.sample_and_log_prob_with_pre_tanh(k))
  a, u, lp = sample(dist, jax.random.PRNGKey(1))
  np.testing.assert_allclose(dist.log_prob(a), lp, rtol=1e-4)
  assert np.isfinite(dist.log_prob(jnp.array([1.0, -1.0])))


def test_entropy_estimate_is_unbiased():
  loc, scale = 0.5, 1.3
  dist = distributions.TanhGaussian(jnp.array([loc]), jnp.array([scale]))
  # Reference by quadrature in float64: H = −∫ N(u) log π(tanh u) du.
  u = np.linspace(loc - 12 * scale, loc + 12 * scale, 20001)
  normal = np.exp(-0.5 * ((u - loc) / scale) ** 2) / (scale * np.sqrt(2 * np.pi))
  log_pi = np.log(normal) - np.log1p(-np.tanh(u) ** 2)
  want = -np.trapezoid(normal * log_pi, u)
  keys = jax.random.split(jax.random.PRNGKey(2), 4000)
  est = jax.jit(jax.vmap(lambda k: dist.entropy_estimate(k, 4)))(keys)
  est = np.asarray(est, np.float64)
  se = est.std() / np.sqrt(est.size)
  assert abs(est.mean() - want) < 4 * se + 1e-4, (est.mean(), want, se)


def test_kl_divergence_closed_forms_and_monte_carlo():
  p = distrax.MultivariateNormalDiag(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.5]))
  q = distrax.MultivariateNormalDiag(jnp.array([0.5, 0.0]), jnp.array([2.0, 0.5]))
  want = np.sum(np.log([2.0, 1.0]) + (np.array([1.0, 0.25]) + np.array([0.25, 1.0]))
                / (2 * np.array([4.0, 0.25])) - 0.5)
  np.testing.assert_allclose(distributions.kl_divergence(p, q), want, rtol=1e-5)
  # Tanh-Gaussians: KL is invariant under the shared bijection.
  tp = distributions.TanhGaussian(p.loc, p.scale_diag)
  tq = distributions.TanhGaussian(q.loc, q.scale_diag)
  np.testing.assert_allclose(distributions.kl_divergence(tp, tq), want, rtol=1e-5)
  # Categorical with −inf logits: 0 log 0 = 0.
  cp = distrax.Categorical(logits=jnp.array([0.0, -jnp.inf, 1.0]))
  cq = distrax.Categorical(logits=jnp.array([0.0, 0.0, 0.0]))
  pp = np.array([1.0, 0.0, np.e]) / (1 + np.e)
  want_c = np.sum(pp[[0, 2]] * np.log(pp[[0, 2]] * 3))
  np.testing.assert_allclose(distributions.kl_divergence(cp, cq), want_c, rtol=1e-5)
  assert np.isinf(distributions.kl_divergence(cq, cp))
  # Monte Carlo (a TanhGaussian against a distrax tanh-transformed Gaussian):
  # unbiased, so the mean over seeds matches the exact KL within the error.
  other = distrax.Transformed(q, distrax.Block(distrax.Tanh(), 1))
  keys = jax.random.split(jax.random.PRNGKey(3), 2000)
  mc = jax.jit(jax.vmap(lambda k: distributions.kl_divergence(tp, other, k, 4)))(keys)
  mc = np.asarray(mc)
  se = mc.std() / np.sqrt(mc.size)
  assert se > 0 and abs(mc.mean() - want) < 4 * se, (mc.mean(), want, se)
  with pytest.raises(ValueError, match="key"):
    distributions.kl_divergence(tp, other)


def test_decoupled_gaussian_kl_sums_to_the_full_kl_when_one_part_is_fixed():
  loc_old, scale_old = jnp.array([0.1, -0.3]), jnp.array([0.5, 2.0])
  loc, scale = jnp.array([0.4, 0.2]), jnp.array([0.8, 1.0])
  kl_mean, kl_scale = distributions.decoupled_gaussian_kl(loc_old, scale_old, loc, scale)
  old = distrax.MultivariateNormalDiag(loc_old, scale_old)
  np.testing.assert_allclose(
      kl_mean, old.kl_divergence(distrax.MultivariateNormalDiag(loc, scale_old)), rtol=1e-5)
  np.testing.assert_allclose(
      kl_scale, old.kl_divergence(distrax.MultivariateNormalDiag(loc_old, scale)), rtol=1e-5)
  g_mean = jax.grad(lambda s: distributions.decoupled_gaussian_kl(
      loc_old, scale_old, loc, s)[0])(scale)
  np.testing.assert_allclose(g_mean, 0.0)  # the mean KL ignores the new scale
  actions = jax.random.normal(jax.random.PRNGKey(0), (5, 2))
  lp = distributions.decoupled_gaussian_log_prob(actions, loc_old, scale_old, loc, scale)
  want = (distrax.MultivariateNormalDiag(loc, scale_old).log_prob(actions)
          + distrax.MultivariateNormalDiag(loc_old, scale).log_prob(actions))
  np.testing.assert_allclose(lp, want, rtol=1e-6)


def test_bad_input_names_the_argument():
  with pytest.raises(AssertionError, match="scale"):
    distributions.TanhGaussian(jnp.zeros(2), jnp.ones(3))
  with pytest.raises(AssertionError, match="loc"):
    distributions.TanhGaussian(jnp.zeros(2, jnp.int32), jnp.ones(2, jnp.int32))
  with pytest.raises(AssertionError, match="u"):
    distributions.tanh_log_det_jacobian(jnp.zeros(2, jnp.int32))
