"""apg and the differentiable loop against outside oracles.

* The loop's window gradient on a pure-JAX linear-quadratic env equals jax.grad of a
  straight-line Python unroll written here (own dynamics, own network forward pass),
  with and without the critic, across a time-limit reset inside the window.
* `window_objective` against the segment sums written out by hand.
* The critic's TD(λ) targets against `rlax.lambda_returns`.
* The non-finite guard: an exploding env skips every update, keeps the parameters and
  counts the skips; float64 end to end; refusals and bad configs in one line.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from rlax_inf import envs
from rlax_inf.agents import apg
from rlax_inf.agents import base
from rlax_inf.agents import config as config_lib
from rlax_inf.agents import differentiable
from rlax_inf.agents import networks
from rlax_inf.envs import core
from reference_nets import mlp  # pylint: disable=g-bad-import-order

N, H, EPISODE = 3, 5, 3  # a truncation (and reset) at the 3rd step of every window


class LinearQuadratic(core.Environment):
  """x' = A x + B u,  r = −(x'ᵀ Q x' + uᵀ R u); never terminates; x_0 ~ U[−1, 1]²."""

  stochastic_dynamics = False

  def __init__(self, a_scale=1.0, episode_length=EPISODE):
    super().__init__(core.EnvSpec(
        name="lq", suite="classic", backend="jax", observation_size=2, action_size=1,
        discrete=False, action_low=-1.0, action_high=1.0, episode_length=episode_length,
        action_repeat=1, differentiable=True))
    self.a = a_scale * np.array([[1.0, 0.1], [-0.2, 0.9]])
    self.b = np.array([[0.0], [0.5]])
    self.q = np.diag([1.0, 0.5])
    self.r = np.array([[0.1]])

  def core_reset(self, key):
    x = jax.random.uniform(key, (2,), jnp.result_type(float), -1.0, 1.0)
    return x, x

  def core_step(self, inner, action, key):
    del key
    x = self.a.astype(inner.dtype) @ inner + self.b.astype(inner.dtype) @ action
    reward = -(x @ self.q.astype(x.dtype) @ x + action @ self.r.astype(x.dtype) @ action)
    return x, x, reward, jnp.zeros((), jnp.float32)


def train_config(**kw):
  kw = dict(dict(env="lq", num_envs=N, eval_every=N * H * 2, total_steps=N * H * 2,
                 episode_length=EPISODE, num_eval_envs=2), **kw)
  return config_lib.TrainConfig(**kw)


def agent_config(**kw):
  kw = dict(dict(hidden=(), horizon=H, normalize_observations=False, discount=0.9), **kw)
  return apg.APGConfig(**kw)


def _window(env, cfg):
  agent = apg.make(cfg, env.spec)
  loop = differentiable.Loop(train_config(), env, agent)
  ts = loop.init(jax.random.PRNGKey(3))
  agent_state = ts.agent
  if cfg.critic:  # a non-trivial V̄ (init's last layer is near zero)
    agent_state = agent_state.replace(target_critic=jax.tree.map(
        lambda x: x + 0.3 * jnp.ones_like(x), agent_state.target_critic))
  env_state, batch, objective = loop.window(agent_state, ts.env_state, jax.random.PRNGKey(4))
  return agent, agent_state, ts.env_state, batch, objective


def _oracle_objective(env, cfg, actor, target_critic, x0, batch):
  """J written out: a Python loop over steps and envs, own network, own dynamics."""
  a, b, q, r = (jnp.asarray(m, x0.dtype) for m in (env.a, env.b, env.q, env.r))
  noise, reset_obs = batch.extras["noise"], batch.obs
  total = 0.0
  for n in range(x0.shape[0]):
    x, g, steps = x0[n], 1.0, 0
    for t in range(H):
      out = mlp(actor, x)
      mean, std = out[:1], jax.nn.softplus(out[1:]) + cfg.min_std
      u = jnp.tanh(mean + std * noise[n, t])
      x = a @ x + b @ u
      total += g * -(x @ q @ x + u @ r @ u)
      steps += 1
      cut = steps == EPISODE or t == H - 1
      if cut and cfg.critic:
        total += g * cfg.discount * mlp(target_critic, x)[0]
      if steps == EPISODE:  # time limit: the next state is a fresh (constant) reset
        g, steps = 1.0, 0
        if t + 1 < H:
          x = reset_obs[n, t + 1]
      else:
        g *= cfg.discount
  return total


@pytest.mark.parametrize("critic", [False, True])
def test_window_gradient_equals_a_straight_line_unroll(critic):
  env = LinearQuadratic()
  cfg = agent_config(critic=critic)
  agent, state, env_state, batch, objective = _window(env, cfg)
  assert batch.obs.shape == (N, H, 2) and batch.extras["return_grad"].shape == (N, H, 1)
  assert float(jnp.sum(batch.done)) == N  # one time-limit reset inside every window
  x0 = env_state.obs
  target = state.target_critic
  oracle = lambda actor: _oracle_objective(env, cfg, actor, target, x0, batch)
  np.testing.assert_allclose(objective, oracle(state.actor), rtol=1e-5)
  want = jax.grad(oracle)(state.actor)
  # The agent's surrogate: ∇L_π = −dJ/dθ / (N H).
  actor_loss, _, _ = apg.make_losses(cfg, networks.Actor(cfg.hidden, 1, cfg.min_std),
                                     networks.MLP(cfg.hidden, 1))
  got = jax.grad(lambda p: actor_loss(p, batch.obs, batch.extras["noise"],
                                      batch.extras["return_grad"])[0])(state.actor)
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, -w / (N * H), rtol=2e-4, atol=1e-6),
               got, want)
  assert all(float(jnp.max(jnp.abs(w))) > 1e-2 for w in jax.tree.leaves(want))


def test_window_objective_equals_the_segment_sums_by_hand():
  # One env, H = 6: a termination after step 1, a truncation after step 3, the cut at 5.
  r = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
  term = np.array([0, 1, 0, 0, 0, 0], np.float32)
  done = np.array([0, 1, 0, 1, 0, 0], np.float32)
  v = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
  gam = 0.5
  want = (1 + gam * 2)  # the terminated episode: no bootstrap
  want += 3 + gam * 4 + gam * gam * 40  # truncated after step 3: bootstrap V(s'_3)
  want += 5 + gam * 6 + gam * gam * 60  # cut by the window: bootstrap V(s'_5)
  col = lambda x: jnp.asarray(x, jnp.float32)[:, None]
  got = differentiable.window_objective(col(r), col(term), col(done), col(v),
                                        col(np.full(6, gam)))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  no_critic = differentiable.window_objective(col(r), col(term), col(done), 0 * col(v),
                                              col(np.full(6, gam)))
  np.testing.assert_allclose(no_critic, 1 + gam * 2 + 3 + gam * 4 + 5 + gam * 6, rtol=1e-6)


def test_critic_targets_are_rlax_lambda_returns():
  cfg = agent_config(critic=True, hidden=(4,), td_lambda=0.7)
  value_net = networks.MLP(cfg.hidden, 1)
  _, _, targets = apg.make_losses(cfg, networks.Actor(cfg.hidden, 1), value_net)
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  params = value_net.init(k[0], jnp.zeros((1, 2)))
  next_obs = jax.random.normal(k[1], (2, 6, 2))
  reward = jax.random.normal(k[2], (2, 6))
  done = jnp.array([[0, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0]], jnp.float32)
  term = jnp.array([[0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], jnp.float32)
  got = targets(params, next_obs, reward, term, done)
  v = np.asarray(mlp(params, next_obs)[..., 0])
  for b in range(2):
    want = rlax.lambda_returns(reward[b], cfg.discount * (1 - term[b]), v[b],
                               cfg.td_lambda * (1 - done[b]))
    np.testing.assert_allclose(got[b], want, rtol=1e-5)


def test_the_guard_skips_non_finite_updates_and_counts_them():
  env = LinearQuadratic(a_scale=1e20, episode_length=100)  # |x| ~ 1e40 by step 2: inf
  cfg = agent_config()
  loop = differentiable.Loop(train_config(episode_length=100), env, apg.make(cfg, env.spec))
  ts = loop.init(jax.random.PRNGKey(0))
  _, batch, _ = loop.window(ts.agent, ts.env_state, jax.random.PRNGKey(1))
  assert not np.all(np.isfinite(batch.extras["return_grad"]))  # the blow-up happened
  new, metrics = jax.jit(loop.interval)(ts)
  iterations = loop.schedule.interval_iterations
  assert iterations == 2 and int(new.nonfinite_skips) == iterations
  assert float(metrics["nonfinite_skips"]) == iterations
  assert float(metrics["nonfinite_env_resets"]) > 0
  jax.tree.map(np.testing.assert_array_equal, new.agent.actor, ts.agent.actor)
  jax.tree.map(np.testing.assert_array_equal, new.agent.actor_opt, ts.agent.actor_opt)
  assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(new.agent))
  assert all(np.isfinite(v) for k, v in metrics.items() if not k.startswith("eval")), metrics
  assert np.all(np.isfinite(new.env_state.obs))  # the exploded envs were reset


@pytest.mark.slow
def test_a_finite_run_skips_nothing_and_learns():
  env = LinearQuadratic()
  cfg = agent_config(critic=True)
  loop = differentiable.Loop(train_config(), env, apg.make(cfg, env.spec))
  ts = loop.init(jax.random.PRNGKey(0))
  new, metrics = jax.jit(loop.interval)(ts)
  assert int(new.nonfinite_skips) == 0 and float(metrics["nonfinite_skips"]) == 0
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.agent.actor, ts.agent.actor)
  assert all(jax.tree.leaves(changed))
  assert int(new.env_steps) == 2 * N * H


@pytest.mark.slow  # ~16 s on the loaded 2-core VM (compiles the loop in float64)
def test_float64_window_gradient_and_run():
  with jax.enable_x64(True):
    env = LinearQuadratic()
    cfg = agent_config(critic=True, float64=True)
    _, state, env_state, batch, objective = _window(env, cfg)
    assert state.actor["params"]["Dense_0"]["kernel"].dtype == jnp.float64
    assert batch.extras["return_grad"].dtype == jnp.float64
    target = state.target_critic
    oracle = lambda actor: _oracle_objective(env, cfg, actor, target, env_state.obs, batch)
    np.testing.assert_allclose(objective, oracle(state.actor), rtol=1e-6)  # r is float32
    actor_loss, _, _ = apg.make_losses(cfg, networks.Actor(cfg.hidden, 1, cfg.min_std),
                                       networks.MLP(cfg.hidden, 1))
    got = jax.grad(lambda p: actor_loss(p, batch.obs, batch.extras["noise"],
                                        batch.extras["return_grad"])[0])(state.actor)
    want = jax.grad(oracle)(state.actor)
    # 1e-7, not 1e-12: envs' State.reward is float32 (envs/core.py casts it), so the
    # reward cotangents g_t = γ^k pass through float32 (measured 1.8e-8 relative).
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, -w / (N * H), rtol=1e-7),
                 got, want)
    loop = differentiable.Loop(train_config(), env, apg.make(cfg, env.spec))
    new, metrics = jax.jit(loop.interval)(loop.init(jax.random.PRNGKey(0)))
    assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(new.agent.actor))
    assert all(np.isfinite(v) for v in metrics.values()) and int(new.nonfinite_skips) == 0


def test_float64_without_64_bit_jax_is_refused():
  with pytest.raises(ValueError, match="float64=True needs 64-bit JAX: set JAX_ENABLE_X64=1"):
    apg.make(agent_config(float64=True), envs.make("pendulum").spec)


def test_non_differentiable_and_discrete_envs_are_refused():
  spec = dataclasses.replace(envs.make("pendulum").spec, name="frozen", differentiable=False)
  with pytest.raises(base.UnsupportedEnv, match="apg needs an env whose step is "
                     "differentiable.*'frozen' is not"):
    apg.make(agent_config(), spec)
  with pytest.raises(base.UnsupportedEnv, match="apg needs continuous actions; 'cartpole'"):
    apg.make(agent_config(), envs.make("cartpole").spec)
  env = LinearQuadratic()
  env.spec = dataclasses.replace(env.spec, differentiable=False)
  agent = apg.make(agent_config(), LinearQuadratic().spec)
  with pytest.raises(base.UnsupportedEnv, match="'lq' is not"):
    differentiable.Loop(train_config(), env, agent)


@pytest.mark.parametrize("kw, field", [
    (dict(horizon=0), "horizon"), (dict(discount=1.5), "discount"),
    (dict(policy_lr=0.0), "policy_lr"), (dict(critic_steps=0), "critic_steps"),
    (dict(max_grad_norm=-1.0), "max_grad_norm"), (dict(polyak=2.0), "polyak"),
])
def test_bad_config_names_the_field(kw, field):
  with pytest.raises(ValueError, match=f"^{field} must"):
    apg.APGConfig(**kw)


@pytest.mark.parametrize("setting, field", [
    ("horizon=0", "horizon"), ("td_lambda=-0.5", "td_lambda"), ("float64=true", "float64"),
])
def test_cli_exits_2_with_one_line_on_a_bad_config(capsys, tmp_path, setting, field):
  from rlax_inf.agents import cli  # pylint: disable=g-import-not-at-top
  code = cli.main(["train", "--agent", "apg", "--env", "pendulum", "--out",
                   str(tmp_path / "run"), "--set", setting])
  err = [l for l in capsys.readouterr().err.strip().splitlines()
         if l.startswith("rlax-inf: error:")]
  assert code == 2 and len(err) == 1 and field in err[0], err
