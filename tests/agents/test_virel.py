"""VIREL update on a fixed batch against a hand-written reference; ε_ω follows the MSBE."""

import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlax_inf.agents import base
from rlax_inf.agents import virel
from reference_nets import mlp as _mlp  # pylint: disable=g-bad-import-order

OBS, ACT, B = 3, 2, 8
SPEC = types.SimpleNamespace(observation_size=OBS, action_size=ACT, discrete=False,
                             name="toy")
TOL = dict(rtol=2e-4, atol=2e-5)


def _actor(p, obs):
  out = _mlp(p, obs)
  return out[..., :ACT], jnp.log1p(jnp.exp(out[..., ACT:])) + 1e-3


def _q(p, obs, a, j):
  x = jnp.concatenate([obs, a], -1)
  return jnp.stack([_mlp(jax.tree.map(lambda l: l[i], p), x)[..., 0] for i in range(j)])


def _log_prob(u, mean, std):
  """Naive tanh-Gaussian log-density: fine for the moderate u of this test."""
  log_n = -0.5 * ((u - mean) / std) ** 2 - jnp.log(std) - 0.5 * math.log(2 * math.pi)
  return jnp.sum(log_n - jnp.log(1.0 - jnp.tanh(u) ** 2), -1)


def _td(cfg, state, batch, k_next):
  """δ_j = r + γ (1 − d) min_i Q̄_i(s', a') − Q_j(s, a), a' ~ π(·|s') [J, B]."""
  j = cfg.num_critics
  m_t, s_t = _actor(state.actor, batch.next_obs)
  a_t = jnp.tanh(m_t + s_t * jax.random.normal(k_next, m_t.shape))
  y = cfg.reward_scale * batch.reward + cfg.discount * (1 - batch.terminated) * jnp.min(
      _q(state.target_critic, batch.next_obs, a_t, j), 0)
  return y - _q(state.critic, batch.obs, batch.action, j)


def _reference_update(cfg, state, batch, key):
  """The VIREL equations written out directly (no rlax_inf calls)."""
  k_next, k_pi = jax.random.split(key)
  j, n = cfg.num_critics, cfg.num_action_samples
  td = _td(cfg, state, batch, k_next)
  y = jax.lax.stop_gradient(td + _q(state.critic, batch.obs, batch.action, j))
  lq = lambda c: 0.5 * jnp.mean((y - _q(c, batch.obs, batch.action, j)) ** 2)
  critic_loss, g = jax.value_and_grad(lq)(state.critic)
  tx = optax.adam(cfg.critic_lr)
  critic = optax.apply_updates(state.critic, tx.update(g, tx.init(state.critic))[0])
  eps_omega = cfg.temperature_scale * jnp.mean(td ** 2)

  def la(actor):
    m, s = _actor(actor, batch.obs)
    m, s = m[:, None], s[:, None]
    u = m + s * jax.random.normal(k_pi, (B, n, ACT))
    logp = _log_prob(u, m, s)
    q = jnp.min(_q(critic, jnp.repeat(batch.obs[:, None], n, 1), jnp.tanh(u), j), 0)
    return jnp.mean(eps_omega * logp - q), logp

  (actor_loss, logp), g = jax.value_and_grad(la, has_aux=True)(state.actor)
  tx = optax.adam(cfg.actor_lr)
  actor = optax.apply_updates(state.actor, tx.update(g, tx.init(state.actor))[0])
  target = jax.tree.map(lambda t, c: (1 - cfg.polyak) * t + cfg.polyak * c,
                        state.target_critic, critic)
  return dict(critic=critic, actor=actor, target=target, critic_loss=critic_loss,
              actor_loss=actor_loss, temperature=eps_omega, msbe=jnp.mean(td ** 2),
              entropy=-jnp.mean(logp))


def _batch(key, reward_scale=1.0):
  ks = jax.random.split(key, 5)
  terminated = (jax.random.uniform(ks[3], (B,)) < 0.3).astype(jnp.float32)
  return base.Transition(
      obs=jax.random.normal(ks[0], (B, OBS)),
      action=jax.random.uniform(ks[1], (B, ACT), minval=-0.9, maxval=0.9),
      reward=reward_scale * jax.random.normal(ks[2], (B,)), terminated=terminated,
      done=terminated, next_obs=jax.random.normal(ks[4], (B, OBS)))


def _state(agent):
  state = agent.init(jax.random.PRNGKey(0))
  # A target critic unlike the online one, so that the Polyak step is visible.
  return state.replace(target_critic=jax.tree.map(lambda x: 0.9 * x, state.critic))


@pytest.mark.parametrize("num_critics, samples, scale", [(2, 1, 0.5), (1, 4, 2.0), (2, 3, 0.0)])
def test_update_matches_reference(num_critics, samples, scale):
  cfg = virel.VIRELConfig(hidden=(16, 16), num_critics=num_critics, num_action_samples=samples,
                          temperature_scale=scale, polyak=0.1, reward_scale=2.0)
  agent = virel.make(cfg, SPEC)
  state = _state(agent)
  batch, key = _batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(7)
  new, metrics = jax.jit(agent.update)(state, batch, key)
  ref = jax.jit(functools.partial(_reference_update, cfg))(state, batch, key)
  for k in ("critic_loss", "actor_loss", "temperature", "msbe", "entropy"):
    np.testing.assert_allclose(metrics[k], ref[k], err_msg=k, **TOL)
  for name, got, want in [("critic", new.critic, ref["critic"]), ("actor", new.actor, ref["actor"]),
                          ("target", new.target_critic, ref["target"])]:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, err_msg=name, **TOL), got, want)
  assert int(new.steps) == 1


def test_temperature_follows_the_msbe():
  """ε_ω = c · MSBE of the batch: 0 for an exact critic, ×k² for errors ×k."""
  cfg = virel.VIRELConfig(hidden=(16,), temperature_scale=0.25, reward_scale=1.0)
  agent = virel.make(cfg, SPEC)
  state = _state(agent)
  update = jax.jit(agent.update)
  key = jax.random.PRNGKey(9)
  k_next, _ = jax.random.split(key)
  batch = _batch(jax.random.PRNGKey(3))
  td = _td(cfg, state, batch, k_next)  # [2, B]
  # Rewards that make the first critic exact: δ_0 = 0 and δ_1 = Q_0 − Q_1.
  exact = batch.replace(reward=batch.reward - td[0])
  temps = {}
  for k, extra in [(0, 0.0), (1, 1.0), (3, 3.0)]:
    b = exact.replace(reward=exact.reward + extra)
    temps[k] = float(update(state, b, key)[1]["temperature"])
    d = _td(cfg, state, b, k_next)
    np.testing.assert_allclose(temps[k], 0.25 * np.mean(np.square(d)), rtol=1e-4)
  assert temps[0] < temps[1] < temps[3]
  # One critic, made exact: ε_ω = 0 and the actor's loss is the greedy −mean Q.
  cfg1 = virel.VIRELConfig(hidden=(16,), num_critics=1, temperature_scale=0.25)
  agent1 = virel.make(cfg1, SPEC)
  state1 = _state(agent1)
  td1 = _td(cfg1, state1, batch, k_next)
  _, m = jax.jit(agent1.update)(state1, batch.replace(reward=batch.reward - td1[0]), key)
  np.testing.assert_allclose(m["temperature"], 0.0, atol=1e-9)
  np.testing.assert_allclose(m["msbe"], 0.0, atol=1e-9)


def test_learning_drives_the_temperature_down_on_a_fixed_batch():
  """Repeated updates on one batch fit the critic; ε_ω = c · MSBE falls with it."""
  cfg = virel.VIRELConfig(hidden=(32,), num_critics=1, temperature_scale=1.0, critic_lr=3e-3,
                          discount=0.0)  # γ = 0: the Bellman targets are the rewards
  agent = virel.make(cfg, SPEC)
  state = agent.init(jax.random.PRNGKey(0))
  batch = _batch(jax.random.PRNGKey(4))

  def body(state, k):
    state, m = agent.update(state, batch, k)
    return state, (m["temperature"], m["msbe"])

  _, (temps, msbe) = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(
      jax.random.PRNGKey(5), 300)))(state)
  np.testing.assert_allclose(temps, msbe, rtol=1e-5)
  assert float(temps[-1]) < 0.05 * float(temps[0])


def test_act_deterministic_is_tanh_mean():
  agent = virel.make(virel.VIRELConfig(hidden=(8,)), SPEC)
  params = agent.policy_params(agent.init(jax.random.PRNGKey(0)))
  obs = jax.random.normal(jax.random.PRNGKey(3), (5, OBS))
  a, extras = agent.act(params, obs, jax.random.PRNGKey(4), True)
  assert extras == {}
  np.testing.assert_allclose(a, jnp.tanh(_actor(params.actor, obs)[0]), **TOL)


@pytest.mark.parametrize("kw, field", [
    (dict(temperature_scale=-1e-3), "temperature_scale"),
    (dict(temperature_scale=float("nan")), "temperature_scale"),
    (dict(num_action_samples=0), "num_action_samples"), (dict(num_critics=0), "num_critics"),
    (dict(polyak=0.0), "polyak"),
])
def test_bad_config_is_refused_in_one_line(kw, field):
  with pytest.raises(ValueError) as e:
    virel.VIRELConfig(**kw)
  msg = str(e.value)
  assert msg.startswith(field + " ") and "\n" not in msg


def test_virel_refuses_discrete_envs_in_one_line():
  spec = types.SimpleNamespace(observation_size=4, action_size=2, discrete=True,
                               name="cartpole")
  with pytest.raises(base.UnsupportedEnv, match="virel needs continuous actions; 'cartpole'"):
    virel.make(virel.VIRELConfig(), spec)
