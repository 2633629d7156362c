"""values: soft values, Boltzmann policies, regularised values, entropy and KL."""
import chex
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from hypothesis import given
from hypothesis import strategies as st

import rlax_inf

TEMPS = [0.0, 1e-6, 1e-3, 0.1, 1.0, 10.0, 1e6]


def np_soft_value(q, tau, log_prior=None):
  q = np.asarray(q, np.float64)
  lp = np.zeros_like(q) if log_prior is None else np.asarray(log_prior, np.float64)
  if tau == 0:
    return q[lp > -np.inf].max()
  z = q / tau + lp
  m = z[np.isfinite(z)].max()
  return tau * (m + np.log(np.exp(z - m).sum()))


class ValuesVariantsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*TEMPS)
  def test_soft_value_matches_float64_reference(self, tau):
    q = jnp.array([1.0, -2.0, 0.5, 0.5])
    lp = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
    for prior in (None, lp):
      got = self.variant(rlax_inf.soft_value)(q, tau, prior)
      # float32: τ · logsumexp carries an absolute error of about τ · 1e-7.
      np.testing.assert_allclose(got, np_soft_value(q, tau, prior), rtol=1e-5,
                                 atol=1e-5 + 3e-7 * tau)

  @chex.variants(with_jit=True, without_jit=True)
  def test_boltzmann_log_policy_normalised_and_greedy_at_zero(self):
    q = jnp.array([1.0, 3.0, 3.0, -1.0])
    for tau in TEMPS:
      log_pi = self.variant(rlax_inf.boltzmann_log_policy)(q, tau)
      np.testing.assert_allclose(jnp.exp(log_pi).sum(), 1.0, rtol=1e-5)
    greedy = self.variant(rlax_inf.boltzmann_log_policy)(q, 0.0)
    np.testing.assert_allclose(jnp.exp(greedy), [0.0, 0.5, 0.5, 0.0])

  @chex.variants(with_jit=True, without_jit=True)
  def test_temperature_can_be_traced(self):
    q = jnp.array([0.0, 1.0])
    f = self.variant(lambda t: rlax_inf.soft_value(q, t))
    np.testing.assert_allclose(f(jnp.float32(0.0)), 1.0)
    np.testing.assert_allclose(f(jnp.float32(1.0)), np.log(1 + np.e), rtol=1e-6)
    g = jax.grad(lambda t: rlax_inf.soft_value(q, t))(1.0)
    # dV/dτ = entropy of the Boltzmann policy.
    pi = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(g, -(pi * np.log(pi)).sum(), rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_regularized_value_formula(self):
    q = jnp.array([1.0, 2.0, 0.0])
    log_pi = jnp.log(jnp.array([0.2, 0.5, 0.3]))
    lp = jnp.log(jnp.array([0.5, 0.25, 0.25]))
    got = self.variant(rlax_inf.regularized_value)(q, log_pi, 0.3, lp)
    pi = np.exp(log_pi)
    want = (pi * (q - 0.3 * (log_pi - lp))).sum()
    np.testing.assert_allclose(got, want, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_entropy_and_kl(self):
    log_p = jnp.log(jnp.array([0.5, 0.5, 0.0]))
    log_q = jnp.log(jnp.array([0.25, 0.25, 0.5]))
    np.testing.assert_allclose(self.variant(rlax_inf.entropy)(log_p), np.log(2), rtol=1e-6)
    np.testing.assert_allclose(self.variant(rlax_inf.kl)(log_p, log_q), np.log(2), rtol=1e-6)
    assert self.variant(rlax_inf.kl)(log_q, log_p) == np.inf


def _check_vmap(fn, *batched):
  """jax.vmap(fn) equals calling the jitted fn on each element."""
  single = jax.jit(fn)
  got = jax.vmap(fn)(*batched)
  want = jnp.stack([single(*[b[i] for b in batched]) for i in range(batched[0].shape[0])])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_vmap_matches_loop():
  q = jax.random.normal(jax.random.PRNGKey(0), (6, 5))
  taus = jnp.linspace(0.0, 2.0, 6)
  log_pi = jax.nn.log_softmax(q)
  _check_vmap(rlax_inf.soft_value, q, taus)
  _check_vmap(rlax_inf.boltzmann_log_policy, q, taus)
  _check_vmap(rlax_inf.regularized_value, q, log_pi, taus)
  _check_vmap(rlax_inf.entropy, log_pi)
  _check_vmap(rlax_inf.kl, log_pi, log_pi[::-1])


finite_q = hnp.arrays(np.float32, st.integers(2, 6),
                      elements=st.floats(-50, 50, width=32))


@given(q=finite_q, tau=st.floats(1e-2, 1e2), seed=st.integers(0, 2**16))
def test_max_of_regularized_value_is_soft_value(q, tau, seed):
  q = jnp.asarray(q)
  lp = jax.nn.log_softmax(jax.random.normal(jax.random.PRNGKey(seed), q.shape))
  for prior in (None, lp):
    v = rlax_inf.soft_value(q, tau, prior)
    at_boltzmann = rlax_inf.regularized_value(
        q, rlax_inf.boltzmann_log_policy(q, tau, prior), tau, prior)
    np.testing.assert_allclose(at_boltzmann, v, rtol=1e-4, atol=1e-3 * max(1.0, tau))
    # Any other policy does no better.
    for k in range(3):
      other = jax.nn.log_softmax(3 * jax.random.normal(jax.random.PRNGKey(seed + k + 1), q.shape))
      assert rlax_inf.regularized_value(q, other, tau, prior) <= v + 1e-3 * max(1.0, tau, float(jnp.abs(v)))


@given(q=finite_q, tau=st.floats(1e-2, 1e2))
def test_counting_measure_vs_uniform_prior_differ_by_tau_log_a(q, tau):
  q = jnp.asarray(q)
  uniform = jnp.full(q.shape, -np.log(q.shape[0]), jnp.float32)
  diff = rlax_inf.soft_value(q, tau) - rlax_inf.soft_value(q, tau, uniform)
  np.testing.assert_allclose(diff, tau * np.log(q.shape[0]), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("tau", [0.0, 1e-6, 1.0, 1e6])
@pytest.mark.parametrize("scale", [1.0, 1e6, -1e6])
def test_extremes_finite_values_and_gradients(tau, scale):
  q = scale * jnp.array([1.0, 0.5, -1.0, 0.25])
  lp = jnp.array([-jnp.inf, -1.0, -2.0, -jnp.inf])
  mask = jnp.array([True, True, False, True])
  for prior, m in [(None, None), (lp, None), (None, mask), (lp, mask)]:
    v, g = jax.value_and_grad(rlax_inf.soft_value)(q, tau, prior, m)
    assert np.isfinite(v) and np.all(np.isfinite(g)), (prior, m)
    log_pi = rlax_inf.boltzmann_log_policy(q, tau, prior, m)
    np.testing.assert_allclose(jnp.exp(log_pi).sum(), 1.0, rtol=1e-5)
    g = jax.grad(lambda q: rlax_inf.entropy(rlax_inf.boltzmann_log_policy(q, tau, prior, m)))(q)
    assert np.all(np.isfinite(g))
    rv, g = jax.value_and_grad(rlax_inf.regularized_value)(q, log_pi, tau, prior)
    assert np.isfinite(rv) and np.all(np.isfinite(g))
    # Masked / zero-prior actions get no probability.
    valid = np.ones(4, bool) if m is None else np.array(m)
    if prior is not None:
      valid = valid & np.isfinite(np.asarray(prior))
    assert np.all(np.exp(np.asarray(log_pi))[~valid] == 0)
  # Temperature gradient is finite everywhere too.
  assert np.isfinite(jax.grad(lambda t: rlax_inf.soft_value(q, t, lp))(jnp.float32(tau)))


def test_tau_to_zero_is_continuous():
  q = jnp.array([0.3, 1.2, 1.1])
  vals = [rlax_inf.soft_value(q, t) for t in (1e-2, 1e-4, 1e-6, 0.0)]
  np.testing.assert_allclose(vals, 1.2, atol=2e-2)
  np.testing.assert_allclose(jnp.exp(rlax_inf.boltzmann_log_policy(q, 1e-6)), [0, 1, 0], atol=1e-6)


def test_bad_input_names_the_argument():
  with pytest.raises(AssertionError, match="`q`"):
    rlax_inf.soft_value(jnp.zeros((2, 3)))
  with pytest.raises(AssertionError, match="`q`"):
    rlax_inf.soft_value(jnp.zeros(3, jnp.int32))
  with pytest.raises(AssertionError, match="`log_prior`"):
    rlax_inf.soft_value(jnp.zeros(3), 1.0, jnp.zeros(4))
  with pytest.raises(AssertionError, match="`mask`"):
    rlax_inf.boltzmann_log_policy(jnp.zeros(3), 1.0, None, jnp.ones(3))
  with pytest.raises(AssertionError, match="`log_pi`"):
    rlax_inf.regularized_value(jnp.zeros(3), jnp.zeros(2))


# One temperature rule in every module: a scalar τ ≥ 0. A negative or NaN τ known
# at trace time (Python or NumPy number) raises naming it; a vector τ is refused.
_Q3 = jnp.array([0.5, 1.0, -0.2])
_R, _P = jnp.zeros((2, 2)), jnp.full((2, 2, 2), 0.5)
TEMPERATURE_TAKERS = {
    "soft_value": lambda t: rlax_inf.soft_value(_Q3, t),
    "boltzmann_log_policy": lambda t: rlax_inf.boltzmann_log_policy(_Q3, t),
    "regularized_value": lambda t: rlax_inf.regularized_value(_Q3, jnp.log(jnp.full(3, 1 / 3)), t),
    "soft_q_learning": lambda t: rlax_inf.soft_q_learning(_Q3, 0, 1.0, 0.9, _Q3, t),
    "regularized_expected_sarsa": lambda t: rlax_inf.regularized_expected_sarsa(
        _Q3, 0, 1.0, 0.9, _Q3, jnp.log(jnp.full(3, 1 / 3)), t),
    "soft_td_target": lambda t: rlax_inf.soft_td_target(_Q3, _Q3, _Q3, _Q3, t),
    "soft_retrace": lambda t: rlax_inf.soft_retrace(
        _P[0], _P[0], jnp.array([0, 1]), jnp.array([1, 0]), jnp.ones(2), jnp.ones(2),
        jnp.log(_P[0]), jnp.log(jnp.full(2, 0.5)), t),
    "soft_value_iteration": lambda t: rlax_inf.soft_value_iteration(_R, _P, 0.9, t),
    "backward_messages": lambda t: rlax_inf.backward_messages(_R, _P, 2, t),
    "log_partition": lambda t: rlax_inf.log_partition(_R, _P, jnp.full(2, 0.5), 2, t),
    "state_action_marginals": lambda t: rlax_inf.state_action_marginals(_R, _P, jnp.full(2, 0.5), 2, t),
    "maxent_irl_loss": lambda t: rlax_inf.maxent_irl_loss(
        _R, _P, jnp.full(2, 0.5), 2, jnp.full((2, 2, 2), 0.25), t),
    "trajectory_log_weights": lambda t: rlax_inf.trajectory_log_weights(_Q3, _Q3, _Q3, t),
    "options_augmented_rewards": lambda t: rlax_inf.options_augmented_rewards(
        jnp.ones(2), jnp.zeros(2), jnp.array([0, 1]), jnp.log(jnp.full((2, 2), 0.5)),
        temperature=t),
    "reverse_kl_loss": lambda t: rlax_inf.reverse_kl_loss(_Q3, _Q3, t),
    "forward_kl_loss": lambda t: rlax_inf.forward_kl_loss(_Q3, _Q3, t),
    "categorical_reverse_kl_loss": lambda t: rlax_inf.categorical_reverse_kl_loss(_Q3, _Q3, t),
    "trajectory_forward_kl_loss": lambda t: rlax_inf.trajectory_forward_kl_loss(
        _Q3[None], _Q3[None], t),
    "kl_regularized_pg_loss": lambda t: rlax_inf.kl_regularized_pg_loss(_Q3, _Q3, _Q3, _Q3, t),
    "stable_em_loss": lambda t: rlax_inf.stable_em_loss(_Q3, _Q3, _Q3, t),
    "mpo_e_step": lambda t: rlax_inf.mpo_e_step(_Q3, t, 0.1),
}


@pytest.mark.parametrize("bad", [-0.5, float("nan"), np.float32(-1.0), np.ones(3), jnp.ones(3)],
                         ids=["negative", "nan", "numpy_negative", "numpy_vector", "vector"])
@pytest.mark.parametrize("name", sorted(TEMPERATURE_TAKERS))
def test_bad_temperature_raises_naming_it(name, bad):
  with pytest.raises(AssertionError, match="`temperature`"):
    TEMPERATURE_TAKERS[name](bad)


def test_traced_temperature_passes_through_jit():
  # Values are checked only when known at trace time: a traced τ is not refused
  # (and a negative traced τ acts as 0, as the docstrings say of τ ≤ 0 branches).
  for name in ("soft_value", "soft_q_learning", "forward_kl_loss", "mpo_e_step"):
    out = jax.jit(TEMPERATURE_TAKERS[name])(jnp.float32(0.7))
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(out)), name
  # mpo_loss takes the raw dual variable, which any sign is valid for.
  assert np.isfinite(rlax_inf.mpo_loss(_Q3, _Q3, -1.0, 0.1)[0])
  with pytest.raises(AssertionError, match="`bellman_error`"):
    rlax_inf.virel_actor_loss(_Q3, _Q3, -0.1)
