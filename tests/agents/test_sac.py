"""SAC / SAC-FKL update on a fixed batch against a hand-written reference of the equations."""

import functools
import math
import types

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlax_inf.agents import _tanh_normal as tanh_normal
from rlax_inf.agents import base
from rlax_inf.agents import sac
from reference_nets import mlp as _mlp  # pylint: disable=g-bad-import-order

OBS, ACT, B = 3, 2, 8
SPEC = types.SimpleNamespace(observation_size=OBS, action_size=ACT, discrete=False,
                             name="toy")


def _actor(p, obs):
  out = _mlp(p, obs)
  return out[..., :ACT], jnp.log1p(jnp.exp(out[..., ACT:])) + 1e-3


def _q(p, obs, a):
  x = jnp.concatenate([obs, a], -1)
  return jnp.stack([_mlp(jax.tree.map(lambda l: l[j], p), x)[..., 0] for j in range(2)])


def _log_prob(u, mean, std):
  """Naive tanh-Gaussian log-density: fine for the moderate u of this test."""
  log_n = -0.5 * ((u - mean) / std) ** 2 - jnp.log(std) - 0.5 * math.log(2 * math.pi)
  return jnp.sum(log_n - jnp.log(1.0 - jnp.tanh(u) ** 2), -1)


def _reference_update(cfg, state, batch, key):
  """The SAC equations written out directly (no rlax_inf calls)."""
  fkl = cfg.policy_loss == "fkl"
  k_next, k_pi = jax.random.split(key)
  alpha = jnp.exp(state.log_alpha)
  obs, nobs = batch.obs, batch.next_obs  # fresh normaliser: identity
  m_t, s_t = _actor(state.actor, nobs)
  u_t = m_t + s_t * jax.random.normal(k_next, m_t.shape)
  v_t = jnp.min(_q(state.target_critic, nobs, jnp.tanh(u_t)), 0) - alpha * _log_prob(u_t, m_t, s_t)
  y = batch.reward + cfg.discount * (1 - batch.terminated) * v_t
  lq = lambda c: 0.5 * jnp.mean((_q(c, obs, batch.action) - y) ** 2)
  critic_loss, g = jax.value_and_grad(lq)(state.critic)
  upd, _ = optax.adam(cfg.critic_lr).update(g, optax.adam(cfg.critic_lr).init(state.critic))
  critic = optax.apply_updates(state.critic, upd)
  n = cfg.num_action_samples

  def la(actor):
    m, s = _actor(actor, obs)
    m, s = m[:, None], s[:, None]
    eps = jax.random.normal(k_pi, (B, n, ACT))
    u = m + s * eps
    if fkl:
      u = jax.lax.stop_gradient(u)
    logp = _log_prob(u, m, s)
    q = jnp.min(_q(critic, jnp.repeat(obs[:, None], n, 1), jnp.tanh(u)), 0)
    if fkl:
      w = jax.nn.softmax(jax.lax.stop_gradient(q / alpha - logp), axis=1)
      return -jnp.mean(jnp.sum(w * logp, 1)), logp
    return jnp.mean(alpha * logp - q), logp

  (actor_loss, logp), g = jax.value_and_grad(la, has_aux=True)(state.actor)
  upd, _ = optax.adam(cfg.actor_lr).update(g, optax.adam(cfg.actor_lr).init(state.actor))
  actor = optax.apply_updates(state.actor, upd)
  g_alpha = alpha * (-jnp.mean(logp) + ACT)  # d/dlogα of α(−log π − H̄), H̄ = −|A|
  log_alpha = state.log_alpha - cfg.alpha_lr * jnp.sign(g_alpha)  # adam's first step
  target = jax.tree.map(lambda t, c: (1 - cfg.polyak) * t + cfg.polyak * c,
                        state.target_critic, critic)
  return dict(critic=critic, actor=actor, log_alpha=log_alpha, target=target,
              critic_loss=critic_loss, actor_loss=actor_loss, entropy=-jnp.mean(logp))


def _batch(key):
  ks = jax.random.split(key, 5)
  terminated = (jax.random.uniform(ks[3], (B,)) < 0.3).astype(jnp.float32)
  return base.Transition(
      obs=jax.random.normal(ks[0], (B, OBS)),
      action=jax.random.uniform(ks[1], (B, ACT), minval=-0.9, maxval=0.9),
      reward=jax.random.normal(ks[2], (B,)), terminated=terminated, done=terminated,
      next_obs=jax.random.normal(ks[4], (B, OBS)))


@pytest.mark.parametrize("policy_loss", ["rkl", "fkl"])
def test_update_matches_reference(policy_loss):
  cfg = sac.SACConfig(hidden=(16, 16), policy_loss=policy_loss,
                      num_action_samples=5 if policy_loss == "fkl" else 1,
                      init_temperature=0.5, polyak=0.1)
  agent = sac.make(cfg, SPEC)
  state = agent.init(jax.random.PRNGKey(0))
  # Make the target critic differ from the online one so the Polyak step is visible.
  state = state.replace(target_critic=jax.tree.map(lambda x: 0.9 * x, state.critic))
  batch, key = _batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(7)
  new, metrics = jax.jit(agent.update)(state, batch, key)
  ref = jax.jit(functools.partial(_reference_update, cfg))(state, batch, key)
  tol = dict(rtol=2e-4, atol=2e-5)
  np.testing.assert_allclose(metrics["critic_loss"], ref["critic_loss"], **tol)
  np.testing.assert_allclose(metrics["actor_loss"], ref["actor_loss"], **tol)
  np.testing.assert_allclose(metrics["entropy"], ref["entropy"], **tol)
  for name, got, want in [("critic", new.critic, ref["critic"]), ("actor", new.actor, ref["actor"]),
                          ("target", new.target_critic, ref["target"])]:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, err_msg=name, **tol), got, want)
  np.testing.assert_allclose(new.log_alpha, ref["log_alpha"], **tol)
  assert int(new.steps) == 1


def test_fkl_and_rkl_differ_only_in_the_actor():
  batch = _batch(jax.random.PRNGKey(2))
  outs = {}
  for loss in ("rkl", "fkl"):
    agent = sac.make(sac.SACConfig(hidden=(8,), policy_loss=loss, num_action_samples=4), SPEC)
    state = agent.init(jax.random.PRNGKey(0))
    outs[loss] = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(3))[0]
  jax.tree.map(np.testing.assert_array_equal, outs["rkl"].critic, outs["fkl"].critic)
  diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), outs["rkl"].actor,
                      outs["fkl"].actor)
  assert max(jax.tree.leaves(diff)) > 0


def test_tanh_normal_log_prob_matches_distrax_and_stays_finite():
  mean = jnp.array([0.3, -1.0, 2.0])
  std = jnp.array([0.5, 1.2, 0.1])
  u = jnp.array([0.1, -2.0, 2.5])
  dist = distrax.Transformed(distrax.MultivariateNormalDiag(mean, std),
                             distrax.Block(distrax.Tanh(), 1))
  np.testing.assert_allclose(tanh_normal.log_prob_pre_tanh(u, mean, std),
                             dist.log_prob(jnp.tanh(u)), rtol=1e-4)
  # Far in the tail tanh(u) rounds to ±1; the pre-tanh form stays finite.
  big = jnp.array([30.0, -40.0, 25.0])
  value, grad = jax.jit(jax.value_and_grad(
      lambda m: tanh_normal.log_prob_pre_tanh(big, m, std)))(mean)
  assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_act_deterministic_is_tanh_mean_and_in_bounds():
  agent = sac.make(sac.SACConfig(hidden=(8,)), SPEC)
  params = agent.policy_params(agent.init(jax.random.PRNGKey(0)))
  obs = jax.random.normal(jax.random.PRNGKey(3), (5, OBS)) * 100
  k = jax.random.PRNGKey(4)
  a_det, extras = agent.act(params, obs, k, True)
  assert extras == {}
  a_det2, _ = agent.act(params, obs, jax.random.PRNGKey(5), True)
  np.testing.assert_array_equal(a_det, a_det2)
  a_sto, _ = agent.act(params, obs, k, False)
  assert a_sto.shape == (5, ACT) and np.all(np.abs(a_sto) <= 1)
  assert not np.allclose(a_sto, a_det)
  # A per-env mask: deterministic rows equal the deterministic action, the others don't.
  mask = jnp.array([True, False, True, False, False])
  a_mix, _ = agent.act(params, obs, k, mask)
  np.testing.assert_array_equal(a_mix[mask], a_det[mask])
  np.testing.assert_array_equal(a_mix[~mask], a_sto[~mask])


def test_sac_refuses_discrete_envs_in_one_line():
  spec = types.SimpleNamespace(observation_size=4, action_size=2, discrete=True,
                               name="cartpole")
  with pytest.raises(base.UnsupportedEnv, match="sac needs continuous actions; 'cartpole'"):
    sac.make(sac.SACConfig(), spec)


def test_fkl_with_one_sample_is_refused():
  with pytest.raises(ValueError, match="num_action_samples >= 2"):
    sac.SACConfig(policy_loss="fkl", num_action_samples=1)


def test_target_entropy_default_and_override():
  assert sac.target_entropy(sac.SACConfig(), 6) == -6.0
  assert sac.target_entropy(sac.SACConfig(target_entropy=-1.5), 6) == -1.5


def test_tanh_normal_agrees_with_rlax_inf_distributions():
  from rlax_inf import distributions
  mean, std = jnp.array([0.3, -1.0]), jnp.array([0.5, 1.2])
  u = jnp.array([4.0, -12.0])
  np.testing.assert_allclose(
      tanh_normal.log_prob_pre_tanh(u, mean, std),
      distributions.TanhGaussian(mean, std).log_prob_from_pre_tanh(u), rtol=1e-5)


def test_layer_norm_critics_match_brax_training_q_network():
  """`critic_layer_norm`: the critics equal brax.training's MLP(layer_norm=True), same weights."""
  from brax.training import networks as brax_networks  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import networks  # pylint: disable=g-import-not-at-top
  hidden = (8, 5)
  net = networks.Critics(hidden, 2, layer_norm=True)
  params = net.init(jax.random.PRNGKey(0), OBS, ACT)
  # LayerNorm starts as scale 1, bias 0; move them so the check sees them.
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(len(str(path))), x.shape)
      if "LayerNorm" in str(path) else x, params)
  obs, action = jax.random.normal(jax.random.PRNGKey(1), (B, OBS)), jnp.full((B, ACT), 0.2)
  q = net.apply(params, obs, action)
  brax_mlp = brax_networks.MLP(layer_sizes=hidden + (1,), layer_norm=True)
  for j in range(2):
    p = jax.tree.map(lambda l, j=j: l[j], params)["params"]
    renamed = {f"hidden_{i}": p[f"Dense_{i}"] for i in range(3)}
    renamed.update({f"LayerNorm_{i}": p[f"LayerNorm_{i}"] for i in range(2)})
    expected = brax_mlp.apply({"params": renamed}, jnp.concatenate([obs, action], -1))[..., 0]
    np.testing.assert_allclose(q[j], expected, rtol=1e-5, atol=1e-6)
  # Off by default: the critic parameters (and old checkpoints) are unchanged.
  plain = networks.Critics(hidden, 2).init(jax.random.PRNGKey(0), OBS, ACT)
  assert set(plain["params"]) == {"Dense_0", "Dense_1", "Dense_2"}


def test_sac_with_layer_norm_critics_updates_finitely():
  cfg = sac.SACConfig(hidden=(16, 16), critic_layer_norm=True)
  agent = sac.make(cfg, SPEC)
  state = agent.init(jax.random.PRNGKey(0))
  assert "LayerNorm_0" in state.critic["params"] and "LayerNorm_0" not in state.actor["params"]
  new_state, metrics = jax.jit(agent.update)(state, _batch(jax.random.PRNGKey(1)),
                                             jax.random.PRNGKey(2))
  assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(metrics))
  moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(),
                       state.critic["params"]["LayerNorm_0"],
                       new_state.critic["params"]["LayerNorm_0"])
  assert max(jax.tree.leaves(moved)) > 0  # the LayerNorm scale/bias are trained
