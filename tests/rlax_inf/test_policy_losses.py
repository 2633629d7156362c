"""Tests for the policy losses (divergences, kl_regularized, mpo_ops, virel_ops).

Minimisers, rlax's MPO, gradient flow, extremes, bad input; `pl` is the former
module `rlax_inf.policy_losses`, which re-exports the same objects.

Unbiasedness of the stochastic estimators is in test_estimator_gradients.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax
import scipy.optimize

import rlax_inf
from rlax_inf import policy_losses as pl
from rlax_inf import values

Q = jnp.array([1.0, 2.0, -0.5, 0.4, 0.0])
LOG_PRIOR = jax.nn.log_softmax(jnp.array([0.0, 0.5, -0.2, 0.1, -1.0]))


def _minimise_over_logits(loss_fn, num_actions=5, steps=2000, lr=0.5):
  """Full-batch gradient descent over a tabular policy's logits, one jit."""
  def body(_, th):
    return th - lr * jax.grad(lambda t: loss_fn(jax.nn.log_softmax(t)))(th)
  return jax.nn.log_softmax(jax.lax.fori_loop(0, steps, body, jnp.zeros(num_actions)))


# ---------------------------------------------------------------- minimisers


@pytest.mark.parametrize("tau", [0.3, 1.0, 4.0])
@pytest.mark.parametrize("use_prior", [False, True])
def test_each_exact_loss_is_minimised_by_the_boltzmann_target(tau, use_prior):
  log_prior = LOG_PRIOR if use_prior else None
  target = values.boltzmann_log_policy(Q, tau, log_prior)
  losses = {
      "reverse": lambda lp: pl.categorical_reverse_kl_loss(lp, Q, tau, log_prior),
      "forward": lambda lp: pl.categorical_forward_kl_loss(lp, Q, tau, log_prior),
      # MPO's M-step on all actions, weighted by the E-step target.
      "mpo_m": lambda lp: pl.mpo_m_step_loss(lp, jnp.exp(target)),
  }
  results = jax.jit(lambda: {k: _minimise_over_logits(f) for k, f in losses.items()})()
  for name, log_pi in results.items():
    np.testing.assert_allclose(jnp.exp(log_pi), jnp.exp(target), atol=2e-3, err_msg=name)
  # The minimum of the reverse KL loss is −soft_value.
  np.testing.assert_allclose(pl.categorical_reverse_kl_loss(target, Q, tau, log_prior),
                             -values.soft_value(Q, tau, log_prior), rtol=1e-5)


def test_sample_losses_are_stationary_at_the_target():
  tau = 0.8
  target = values.boltzmann_log_policy(Q, tau, LOG_PRIOR)
  actions = jnp.array([0, 1, 1, 3, 4, 2])
  # Forward KL: at π = p* every SNIS weight is equal, whatever the samples.
  w = jax.grad(lambda lp: -pl.forward_kl_loss(lp, Q[actions], tau, LOG_PRIOR[actions]))(
      target[actions])
  np.testing.assert_allclose(w, 1.0 / actions.size, rtol=1e-5)
  # Reverse KL (score function): cost τ(log π − log π0) − Q is constant (= −V) at p*,
  # so the leave-one-out advantages vanish for every sample.
  g = jax.grad(lambda lp: pl.reverse_kl_score_loss(lp, Q[actions], tau, LOG_PRIOR[actions]))(
      target[actions])
  np.testing.assert_allclose(g, 0.0, atol=1e-6)
  # Stable EM with π_old = p*: the next policy π_old exp(Q/τ) is stationary too.
  em = values.boltzmann_log_policy(Q, tau, target)
  g = jax.grad(lambda lp: pl.reverse_kl_score_loss(lp, Q[actions], tau, target[actions]))(
      em[actions])
  np.testing.assert_allclose(g, 0.0, atol=1e-5)


def test_virel_actor_loss_is_reverse_kl_at_the_bellman_error():
  td = jnp.array([0.5, -1.0, 0.25])
  eps = pl.virel_temperature(td, scale=2.0)
  np.testing.assert_allclose(eps, 2.0 * np.mean(np.square(td)), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(lambda d: pl.virel_temperature(d))(td), 0.0)
  log_pi = jax.nn.log_softmax(jnp.arange(5.0))
  np.testing.assert_allclose(pl.virel_actor_loss(log_pi, Q, eps),
                             pl.reverse_kl_loss(log_pi, Q, eps), rtol=1e-6)
  assert jax.grad(pl.virel_actor_loss, argnums=2)(log_pi, Q, eps) == 0.0
  # A perfect critic (ε_ω = 0): the loss is greedy and finite.
  np.testing.assert_allclose(pl.virel_actor_loss(log_pi, Q, 0.0), -jnp.mean(Q))


def test_virel_critic_converges_to_policy_evaluation():
  rng = np.random.default_rng(1)
  s, a, gamma = 3, 2, 0.9
  transitions = rng.dirichlet(np.ones(s), size=(s, a))
  rewards = rng.normal(size=(s, a))
  policy = rng.dirichlet(np.ones(a), size=s)
  # Q^π = r + γ P Π Q^π, solved exactly.
  p_pi = np.einsum("sat,tb->satb", transitions, policy).reshape(s * a, s * a)
  q_exact = np.linalg.solve(np.eye(s * a) - gamma * p_pi, rewards.reshape(-1)).reshape(s, a)

  def loss(q):
    q_next = jnp.einsum("sat,tb,tb->sa", transitions, policy, q)  # E_{s',a'~π} Q
    per = jax.vmap(jax.vmap(pl.virel_critic_loss))(q, jnp.asarray(rewards, jnp.float32),
                                                   jnp.full((s, a), gamma), q_next)
    return jnp.sum(per)

  q = jax.jit(lambda: jax.lax.fori_loop(
      0, 1500, lambda _, q: q - 0.5 * jax.grad(loss)(q), jnp.zeros((s, a))))()
  np.testing.assert_allclose(q, q_exact, atol=1e-3)


# ----------------------------------------------------------------------- MPO


def _random_mpo_inputs(key, batch=6, n=8):
  k = jax.random.split(key, 8)
  log_pi = jax.nn.log_softmax(jax.random.normal(k[0], (batch, n)))
  q = 3.0 * jax.random.normal(k[1], (batch, n))
  temperature = jnp.exp(jax.random.normal(k[2], ()))
  kl_mean = jnp.abs(jax.random.normal(k[3], (batch,)))
  kl_cov = jnp.abs(jax.random.normal(k[4], (batch, 3)))
  alpha_mean = jnp.exp(jax.random.normal(k[5], ()))
  alpha_cov = jnp.exp(jax.random.normal(k[6], (3,)))
  return log_pi, q, temperature, kl_mean, kl_cov, alpha_mean, alpha_cov


EPS, EPS_MEAN, EPS_COV = 0.1, 0.01, 0.002


def _ours_mpo(log_pi, q, temperature, kl_mean, kl_cov, alpha_mean, alpha_cov):
  def one(lp, qq, km, kc):
    return pl.mpo_loss(lp, qq, temperature, EPS,
                       ((km, alpha_mean, EPS_MEAN), (kc, alpha_cov, EPS_COV)))
  loss, extra = jax.vmap(one)(log_pi, q, kl_mean, kl_cov)
  return jnp.sum(loss), extra


def _rlax_mpo(log_pi, q, temperature, kl_mean, kl_cov, alpha_mean, alpha_cov):
  loss, extra = rlax.mpo_loss(
      log_pi.T, q.T,
      rlax.LagrangePenalty(temperature, jnp.asarray(EPS)),
      [(kl_mean, rlax.LagrangePenalty(alpha_mean, jnp.asarray(EPS_MEAN))),
       (kl_cov, rlax.LagrangePenalty(alpha_cov[None], jnp.asarray(EPS_COV), True))],
      sample_axis=0)
  return jnp.sum(loss), extra


_OURS_VG = jax.jit(jax.value_and_grad(_ours_mpo, tuple(range(7)), has_aux=True))
_RLAX_VG = jax.jit(jax.value_and_grad(_rlax_mpo, tuple(range(7)), has_aux=True))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mpo_matches_rlax_values_and_gradients(seed):
  eps = EPS
  inputs = _random_mpo_inputs(jax.random.PRNGKey(seed))
  (v1, e1), g1 = _OURS_VG(*inputs)
  (v2, e2), g2 = _RLAX_VG(*inputs)
  np.testing.assert_allclose(v1, v2, rtol=1e-5)
  np.testing.assert_allclose(e1.weights, e2.normalized_weights.T, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(e1.temperature_loss, e2.temperature_loss, rtol=1e-5)
  np.testing.assert_allclose(e1.policy_loss, e2.policy_loss, rtol=1e-5)
  for a, b in zip(g1, g2):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # The E-step alone against rlax's.
  w, dual = jax.jit(jax.vmap(pl.mpo_e_step, in_axes=(0, None, None)))(inputs[1], inputs[2], eps)
  dual2, w2, _ = jax.jit(lambda q, t: rlax.mpo_compute_weights_and_temperature_loss(
      q, rlax.LagrangePenalty(t, jnp.asarray(eps)), lambda x: x, sample_axis=1))(
          inputs[1], inputs[2])
  np.testing.assert_allclose(w, w2, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(dual, dual2, rtol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 1e-6, 0.7])
def test_mpo_loss_is_its_e_step_and_m_step(eta):
  # mpo_loss fuses the two steps; it must equal them composed, at η = 0 too,
  # with 0 · log 0 = 0 where the policy gives a zero-weight sample no mass.
  q = jnp.array([1.0, 3.0, 3.0, -2.0])
  log_pi = jnp.log(jnp.array([0.2, 0.3, 0.5, 0.0]))
  eta = jnp.float32(eta)
  loss, extra = pl.mpo_loss(log_pi, q, eta, 0.1, projection=lambda x: x)
  weights, dual = pl.mpo_e_step(q, eta, 0.1)
  np.testing.assert_allclose(extra.weights, weights, rtol=1e-6)
  np.testing.assert_allclose(extra.temperature_loss, dual, rtol=1e-6)
  np.testing.assert_allclose(extra.policy_loss, pl.mpo_m_step_loss(log_pi, weights), rtol=1e-6)
  np.testing.assert_allclose(loss, extra.policy_loss + dual, rtol=1e-6)
  grads = jax.grad(lambda lp, qq, e: pl.mpo_loss(lp, qq, e, 0.1, projection=lambda x: x)[0],
                   (0, 1, 2))(log_pi, q, eta)
  want = jax.grad(lambda lp, qq, e: pl.mpo_m_step_loss(lp, pl.mpo_e_step(qq, e, 0.1)[0])
                  + pl.mpo_e_step(qq, e, 0.1)[1], (0, 1, 2))(log_pi, q, eta)
  for g, w in zip(grads, want):
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)


def test_mpo_temperature_dual_minimiser_makes_the_kl_bound_tight():
  # Samples = every action once = exact expectation under a uniform π_old.
  q = jnp.array([1.0, 0.2, -0.3, 2.0, 0.5])
  for eps in (0.05, 0.3):
    dual = jax.jit(lambda log_eta: pl.mpo_e_step(q, jnp.exp(log_eta), eps)[1])
    res = scipy.optimize.minimize_scalar(lambda x: float(dual(jnp.float32(x))),
                                         bounds=(-6.0, 4.0), method="bounded",
                                         options={"xatol": 1e-7})
    weights, _ = pl.mpo_e_step(q, jnp.exp(jnp.float32(res.x)), eps)
    kl = values.kl(jnp.log(weights), jnp.full(5, -jnp.log(5.0)))
    np.testing.assert_allclose(kl, eps, rtol=2e-3)


def test_mpo_multipliers_recover_from_the_floor():
  # rlax's clip has zero gradient below its floor; the projection here does not.
  alpha = jnp.float32(-0.5)
  _, alpha_loss = pl.lagrange_penalty(jnp.float32(0.3), alpha, 0.1)
  np.testing.assert_allclose(alpha_loss, 1e-10 * (0.1 - 0.3), rtol=1e-4)
  g = jax.grad(lambda a: pl.lagrange_penalty(jnp.float32(0.3), a, 0.1)[1])(alpha)
  np.testing.assert_allclose(g, 0.1 - 0.3, rtol=1e-6)  # KL above the bound: α must grow
  g_rlax = jax.grad(lambda a: rlax.mpo_ops.kl_constraint_loss(
      jnp.float32(0.3), rlax.LagrangePenalty(a, jnp.float32(0.1)),
      functools.partial(jnp.clip, min=1e-10))[1])(alpha) if hasattr(rlax, "mpo_ops") else 0.0
  assert g_rlax == 0.0


def test_mpo_e_step_hard_limit():
  q = jnp.array([1.0, 3.0, 3.0, -1e6])
  w, dual = pl.mpo_e_step(q, 0.0, 0.1)
  np.testing.assert_allclose(w, [0.0, 0.5, 0.5, 0.0])
  np.testing.assert_allclose(dual, 3.0)
  w, dual = pl.mpo_e_step(q, 1e-6, 0.1)
  np.testing.assert_allclose(w, [0.0, 0.5, 0.5, 0.0], atol=1e-6)
  assert np.isfinite(dual)
  np.testing.assert_allclose(jax.grad(lambda qq: pl.mpo_e_step(qq, 1.0, 0.1)[0][0])(q), 0.0)


# -------------------------------------------------------------- gradient flow


def _jgrad(fn, argnums=0):
  return jax.jit(jax.grad(fn, argnums))


def test_weights_are_stop_gradient_where_the_papers_say():
  log_pi = jax.nn.log_softmax(jnp.array([0.1, 0.4, -0.2, 0.0, 0.3]))
  tau = jnp.float32(0.6)
  g_lp, g_q, g_tau, g_prior = _jgrad(pl.forward_kl_loss, (0, 1, 2, 3))(log_pi, Q, tau, LOG_PRIOR)
  np.testing.assert_allclose(g_q, 0.0)
  np.testing.assert_allclose(g_prior, 0.0)
  assert g_tau == 0.0
  w = jax.nn.softmax(Q / tau + LOG_PRIOR - log_pi)
  np.testing.assert_allclose(g_lp, -w, rtol=1e-5)
  # Trajectory and marginal FKL: rewards and state weights get no gradient.
  lp_t, r_t = jnp.stack([log_pi, log_pi[::-1]]), jnp.stack([Q, Q[::-1] + 1.0])
  np.testing.assert_allclose(_jgrad(pl.trajectory_forward_kl_loss, 1)(lp_t, r_t, tau), 0.0)
  g_y = _jgrad(lambda y: pl.marginal_forward_kl_loss(lp_t, r_t, tau, log_state_weights=y))(
      jnp.array([0.3, -0.2]))
  np.testing.assert_allclose(g_y, 0.0)
  # MPO's M-step weights.
  np.testing.assert_allclose(
      _jgrad(lambda qq: pl.mpo_loss(log_pi, qq, jnp.float32(1.0), 0.1)[1].policy_loss)(Q), 0.0)
  # Temperatures: the policy gets no gradient from α's loss.
  np.testing.assert_allclose(
      _jgrad(pl.entropy_temperature_loss, 1)(jnp.float32(0.2), log_pi, -1.0), 0.0)
  # Score-function RKL: Q gets no gradient, and the value is the loss estimate.
  np.testing.assert_allclose(_jgrad(pl.reverse_kl_score_loss, 1)(log_pi, Q, tau), 0.0)
  np.testing.assert_allclose(pl.reverse_kl_score_loss(log_pi, Q, tau),
                             pl.reverse_kl_loss(log_pi, Q, tau), rtol=1e-6)


@pytest.mark.parametrize("variant", [pytest.param(lambda f: f, id="nojit"),
                                     pytest.param(jax.jit, id="jit")])
def test_pathwise_rkl_gradient_flows_through_both_arguments(variant):
  log_pi = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
  g_lp, g_q = variant(jax.grad(pl.reverse_kl_loss, argnums=(0, 1)))(log_pi, Q[:4], 0.6)
  np.testing.assert_allclose(g_lp, 0.6 / 4, rtol=1e-6)
  np.testing.assert_allclose(g_q, -1.0 / 4, rtol=1e-6)


def test_trajectory_and_marginal_fkl_weights():
  tau = 0.5
  lp = jax.nn.log_softmax(jnp.arange(6.0).reshape(3, 2), axis=0) - 1.0  # [M=3, T=2]
  r = jnp.array([[1.0, 0.0], [0.5, 0.5], [-1.0, 2.0]])
  log_prior = jnp.full((3, 2), -0.7)
  want = jax.nn.softmax(jnp.sum(r, 1) / tau + jnp.sum(log_prior - lp, 1))
  # d/dx of −Σ_i w_i Σ_t x_i/2 = −w (log-probs enter only through the argument).
  got = -_jgrad(lambda x: pl.trajectory_forward_kl_loss(
      jnp.broadcast_to(x[:, None], (3, 2)) / 2, r, tau, log_prior,
      log_proposal_t=lp))(jnp.zeros(3))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Marginal: uniform ȳ is the mean of per-state losses; ȳ weights otherwise.
  q = jnp.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
  log_pi = jnp.log(jnp.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]))
  per = jax.vmap(pl.forward_kl_loss, in_axes=(0, 0, None))(log_pi, q, tau)
  np.testing.assert_allclose(pl.marginal_forward_kl_loss(log_pi, q, tau), per.mean(), rtol=1e-6)
  y = jax.nn.softmax(jnp.array([0.0, 1.0]))
  np.testing.assert_allclose(
      pl.marginal_forward_kl_loss(log_pi, q, tau, log_state_weights=jnp.array([0.0, 1.0])),
      jnp.sum(y * per), rtol=1e-6)


def test_kl_regularized_pg_surrogate_matches_the_formula():
  log_pi = jnp.log(jnp.array([0.5, 0.2, 0.9, 0.4]))
  kl = jnp.array([0.1, 0.3, 0.0, 0.2])
  r = jnp.array([1.0, -1.0, 2.0, 0.5])
  discount = jnp.array([0.9, 0.9, 0.0, 0.9])  # an episode ends after step 2
  tau = 0.5
  for long_term in (True, False):
    x = np.asarray(r - tau * kl if long_term else r, np.float64)
    g = np.zeros(4)
    for t in reversed(range(4)):
      g[t] = x[t] + (discount[t] * g[t + 1] if t < 3 else 0.0)
    g_lp, g_kl, g_r = jax.grad(pl.kl_regularized_pg_loss, argnums=(0, 1, 2))(
        log_pi, kl, r, discount, tau, long_term)
    np.testing.assert_allclose(g_lp, -g, rtol=1e-5)
    np.testing.assert_allclose(g_kl, tau, rtol=1e-6)  # the KL inside G_t is stopped
    np.testing.assert_allclose(g_r, 0.0)
  b = jnp.array([0.3, 0.1, 0.2, 0.0])
  g_b = jax.grad(pl.kl_regularized_pg_loss, argnums=0)(log_pi, kl, r, discount, tau, True, b)
  g_0 = jax.grad(pl.kl_regularized_pg_loss, argnums=0)(log_pi, kl, r, discount, tau, True)
  np.testing.assert_allclose(g_b, g_0 + b, rtol=1e-5)


def test_temperature_losses():
  log_pi = jnp.array([-1.0, -2.0, -0.5])  # entropy estimate 7/6
  log_alpha = jnp.float32(np.log(0.3))
  g = jax.grad(pl.entropy_temperature_loss)(log_alpha, log_pi, 2.0)
  np.testing.assert_allclose(g, 0.3 * (7 / 6 - 2.0), rtol=1e-5)  # below target: α grows
  assert jax.grad(pl.entropy_temperature_loss)(log_alpha, log_pi, 7 / 6) == pytest.approx(0, abs=1e-7)
  log_prior = jnp.full(3, -1.5)  # KL estimate 1.5 − 7/6 = 1/3
  g = jax.grad(pl.kl_temperature_loss)(log_alpha, log_pi, log_prior, 0.1)
  np.testing.assert_allclose(g, 0.3 * (0.1 - 1 / 3), rtol=1e-5)  # above target: α grows
  # Alternating exact updates find the α whose Boltzmann policy meets the target.
  def step(carry, _):
    la = carry
    log_pi = values.boltzmann_log_policy(Q, jnp.exp(la))
    pi = jnp.exp(log_pi)
    # Σ_a π(a) log π(a) as a weighted "sample" mean: pass log π scaled by |A| π.
    ent_grad = jax.grad(pl.entropy_temperature_loss)(la, 5 * pi * log_pi, 1.0)
    return la - 0.5 * ent_grad, None
  la, _ = jax.lax.scan(step, jnp.float32(0.0), None, length=400)
  np.testing.assert_allclose(values.entropy(values.boltzmann_log_policy(Q, jnp.exp(la))),
                             1.0, atol=1e-3)


def test_stable_em_and_swap_prior():
  log_pi = jnp.log(jnp.array([0.2, 0.5, 0.3]))
  old = jnp.log(jnp.array([0.4, 0.4, 0.2]))
  q = Q[:3]
  np.testing.assert_allclose(pl.stable_em_loss(log_pi, q, old, 0.7),
                             pl.reverse_kl_loss(log_pi, q, 0.7, old), rtol=1e-6)
  prior = {"w": jnp.zeros(2), "b": jnp.zeros(())}
  policy = {"w": jnp.ones(2), "b": jnp.ones(())}
  swap = jax.jit(pl.swap_prior, static_argnums=3)
  assert float(swap(prior, policy, 3, 2)["b"]) == 0.0
  np.testing.assert_allclose(swap(prior, policy, 4, 2)["w"], 1.0)
  # Iterating exact stable-EM steps: π_j ∝ π_{j−1} exp(Q/τ), i.e. τ/j-Boltzmann.
  tau, lp = 2.0, jnp.full(5, -jnp.log(5.0))
  for _ in range(3):
    lp = _minimise_over_logits(lambda x, lp=lp: pl.categorical_reverse_kl_loss(x, Q, tau, lp))
  np.testing.assert_allclose(jnp.exp(lp), jnp.exp(values.boltzmann_log_policy(Q, tau / 3)),
                             atol=3e-3)


# ------------------------------------------------------------------- extremes


@jax.jit
def _all_losses_and_grads(log_pi, q, tau):
  """Every loss with its gradients, one compile for all (τ, scale) cases."""
  log_prior = jnp.array([-1.0, -jnp.inf, -0.5, -2.0])
  cat_log_pi = jax.nn.log_softmax(jnp.array([-jnp.inf, -0.5, -1.0, -jnp.inf]))
  fns = {
      "rkl": lambda lp, qq: pl.reverse_kl_loss(lp, qq, tau),
      "rkl_score": lambda lp, qq: pl.reverse_kl_score_loss(lp, qq, tau),
      "fkl": lambda lp, qq: pl.forward_kl_loss(lp, qq, tau, log_prior),
      "cat_rkl": lambda lp, qq: pl.categorical_reverse_kl_loss(cat_log_pi + 0 * lp, qq, tau),
      "cat_fkl": lambda lp, qq: pl.categorical_forward_kl_loss(lp, qq, tau, log_prior),
      "traj_fkl": lambda lp, qq: pl.trajectory_forward_kl_loss(lp[None].T, qq[None].T, tau),
      "marg_fkl": lambda lp, qq: pl.marginal_forward_kl_loss(lp[None], qq[None], tau),
      "kl_pg": lambda lp, qq: pl.kl_regularized_pg_loss(lp, jnp.exp(lp), qq, jnp.ones(4), tau),
      "stable_em": lambda lp, qq: pl.stable_em_loss(lp, qq, lp[::-1], tau),
      "mpo": lambda lp, qq: pl.mpo_loss(lp, qq, tau, 0.1)[0],
      "virel": lambda lp, qq: pl.virel_actor_loss(lp, qq, tau),
  }
  return {name: jax.value_and_grad(fn, argnums=(0, 1))(log_pi, q) for name, fn in fns.items()}


@pytest.mark.parametrize("tau", [0.0, 1e-6, 1.0, 1e6])
@pytest.mark.parametrize("scale", [1.0, 1e6])
def test_no_nan_at_extremes(tau, scale):
  q = scale * jnp.array([0.5, -1.0, 0.3, 0.9])
  log_pi = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
  for name, (value, grads) in _all_losses_and_grads(log_pi, q, jnp.float32(tau)).items():
    assert np.isfinite(value), name
    assert all(np.all(np.isfinite(g)) for g in grads), name


def test_hard_limits_at_zero_temperature():
  q = jnp.array([0.5, 2.0, 2.0, 1.0])
  log_pi = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
  # FKL: weights split over the maximisers in proportion to π0/ρ.
  w = -jax.grad(pl.forward_kl_loss)(log_pi, q, 0.0)
  np.testing.assert_allclose(w, [0.0, 0.6, 0.4, 0.0], rtol=1e-5)
  # ... a maximiser outside the prior's support is skipped.
  log_prior = jnp.array([0.0, -jnp.inf, 0.0, 0.0])
  w = -jax.grad(pl.forward_kl_loss)(log_pi, q, 0.0, log_prior)
  np.testing.assert_allclose(w, [0.0, 0.0, 1.0, 0.0], atol=1e-6)
  # and the small-τ limit agrees.
  w_small = -jax.grad(pl.forward_kl_loss)(log_pi, q, 1e-4, log_prior)
  np.testing.assert_allclose(w_small, [0.0, 0.0, 1.0, 0.0], atol=1e-5)
  np.testing.assert_allclose(pl.reverse_kl_loss(log_pi, q, 0.0, log_prior), -jnp.mean(q))
  assert jax.grad(pl.reverse_kl_loss, argnums=2)(log_pi, q, 0.0, log_prior) == 0.0
  # RKL with a zero-mass prior sample is +inf (not NaN) at τ > 0.
  assert pl.reverse_kl_loss(log_pi, q, 1.0, log_prior) == np.inf


# ----------------------------------------------------------------- bad input


BAD_INPUTS = [
    ("log_pi", lambda: pl.reverse_kl_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)))),
    ("q", lambda: pl.forward_kl_loss(jnp.zeros(3), jnp.zeros(3, jnp.int32))),
    ("log_prior", lambda: pl.reverse_kl_score_loss(jnp.zeros(3), jnp.zeros(3), 1.0, jnp.zeros(2))),
    ("log_proposal", lambda: pl.forward_kl_loss(jnp.zeros(3), jnp.zeros(3), 1.0, None, jnp.zeros(4))),
    ("temperature", lambda: pl.forward_kl_loss(jnp.zeros(3), jnp.zeros(3), jnp.ones(3))),
    ("log_pi_t", lambda: pl.trajectory_forward_kl_loss(jnp.zeros(3), jnp.zeros(3))),
    ("log_state_weights", lambda: pl.marginal_forward_kl_loss(
        jnp.zeros((2, 3)), jnp.zeros((2, 3)), 1.0, None, None, jnp.zeros(3))),
    ("log_alpha", lambda: pl.entropy_temperature_loss(jnp.zeros(1), jnp.zeros(3), 0.0)),
    ("log_prior", lambda: pl.kl_temperature_loss(jnp.zeros(()), jnp.zeros(3), jnp.zeros(2), 0.0)),
    ("baseline_t", lambda: pl.kl_regularized_pg_loss(
        jnp.zeros(3), jnp.zeros(3), jnp.zeros(3), jnp.ones(3), 1.0, True, jnp.zeros(2))),
    ("r_t", lambda: pl.kl_regularized_pg_loss(jnp.zeros(3), jnp.zeros(3), jnp.zeros(4), jnp.ones(3))),
    ("q", lambda: pl.mpo_e_step(jnp.zeros((2, 2)), 1.0, 0.1)),
    ("weights", lambda: pl.mpo_m_step_loss(jnp.zeros(3), jnp.zeros(2))),
    ("kl", lambda: pl.lagrange_penalty(jnp.zeros((2, 2)), jnp.zeros(()), 0.1)),
    ("td_error", lambda: pl.virel_temperature(jnp.zeros((), jnp.float32))),
    ("bellman_error", lambda: pl.virel_actor_loss(jnp.zeros(3), jnp.zeros(3), jnp.ones(2))),
]


@pytest.mark.parametrize("name,call", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_naming_the_argument(name, call):
  with pytest.raises(AssertionError, match=f"`{name}`"):
    call()


def test_api_names_are_exported():
  from rlax_inf import divergences, kl_regularized, mpo_ops, virel_ops  # pylint: disable=g-import-not-at-top
  modules = (divergences, kl_regularized, mpo_ops, virel_ops)
  public = [n for n in dir(pl) if n.isidentifier() and not n.startswith("_")]
  assert len(public) == 21, public
  for name in public:
    assert getattr(rlax_inf, name) is getattr(pl, name), name
    assert sum(getattr(m, name, None) is getattr(pl, name) for m in modules) >= 1, name
