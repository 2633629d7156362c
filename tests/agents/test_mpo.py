"""MPO update on a fixed batch against a hand-written reference; E-step against rlax."""

import dataclasses
import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import rlax

from rlax_inf.agents import base
from rlax_inf.agents import mpo
from rlax_inf.agents import networks
from reference_nets import mlp as _mlp  # pylint: disable=g-bad-import-order

OBS, ACT, B, T, N = 3, 2, 4, 3, 5
SPEC = types.SimpleNamespace(observation_size=OBS, action_size=ACT, discrete=False,
                             name="toy")
TOL = dict(rtol=2e-4, atol=2e-5)


def _actor(p, obs):
  out = _mlp(p, obs)
  return out[..., :ACT], jnp.log1p(jnp.exp(out[..., ACT:])) + 1e-3


def _q_all(p, obs, a):
  """Every critic's Q [J, ...]."""
  x = jnp.concatenate([obs, a], -1)
  return jax.vmap(lambda layer: _mlp(layer, x)[..., 0])(p)


def _q(p, obs, a):
  """min_j Q_j: the value of the targets and the E-step."""
  return jnp.min(_q_all(p, obs, a), 0)


def _log_normal(x, mean, std):
  return jnp.sum(-0.5 * ((x - mean) / std) ** 2 - jnp.log(std) - 0.5 * math.log(2 * math.pi),
                 -1)


def _log_pi(u, mean, std):
  """Naive tanh-Gaussian log-density: fine for the moderate u of this test."""
  return _log_normal(u, mean, std) - jnp.sum(jnp.log(1.0 - jnp.tanh(u) ** 2), -1)


def _samples(key, mean, std):
  """u [..., N, A] = μ + σ ε, as the agent draws them (one normal draw of the full shape)."""
  eps = jax.random.normal(key, mean.shape[:-1] + (N, ACT))
  return mean[..., None, :] + std[..., None, :] * eps


def _critic_errors(cfg, state, batch, key):
  """TD or Retrace errors of the online critic, written out (τ = critic_temperature)."""
  tau = cfg.critic_temperature
  m_t, s_t = _actor(state.target_actor, batch.next_obs)
  u_t = _samples(key, m_t, s_t)
  nobs_n = jnp.repeat(batch.next_obs[..., None, :], N, -2)
  v_t = jnp.mean(_q(state.target_critic, nobs_n, jnp.tanh(u_t))
                 - tau * _log_pi(u_t, m_t[..., None, :], s_t[..., None, :]), -1)
  r = cfg.reward_scale * batch.reward
  disc = cfg.discount * (1 - batch.terminated)
  q = _q_all(state.critic, batch.obs, batch.action)  # [J, ...]: each critic its own error
  if cfg.critic == "td":
    return r + disc * v_t - q, q
  # Retrace by its recursion, one sequence at a time.
  a_next = batch.action[:, 1:]
  u_next = jnp.arctanh(a_next)
  log_pi_b = _log_pi(u_next, m_t[:, :-1], s_t[:, :-1])
  log_mu_b = batch.extras["log_prob"][:, 1:]
  q_b = _q(state.target_critic, batch.next_obs[:, :-1], a_next)
  c = cfg.retrace_lambda * (1 - batch.done[:, :-1]) * jnp.minimum(1.0, jnp.exp(log_pi_b - log_mu_b))
  td = []
  for b in range(B):
    g = r[b, T - 1] + disc[b, T - 1] * v_t[b, T - 1]
    gs = [g]
    for i in range(T - 2, -1, -1):
      g = r[b, i] + disc[b, i] * (v_t[b, i] + c[b, i] * (g - q_b[b, i]))
      gs.append(g)
    td.append(jnp.stack(gs[::-1]))
  return jnp.stack(td) - q, q


def _reference_update(cfg, state, batch, key):
  """The MPO equations written out directly (no rlax_inf calls)."""
  k_critic, k_policy = jax.random.split(key)
  td, _ = _critic_errors(cfg, state, batch, k_critic)
  lq = lambda c: 0.5 * jnp.mean(_critic_errors(cfg, state.replace(critic=c), batch,
                                               k_critic)[0] ** 2)
  critic_loss, g = jax.value_and_grad(lq)(state.critic)
  tx = optax.adam(cfg.critic_lr)
  critic = optax.apply_updates(state.critic, tx.update(g, tx.init(state.critic))[0])

  obs = batch.obs.reshape(-1, OBS)
  m_old, s_old = _actor(state.target_actor, obs)
  u = _samples(k_policy, m_old, s_old)  # [S, N, A]
  q = _q(state.target_critic, jnp.repeat(obs[:, None], N, 1), jnp.tanh(u))  # [S, N]

  def loss(params):
    actor, (eta, a_mu, a_sigma, eta_p) = params
    m, s = _actor(actor, obs)
    sg = jax.lax.stop_gradient
    w = sg(jax.nn.softmax(q / eta, axis=1))
    dual = eta * cfg.epsilon + eta * (jax.nn.logsumexp(q / eta, axis=1) - math.log(N))
    loglik = _log_normal(u, m[:, None], s_old[:, None]) + _log_normal(u, m_old[:, None], s[:, None])
    kl_mu = jnp.sum((m - m_old) ** 2 / (2 * s_old ** 2), -1)
    kl_sigma = 0.5 * jnp.sum(s_old ** 2 / s ** 2 - 1 + 2 * jnp.log(s / s_old), -1)
    per_state = (-jnp.sum(w * loglik, 1) + dual
                 + sg(a_mu) * kl_mu + a_mu * (cfg.epsilon_mean - sg(kl_mu))
                 + sg(a_sigma) * kl_sigma + a_sigma * (cfg.epsilon_stddev - sg(kl_sigma)))
    if cfg.action_penalty_epsilon > 0:  # MO-MPO's penalty: a second E-step on the cost
      b = cfg.action_penalty_bound
      cost = -jnp.sqrt(jnp.sum((u - jnp.clip(u, -b, b)) ** 2, -1))  # [S, N]
      w_p = sg(jax.nn.softmax(cost / eta_p, axis=1))
      per_state = (per_state - jnp.sum(w_p * loglik, 1) + eta_p * cfg.action_penalty_epsilon
                   + eta_p * (jax.nn.logsumexp(cost / eta_p, axis=1) - math.log(N)))
    return jnp.mean(per_state), (kl_mu, kl_sigma)

  d = state.duals
  params = (state.actor, (d.temperature, d.alpha_mean, d.alpha_stddev, d.penalty_temperature))
  (policy_loss, (kl_mu, _)), (g_actor, g_duals) = jax.value_and_grad(loss, has_aux=True)(params)
  tx = optax.adam(cfg.actor_lr)
  actor = optax.apply_updates(state.actor, tx.update(g_actor, tx.init(state.actor))[0])
  # Adam's first step is −lr · g / (|g| + 1e-8).
  duals = [x - cfg.dual_lr * gx / (jnp.abs(gx) + 1e-8) for x, gx in zip(params[1], g_duals)]
  if cfg.target_update_period == 1:
    targets = actor, critic
  else:
    avg = lambda new, old: jax.tree.map(lambda n, o: (1 - cfg.polyak) * o + cfg.polyak * n,
                                        new, old)
    targets = avg(actor, state.target_actor), avg(critic, state.target_critic)
  return dict(critic=critic, actor=actor, duals=duals, targets=targets, critic_loss=critic_loss,
              loss=policy_loss, kl_mean=jnp.mean(kl_mu), td_abs=jnp.mean(jnp.abs(td)))


def _batch(key, shape, agent, state):
  ks = jax.random.split(key, 6)
  obs = jax.random.normal(ks[0], shape + (OBS,))
  action, extras = agent.act(agent.policy_params(state), obs.reshape(-1, OBS), ks[1], False)
  action = jnp.clip(action, -0.95, 0.95)  # moderate pre-tanh values for the naive reference
  unflat = lambda x: x.reshape(shape + x.shape[1:])
  terminated = (jax.random.uniform(ks[3], shape) < 0.25).astype(jnp.float32)
  done = jnp.maximum(terminated, (jax.random.uniform(ks[4], shape) < 0.2).astype(jnp.float32))
  return base.Transition(obs=obs, action=unflat(action), reward=jax.random.normal(ks[2], shape),
                         terminated=terminated, done=done,
                         next_obs=jax.random.normal(ks[5], shape + (OBS,)),
                         extras=jax.tree.map(unflat, extras))


def _perturbed_state(agent):
  state = agent.init(jax.random.PRNGKey(0))
  # Targets that differ from the online networks make the KLs and the Polyak step visible.
  return state.replace(
      target_actor=jax.tree.map(lambda x: 0.8 * x, state.actor),
      target_critic=jax.tree.map(lambda x: 0.9 * x, state.critic),
      duals=mpo.Duals(jnp.asarray(0.7), jnp.asarray(2.0), jnp.asarray(30.0), jnp.asarray(0.4)))


# The default set keeps two cases that between them cover td and retrace, τ > 0, hard and
# Polyak targets, two critics and the action penalty; the rest run under `make test-slow`.
_slow = pytest.mark.slow
@pytest.mark.parametrize("critic, tau, period, critics, penalty", [
    pytest.param("td", 0.0, 1, 1, 0.0, marks=_slow), pytest.param("td", 0.3, 0, 1, 0.0, marks=_slow),
    pytest.param("retrace", 0.0, 0, 1, 0.0, marks=_slow),
    pytest.param("retrace", 0.2, 1, 1, 0.0, marks=_slow),
    pytest.param("td", 0.0, 0, 2, 0.0, marks=_slow), ("retrace", 0.2, 0, 2, 0.0),
    ("td", 0.0, 1, 2, 0.05)])
def test_update_matches_reference(critic, tau, period, critics, penalty):
  # action_penalty_bound 0.3: some pre-tanh samples lie outside it, so the penalty acts.
  cfg = mpo.MPOConfig(hidden=(16,), critic=critic, retrace_length=T, num_action_samples=N,
                      critic_temperature=tau, target_update_period=period, polyak=0.1,
                      reward_scale=1.5, retrace_lambda=0.9, num_critics=critics,
                      action_penalty_epsilon=penalty, action_penalty_bound=0.3)
  agent = mpo.make(cfg, SPEC)
  state = _perturbed_state(agent)
  batch = _batch(jax.random.PRNGKey(1), (B,) if critic == "td" else (B, T), agent, state)
  key = jax.random.PRNGKey(7)
  new, metrics = jax.jit(agent.update)(state, batch, key)
  ref = jax.jit(functools.partial(_reference_update, cfg))(state, batch, key)
  for k in ("critic_loss", "loss", "kl_mean", "td_abs"):
    np.testing.assert_allclose(metrics[k], ref[k], err_msg=k, **TOL)
  assert float(metrics["kl_mean"]) > 0
  for name, got, want in [("critic", new.critic, ref["critic"]),
                          ("actor", new.actor, ref["actor"]),
                          ("target_actor", new.target_actor, ref["targets"][0]),
                          ("target_critic", new.target_critic, ref["targets"][1])]:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, err_msg=name, **TOL), got, want)
  got = (new.duals.temperature, new.duals.alpha_mean, new.duals.alpha_stddev,
         new.duals.penalty_temperature)
  np.testing.assert_allclose(got, ref["duals"], **TOL)
  assert int(new.steps) == 1


def test_targets_copy_only_every_period():
  agent = mpo.make(mpo.MPOConfig(hidden=(8,), num_action_samples=3, target_update_period=2),
                   SPEC)
  state = _perturbed_state(agent)
  batch = _batch(jax.random.PRNGKey(2), (B,), agent, state)
  update = jax.jit(agent.update)
  one, _ = update(state, batch, jax.random.PRNGKey(3))
  jax.tree.map(np.testing.assert_array_equal, one.target_actor, state.target_actor)
  two, _ = update(one, batch, jax.random.PRNGKey(4))
  jax.tree.map(np.testing.assert_array_equal, two.target_actor, two.actor)
  jax.tree.map(np.testing.assert_array_equal, two.target_critic, two.critic)


def test_duals_stay_projected_while_their_bound_is_slack():
  """Bug (fixed): a slack bound (KL = 0 < ε) drove the raw α_μ below the floor by dual_lr per
  step without limit, so it could not bind again for as many steps once the KL exceeded ε."""
  cfg = mpo.MPOConfig(hidden=(8,), num_action_samples=3, dual_lr=0.1, init_alpha_mean=0.05,
                      init_alpha_stddev=0.05, epsilon_mean=10.0, epsilon_stddev=10.0,
                      target_update_period=1000)
  agent = mpo.make(cfg, SPEC)
  state = agent.init(jax.random.PRNGKey(0))  # target actor ≈ actor: KL ≪ ε = 10
  batch = _batch(jax.random.PRNGKey(2), (B,), agent, state)
  update = jax.jit(agent.update)
  for i in range(5):
    state, _ = update(state, batch, jax.random.PRNGKey(10 + i))
  # Five Adam steps of 0.1 from 0.05 would reach −0.45 without the projection.
  assert float(state.duals.alpha_mean) == pytest.approx(1e-10)
  assert float(state.duals.alpha_stddev) == pytest.approx(1e-10)
  assert float(state.duals.temperature) > 0
  # Once a bound is violated the multiplier grows from the floor at the next step.
  tight = mpo.make(dataclasses.replace(cfg, epsilon_mean=1e-6), SPEC)
  far = state.replace(target_actor=jax.tree.map(lambda x: x + 1.0, state.actor),
                      policy_opt=tight.init(jax.random.PRNGKey(0)).policy_opt)  # no momentum
  grown, _ = jax.jit(tight.update)(far, batch, jax.random.PRNGKey(20))
  assert float(grown.duals.alpha_mean) > 1e-3


def test_e_step_weights_and_losses_match_rlax():
  """The policy loss's E-step weights, dual and M-step against rlax.mpo_loss on the same samples."""
  cfg = mpo.MPOConfig(hidden=(16,), num_action_samples=N)
  actor_net, critic_net = networks.Actor((16,), ACT), networks.Critics((16,), 1)
  _, policy_loss = mpo.make_losses(cfg, actor_net, critic_net)
  agent = mpo.make(cfg, SPEC)
  state = _perturbed_state(agent)
  obs = jax.random.normal(jax.random.PRNGKey(5), (6, OBS))
  key = jax.random.PRNGKey(6)
  params = {"actor": state.actor, "duals": state.duals}
  (loss, (metrics, weights)), grads = jax.jit(jax.value_and_grad(policy_loss, has_aux=True))(
      params, state.target_critic, state.target_actor, obs, key)

  m_old, s_old = _actor(state.target_actor, obs)
  u = _samples(key, m_old, s_old)
  q = _q(state.target_critic, jnp.repeat(obs[:, None], N, 1), jnp.tanh(u))  # [S, N]
  d = state.duals

  def rlax_loss(actor, eta, a_mu, a_sigma):
    m, s = _actor(actor, obs)
    loglik = _log_normal(u, m[:, None], s_old[:, None]) + _log_normal(u, m_old[:, None], s[:, None])
    kl_mu = jnp.sum((m - m_old) ** 2 / (2 * s_old ** 2), -1)
    kl_sigma = 0.5 * jnp.sum(s_old ** 2 / s ** 2 - 1 + 2 * jnp.log(s / s_old), -1)
    out, extra = rlax.mpo_loss(
        loglik.T, q.T, rlax.LagrangePenalty(eta, cfg.epsilon),
        [(kl_mu, rlax.LagrangePenalty(a_mu, cfg.epsilon_mean)),
         (kl_sigma, rlax.LagrangePenalty(a_sigma, cfg.epsilon_stddev))])
    return jnp.mean(out), extra.normalized_weights.T

  (want, want_weights), want_grads = jax.jit(
      jax.value_and_grad(rlax_loss, (0, 1, 2, 3), has_aux=True))(
      state.actor, d.temperature, d.alpha_mean, d.alpha_stddev)
  np.testing.assert_allclose(weights, want_weights, **TOL)
  rlax_dual, rlax_weights, _ = rlax.mpo_compute_weights_and_temperature_loss(
      q.T, rlax.LagrangePenalty(d.temperature, cfg.epsilon), lambda x: x)
  np.testing.assert_allclose(weights, rlax_weights.T, **TOL)
  np.testing.assert_allclose(metrics["temperature_loss"], jnp.mean(rlax_dual), **TOL)
  np.testing.assert_allclose(loss, want, **TOL)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **TOL), grads["actor"],
               want_grads[0])
  np.testing.assert_allclose(
      (grads["duals"].temperature, grads["duals"].alpha_mean, grads["duals"].alpha_stddev),
      want_grads[1:], **TOL)


def test_act_stores_the_behaviour_log_prob_for_retrace_only():
  obs = jax.random.normal(jax.random.PRNGKey(3), (5, OBS))
  key = jax.random.PRNGKey(4)
  td = mpo.make(mpo.MPOConfig(hidden=(8,)), SPEC)
  a, extras = td.act(td.policy_params(td.init(jax.random.PRNGKey(0))), obs, key, False)
  assert extras == {} and a.shape == (5, ACT)
  agent = mpo.make(mpo.MPOConfig(hidden=(8,), critic="retrace"), SPEC)
  assert agent.needs == base.Needs(base.OFF_POLICY, 8, base.CONTINUOUS)
  params = agent.policy_params(agent.init(jax.random.PRNGKey(0)))
  a, extras = agent.act(params, obs, key, False)
  np.testing.assert_allclose(a, td.act(params, obs, key, False)[0], **TOL)
  m, s = _actor(params.actor, obs)
  np.testing.assert_allclose(extras["log_prob"], _log_pi(np.arctanh(a), m, s), rtol=1e-3)
  a_det, _ = agent.act(params, obs, key, True)
  np.testing.assert_allclose(a_det, jnp.tanh(m), **TOL)


@pytest.mark.parametrize("kw, field", [
    (dict(epsilon=0.0), "epsilon"), (dict(epsilon_mean=-1e-3), "epsilon_mean"),
    (dict(epsilon_stddev=0.0), "epsilon_stddev"), (dict(num_action_samples=0), "num_action_samples"),
    (dict(critic="nstep"), "critic"), (dict(critic_temperature=-0.1), "critic_temperature"),
    (dict(init_temperature=0.0), "init_temperature"), (dict(retrace_length=1), "retrace_length"),
    (dict(num_critics=0), "num_critics"), (dict(action_penalty_epsilon=-1.0),
                                           "action_penalty_epsilon"),
    (dict(action_penalty_bound=0.0), "action_penalty_bound"),
])
def test_bad_config_is_refused_in_one_line(kw, field):
  with pytest.raises(ValueError) as e:
    mpo.MPOConfig(**kw)
  msg = str(e.value)
  assert msg.startswith(field + " ") and "\n" not in msg


def test_mpo_refuses_discrete_envs_in_one_line():
  spec = types.SimpleNamespace(observation_size=4, action_size=2, discrete=True,
                               name="cartpole")
  with pytest.raises(base.UnsupportedEnv, match="mpo needs continuous actions; 'cartpole'"):
    mpo.make(mpo.MPOConfig(), spec)


@pytest.mark.parametrize("agent, setting, field", [
    ("mpo", "epsilon=-0.1", "epsilon"), ("mpo", "epsilon_mean=0", "epsilon_mean"),
    ("mpo", "epsilon_stddev=0", "epsilon_stddev"),
    ("mpo", "num_action_samples=0", "num_action_samples"),
    ("virel", "temperature_scale=-1", "temperature_scale"),
    ("virel", "num_action_samples=0", "num_action_samples"),
])
def test_cli_exits_2_with_one_line_on_a_bad_config(capsys, tmp_path, agent, setting, field):
  from rlax_inf.agents import cli  # pylint: disable=g-import-not-at-top
  code = cli.main(["train", "--agent", agent, "--env", "pendulum", "--out",
                   str(tmp_path / "run"), "--set", setting])
  err = [l for l in capsys.readouterr().err.strip().splitlines()
         if l.startswith("rlax-inf: error:")]
  assert code == 2 and len(err) == 1 and field in err[0], err
