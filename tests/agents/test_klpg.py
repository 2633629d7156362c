"""KL-regularised policy gradient: returns by hand, the update against a reference, stable EM."""

import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rlax_inf
from rlax_inf.agents import base
from rlax_inf.agents import klpg
from reference_nets import mlp as _mlp  # pylint: disable=g-bad-import-order

OBS, B, T = 3, 3, 5
HIDDEN = (8, 8)
DISCRETE = types.SimpleNamespace(name="d", observation_size=OBS, action_size=3, discrete=True)
CONTINUOUS = types.SimpleNamespace(name="c", observation_size=OBS, action_size=2,
                                   discrete=False)
# Within one rollout: a truncation after t = 1, a termination after t = 3 (env index 0),
# a termination at the cut (env index 1), nothing inside (env index 2).
TERMINATED = np.array([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], np.float32)
DONE = np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], np.float32)


# --- returns and advantages by hand ------------------------------------------

@pytest.mark.parametrize("long_term", [True, False])
def test_returns_with_truncation_termination_and_cut_by_hand(long_term):
  g, lam, tau = 0.9, 0.8, 0.5
  r = [1.0, 2.0, 3.0, 4.0, 5.0]
  v = [0.3, -0.2, 0.5, 1.0, 0.7]  # V(s_t)
  # V(s'_t) = V(s_{t+1}) inside an episode; s'_1 is the truncated episode's true next
  # observation, s'_3 a terminal state (its value must not count), s'_4 the cut.
  vn = [v[1], 2.0, v[3], 9.0, 1.5]
  kl = [0.2, 0.1, 0.4, 0.3, 0.6]
  terminated = [0.0, 0.0, 0.0, 1.0, 0.0]
  done = [0.0, 1.0, 0.0, 1.0, 0.0]
  reg = [tau * k if long_term else 0.0 for k in kl]
  # Soft λ-returns for V(s_t), target of V including its own state's −ℓτKL.
  y4 = r[4] - reg[4] + g * vn[4]  # the cut: bootstrap from s'_4
  y3 = r[3] - reg[3]  # terminated: no bootstrap
  y2 = r[2] - reg[2] + g * ((1 - lam) * vn[2] + lam * y3)
  y1 = r[1] - reg[1] + g * vn[1]  # truncated: bootstrap from s'_1, nothing crosses
  y0 = r[0] - reg[0] + g * ((1 - lam) * vn[0] + lam * y1)
  # GAE of the soft TD residuals.
  d = [r[t] - reg[t] + g * (1 - terminated[t]) * vn[t] - v[t] for t in range(5)]
  adv = [d[0] + g * lam * d[1], d[1], d[2] + g * lam * d[3], d[3], d[4]]

  f = lambda x: jnp.asarray(x, jnp.float32)
  x_t, pg_discount_t, y = klpg.advantages_and_targets(
      f(r), f(terminated), f(done), f(v), f(vn), f(kl), tau, long_term, g, lam)
  np.testing.assert_allclose(y, [y0, y1, y2, y3, y4], rtol=1e-5)
  np.testing.assert_allclose(y, np.array(adv) + np.array(v), rtol=1e-5)  # y = Â + V
  # kl_regularized_pg_loss on the residuals: d loss / d log π_t = −Â_t.
  grad = jax.grad(rlax_inf.kl_regularized_pg_loss)(
      jnp.zeros(5), f(kl), x_t, pg_discount_t, tau, long_term)
  np.testing.assert_allclose(grad, -np.array(adv), rtol=1e-5, atol=1e-6)


# --- the update against the equations written out ------------------------------


def _reference_policy(discrete, num_actions):
  """(log π(a|s), KL(π ‖ π0), H) written out: categorical or tanh-Gaussian."""
  if discrete:
    def terms(actor, prior, obs, action, extras):
      log_p = jax.nn.log_softmax(_mlp(actor, obs), -1)
      if prior is None:
        log_q = -math.log(num_actions) * jnp.ones_like(log_p)
      else:
        log_q = jax.nn.log_softmax(_mlp(prior, obs), -1)
      p = jnp.exp(log_p)
      log_pi = jnp.sum(log_p * jax.nn.one_hot(action, num_actions), -1)
      return log_pi, jnp.sum(p * (log_p - log_q), -1), -jnp.sum(p * log_p, -1)
    return terms

  def gaussian(params, obs):
    out = _mlp(params, obs)
    return out[..., :num_actions], jnp.log1p(jnp.exp(out[..., num_actions:])) + 1e-3

  def terms(actor, prior, obs, action, extras):
    del action
    m, s = gaussian(actor, obs)
    m0, s0 = (jnp.zeros_like(m), jnp.ones_like(s)) if prior is None else gaussian(prior, obs)
    u = extras["pre_tanh"]
    log_n = -0.5 * ((u - m) / s) ** 2 - jnp.log(s) - 0.5 * math.log(2 * math.pi)
    log_pi = jnp.sum(log_n - jnp.log(1.0 - jnp.tanh(u) ** 2), -1)
    kl = jnp.sum(jnp.log(s0 / s) + (s ** 2 + (m - m0) ** 2) / (2 * s0 ** 2) - 0.5, -1)
    ent = jnp.sum(jnp.log(s) + 0.5 * math.log(2 * math.pi * math.e), -1)
    return log_pi, kl, ent
  return terms


def _reference_update(cfg, spec, state, batch):
  """The equations of the module docstring, one loop per rollout (no rlax_inf calls)."""
  terms = _reference_policy(spec.discrete, spec.action_size)
  g, lam, tau = cfg.discount, cfg.td_lambda, cfg.temperature
  ell = 1.0 if cfg.long_term else 0.0
  obs, nobs = batch.obs, batch.next_obs  # fresh normaliser: the identity
  v = _mlp(state.value, obs)[..., 0]
  vn = _mlp(state.value, nobs)[..., 0]
  r = cfg.reward_scale * batch.reward

  def policy_loss(actor):
    log_pi, kl, ent = terms(actor, state.prior, obs, batch.action, batch.extras)
    k = jax.lax.stop_gradient(kl)
    w = jax.lax.stop_gradient(jnp.minimum(1.0, jnp.exp(log_pi - batch.extras["log_prob"])))
    delta = r - ell * tau * k + g * (1 - batch.terminated) * vn - v
    adv, ys = [], []
    a_next, y_next = jnp.zeros(B), jnp.zeros(B)
    for t in reversed(range(T)):  # vectorised over the B rollouts
      cont = 0.0 if t == T - 1 else 1.0 - batch.done[:, t]
      a_next = delta[:, t] + g * lam * cont * a_next
      lam_t = lam * cont
      y_next = (r[:, t] - ell * tau * k[:, t] + g * (1 - batch.terminated[:, t])
                * ((1 - lam_t) * vn[:, t] + lam_t * y_next))
      adv.insert(0, a_next)
      ys.insert(0, y_next)
    adv, y = jnp.stack(adv, 1), jnp.stack(ys, 1)
    loss = jnp.mean(jnp.sum(-w * adv * log_pi + tau * kl, 1)) / T
    return loss - cfg.entropy_cost * jnp.mean(ent), y

  (p_loss, y), grad = jax.value_and_grad(policy_loss, has_aux=True)(state.actor)
  tx = optax.adam(cfg.policy_lr)
  upd, _ = tx.update(grad, tx.init(state.actor))
  actor = optax.apply_updates(state.actor, upd)
  v_loss, grad = jax.value_and_grad(
      lambda p: 0.5 * jnp.mean((_mlp(p, obs)[..., 0] - y) ** 2))(state.value)
  tx = optax.adam(cfg.value_lr)
  upd, _ = tx.update(grad, tx.init(state.value))
  return actor, optax.apply_updates(state.value, upd), p_loss, v_loss


@functools.lru_cache(maxsize=None)
def _agent(cfg, discrete):
  """(agent, jitted init, act, update, rollout): one compilation per config.

  Eager flax init and eager references dispatch hundreds of small ops, each
  compiled once; jitting them is several times quicker on this CPU.
  """
  agent = klpg.make(cfg, DISCRETE if discrete else CONTINUOUS)
  act = jax.jit(agent.act)
  rollout = jax.jit(lambda state, key: _rollout(agent, act, state, key))
  return agent, jax.jit(agent.init), act, jax.jit(agent.update), rollout


def _rollout(agent, act, state, key):
  """A [B, T] batch with the agent's own extras and perturbed behaviour log-probs."""
  ks = jax.random.split(key, 5)
  obs = jax.random.normal(ks[0], (B, T + 1, OBS))
  action, extras = act(agent.policy_params(state), obs[:, :T].reshape(B * T, OBS), ks[1],
                       False)
  extras = jax.tree.map(lambda x: x.reshape((B, T) + x.shape[1:]), extras)
  # Behaviour ≠ π: importance weights on both sides of the truncation at 1.
  extras["log_prob"] = extras["log_prob"] + 0.3 * jax.random.normal(ks[2], (B, T))
  next_obs = obs[:, 1:].at[0, 1].set(jax.random.normal(ks[3], (OBS,)))  # truncation
  return base.Transition(
      obs=obs[:, :T], action=action.reshape((B, T) + action.shape[1:]),
      reward=jax.random.normal(ks[4], (B, T)), terminated=jnp.asarray(TERMINATED),
      done=jnp.asarray(DONE), next_obs=next_obs, extras=extras)


# One config per action space, shared by the tests below (one compilation each):
# discrete with the long-term KL to the uniform prior, continuous with the
# instantaneous KL to the stable-EM prior refreshed every 2 updates.
CONFIGS = {
    True: klpg.KLPGConfig(hidden=HIDDEN, long_term=True, stable_em=False, temperature=0.3,
                          entropy_cost=0.05, max_grad_norm=None, reward_scale=2.0),
    False: klpg.KLPGConfig(hidden=HIDDEN, long_term=False, stable_em=True, prior_period=2,
                           temperature=0.3, entropy_cost=0.05, max_grad_norm=None,
                           reward_scale=2.0),
}


@pytest.mark.parametrize("discrete", [True, False])
def test_update_matches_reference(discrete):
  cfg = CONFIGS[discrete]
  stable_em = cfg.stable_em
  spec = DISCRETE if discrete else CONTINUOUS
  agent, init, _, update, rollout = _agent(cfg, discrete)
  state = init(jax.random.PRNGKey(0))
  if stable_em:  # a prior that differs from the policy
    state = state.replace(prior=jax.tree.map(lambda x: 0.7 * x, state.prior))
  batch = rollout(state, jax.random.PRNGKey(1))
  new, metrics = update(state, batch, jax.random.PRNGKey(2))
  actor, value, p_loss, v_loss = jax.jit(functools.partial(_reference_update, cfg, spec))(
      state, batch)
  np.testing.assert_allclose(metrics["policy_loss"], p_loss, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(metrics["value_loss"], v_loss, rtol=1e-4, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               new.actor, actor)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               new.value, value)
  assert 0.0 < float(metrics["importance_weight"]) < 1.0


# --- stable EM: the prior is refreshed every K updates ----------------------------

def test_swap_prior_refreshes_every_k_updates():
  cfg = CONFIGS[False]
  k = cfg.prior_period
  _, init, _, update, rollout = _agent(cfg, False)
  state = init(jax.random.PRNGKey(0))
  jax.tree.map(np.testing.assert_array_equal, state.prior, state.actor)
  batch = rollout(state, jax.random.PRNGKey(1))
  for n in range(1, 6):
    prev_prior = state.prior
    state, _ = update(state, batch, jax.random.PRNGKey(n))
    expected = state.actor if n % k == 0 else prev_prior
    jax.tree.map(np.testing.assert_array_equal, state.prior, expected)
    if n % k:  # between refreshes the prior lags the moving policy
      assert not np.allclose(jax.tree.leaves(state.prior)[0], jax.tree.leaves(state.actor)[0])
  assert int(state.steps) == 5


# --- shapes and dtypes under jit ------------------------------------------------

@pytest.mark.parametrize("discrete", [True, False])
def test_shapes_and_dtypes_under_jit(discrete):
  cfg = CONFIGS[discrete]
  agent, init, act, update, rollout = _agent(cfg, discrete)
  assert agent.needs == base.Needs(base.ON_POLICY, cfg.unroll_length,
                                   base.DISCRETE if discrete else base.CONTINUOUS)
  state = init(jax.random.PRNGKey(0))
  obs = jax.random.normal(jax.random.PRNGKey(1), (B * T, OBS))
  params = agent.policy_params(state)
  a, extras = act(params, obs, jax.random.PRNGKey(2), False)
  a_det, _ = act(params, obs, jax.random.PRNGKey(3), True)
  a_det2, _ = act(params, obs, jax.random.PRNGKey(4), jnp.asarray(True))  # traced flag
  np.testing.assert_array_equal(a_det, a_det2)
  mask = jnp.arange(B * T) < 4  # per-env mask, as the shared evaluation passes
  a_mix, _ = act(params, obs, jax.random.PRNGKey(2), mask)
  np.testing.assert_array_equal(a_mix[:4], a_det[:4])
  np.testing.assert_array_equal(a_mix[4:], a[4:])
  if discrete:
    assert a.shape == (B * T,) and a.dtype == jnp.int32
    assert set(extras) == {"log_prob"}
    assert int(a.min()) >= 0 and int(a.max()) < DISCRETE.action_size
  else:
    assert a.shape == (B * T, 2) and a.dtype == jnp.float32
    assert extras["pre_tanh"].shape == (B * T, 2)
    np.testing.assert_allclose(a, jnp.tanh(extras["pre_tanh"]), rtol=1e-6)
    assert float(jnp.max(jnp.abs(a))) <= 1.0
  assert extras["log_prob"].shape == (B * T,) and extras["log_prob"].dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(extras["log_prob"])))
  batch = rollout(state, jax.random.PRNGKey(5))
  new, metrics = update(state, batch, jax.random.PRNGKey(6))
  assert jax.tree.structure(new) == jax.tree.structure(state)
  jax.tree.map(lambda x, y: (x.shape, x.dtype) == (y.shape, y.dtype) or pytest.fail(
      f"{x.shape} {x.dtype} != {y.shape} {y.dtype}"), new, state)
  for name, m in metrics.items():
    assert m.shape == () and m.dtype == jnp.float32, name
    assert bool(jnp.isfinite(m)), name
  assert (state.prior is None) == (not cfg.stable_em)


def test_config_checks():
  with pytest.raises(ValueError, match="prior_period"):
    klpg.KLPGConfig(prior_period=0)
  with pytest.raises(ValueError, match="temperature"):
    klpg.KLPGConfig(temperature=-1.0)
