"""Guided cost learning: the reward step against its formula, the policy step against SAC.

The SNIS estimate of the partition gradient converging to the exact tabular one as
samples grow is tests/rlax_inf/test_irl.py::test_snis_partition_gradient_converges_to_the_exact_one.
"""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_inf.agents import base
from rlax_inf.agents import gcl
from rlax_inf.agents import networks
from rlax_inf.agents import normalizer as normalizer_lib
from rlax_inf.agents import sac
from rlax_inf.envs import demonstrations as demos_lib

OBS, ACT, B, T = 3, 2, 4, 5
SPEC = types.SimpleNamespace(observation_size=OBS, action_size=ACT, discrete=False,
                             name="toy", action_low=-1.0, action_high=1.0)


def _demos_file(tmp_path, episodes=3, length=12, obs=OBS, act=ACT, seed=0):
  rng = np.random.default_rng(seed)
  demos = demos_lib.from_episodes(rng.normal(size=(episodes, length, obs)),
                                  rng.uniform(-0.9, 0.9, size=(episodes, length, act)))
  path = str(tmp_path / "demos.npz")
  demos_lib.save_demonstrations(path, demos)
  return path


def _config(tmp_path, **kw):
  return gcl.GCLConfig(**dict(dict(hidden=(16,), reward_hidden=(8,), window=T,
                                   demonstrations=_demos_file(tmp_path)), **kw))


def _batch(agent, state, key, prefill_rows=1):
  """A [B, T] batch with the agent's extras; the first `prefill_rows` windows are prefill."""
  k = jax.random.split(key, 5)
  obs = 2.0 * jax.random.normal(k[0], (B * T, OBS)) + 1.0
  action, extras = agent.act(agent.policy_params(state), obs, k[1], False)
  unflat = lambda x: jnp.reshape(x, (B, T) + x.shape[1:])
  extras = jax.tree.map(unflat, extras)
  extras = jax.tree.map(lambda x: x.at[:prefill_rows].set(0.0), extras)  # as the loop's prefill
  done = jnp.zeros((B, T)).at[1, 2].set(1.0).at[2, 4].set(1.0)
  terminated = jnp.zeros((B, T)).at[1, 2].set(1.0)
  return base.Transition(obs=unflat(obs), action=unflat(action),
                         reward=jax.random.normal(k[2], (B, T)), terminated=terminated,
                         done=done, next_obs=unflat(obs) + 0.1, extras=extras)


# ----------------------------------------------------------------- reward step

def test_reward_gradient_is_demo_minus_self_normalised_sample_gradient():
  """∇L = −(mean_i ∇R(demo_i) − Σ_j w̄_j ∇R(τ_j)) + λ ∇L2, written out for a linear reward."""
  rng = np.random.default_rng(1)
  D, F = 3, OBS + ACT
  feats = lambda o, a: np.concatenate([o, a], -1)
  reward_fn = lambda psi, o, a: jnp.concatenate([o, a], -1) @ psi
  d_obs, d_act = rng.normal(size=(D, T, OBS)), rng.normal(size=(D, T, ACT))
  obs, act = rng.normal(size=(B, T, OBS)), rng.normal(size=(B, T, ACT))
  log_q = rng.normal(size=(B, T)) - 1.0
  mask = np.asarray(gcl.window_mask(jnp.asarray(
      np.zeros((B, T)) + (np.arange(T) == 1) * (np.arange(B) == 2)[:, None])))
  assert mask[2].tolist() == [1, 1, 0, 0, 0] and mask[0].all()
  psi = rng.normal(size=(F,))
  alpha, lam = 0.7, 0.3

  f_demo, f = feats(d_obs, d_act), feats(obs, act) * mask[..., None]  # [D|B, T, F]
  grad_r_demo, grad_r = f_demo.sum(1), f.sum(1)  # ∇R per window
  r = f @ psi
  log_w = r.sum(1) / alpha - (log_q * mask).sum(1)
  w = np.exp(log_w - log_w.max())
  w /= w.sum()
  grad_l2 = 0.5 * (2 * np.einsum("dt,dtf->f", f_demo @ psi, f_demo) / (D * T)
                   + 2 * np.einsum("bt,btf->f", r, f) / mask.sum())
  expected = -(grad_r_demo.mean(0) - w @ grad_r) + lam * grad_l2

  loss = gcl.make_reward_loss(reward_fn, lam)
  args = [jnp.asarray(x, jnp.float32) for x in (d_obs, d_act, obs, act, log_q, mask)]
  grad, aux = jax.grad(loss, has_aux=True)(jnp.asarray(psi, jnp.float32), *args, alpha)
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(aux["log_w"], log_w, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(aux["ess"], 1.0 / np.sum(w ** 2), rtol=1e-5)
  # The weights carry no gradient: with λ = 0 the step moves ψ along the formula only,
  # whatever α (the temperature enters the weights, never the gradient's scale).
  g0, _ = jax.grad(gcl.make_reward_loss(reward_fn, 0.0), has_aux=True)(
      jnp.asarray(psi, jnp.float32), *args, 5.0)
  log_w5 = r.sum(1) / 5.0 - (log_q * mask).sum(1)
  w5 = np.exp(log_w5 - log_w5.max())
  np.testing.assert_allclose(g0, -(grad_r_demo.mean(0) - (w5 / w5.sum()) @ grad_r),
                             rtol=1e-4, atol=1e-5)


def test_absorbing_steps_carry_the_learned_absorbing_reward():
  """With r_abs: R(τ_j) = Σ_t m_t r(s_t, a_t) + a_t r_abs, log q over acted steps only; the
  gradient of (ψ, r_abs) is the same demo − weighted sample formula, written out."""
  rng = np.random.default_rng(2)
  D, F = 3, OBS + ACT
  feats = lambda o, a: np.concatenate([o, a], -1)
  reward_fn = lambda p, o, a: jnp.concatenate([o, a], -1) @ p["w"]
  d_obs, d_act = rng.normal(size=(D, T, OBS)), rng.normal(size=(D, T, ACT))
  obs, act = rng.normal(size=(B, T, OBS)), rng.normal(size=(B, T, ACT))
  log_q = rng.normal(size=(B, T)) - 1.0
  done = np.zeros((B, T))
  done[1, 1] = done[2, 3] = done[3, 0] = done[3, 2] = 1.0
  terminated = np.zeros((B, T))
  terminated[1, 1] = terminated[3, 2] = 1.0  # window 2 is truncated; window 3's first done too
  mask = np.asarray(gcl.window_mask(jnp.asarray(done)))
  absorbing = np.asarray(gcl.absorbing_mask(jnp.asarray(done), jnp.asarray(terminated)))
  np.testing.assert_array_equal(absorbing, [[0] * 5, [0, 0, 1, 1, 1], [0] * 5, [0] * 5])
  psi, r_abs, alpha, lam = rng.normal(size=(F,)), -0.8, 0.6, 0.2

  f_demo, f = feats(d_obs, d_act), feats(obs, act) * mask[..., None]
  r = f @ psi + r_abs * absorbing
  log_w = r.sum(1) / alpha - (log_q * mask).sum(1)
  w = np.exp(log_w - log_w.max())
  w /= w.sum()
  counted = (mask + absorbing).sum()
  grad_psi = (-(f_demo.sum(1).mean(0) - w @ f.sum(1))
              + lam * 0.5 * (2 * np.einsum("dt,dtf->f", f_demo @ psi, f_demo) / (D * T)
                             + 2 * np.einsum("bt,btf->f", r, f) / counted))
  grad_abs = w @ absorbing.sum(1) + lam * 0.5 * 2 * np.sum(r * absorbing) / counted

  loss = gcl.make_reward_loss(reward_fn, lam, lambda p: p["abs"])
  args = [jnp.asarray(x, jnp.float32) for x in (d_obs, d_act, obs, act, log_q, mask)]
  params = dict(w=jnp.asarray(psi, jnp.float32), abs=jnp.asarray(r_abs, jnp.float32))
  grad, aux = jax.grad(loss, has_aux=True)(params, *args, alpha, jnp.asarray(absorbing))
  np.testing.assert_allclose(aux["log_w"], log_w, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(grad["w"], grad_psi, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(grad["abs"], grad_abs, rtol=1e-4, atol=1e-6)


def test_behaviour_density_of_prefill_steps_is_the_uniform_box():
  extras = dict(log_prob=jnp.array([-0.3, 0.0, 1.2]), from_policy=jnp.array([1.0, 0.0, 1.0]))
  np.testing.assert_allclose(gcl.behaviour_log_prob(extras, -ACT * math.log(2.0)),
                             [-0.3, -ACT * math.log(2.0), 1.2])


def test_window_mask_cuts_after_the_first_episode_end():
  done = jnp.array([[0.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
  np.testing.assert_array_equal(gcl.window_mask(done),
                                [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])


def test_demo_windows_are_non_overlapping_inside_episodes():
  obs = np.arange(16, dtype=np.float32)[:, None]
  starts = np.zeros(16, bool)
  starts[[0, 5, 8]] = True  # episodes of 5, 3 and 8 steps
  demos = demos_lib.make_demonstrations(obs, -obs, starts)
  w_obs, w_act = gcl.demo_windows(demos, 3)
  np.testing.assert_array_equal(w_obs[..., 0], [[0, 1, 2], [5, 6, 7], [8, 9, 10],
                                                [11, 12, 13]])
  np.testing.assert_array_equal(w_act, -w_obs)
  with pytest.raises(ValueError, match="window=9"):
    gcl.demo_windows(demos, 9)


# ----------------------------------------------------------------- policy step

def test_act_is_sacs_action_with_its_log_density(tmp_path):
  cfg = _config(tmp_path)
  agent, ref = gcl.make(cfg, SPEC), sac.make(gcl.sac_config(cfg), SPEC)
  state = agent.init(jax.random.PRNGKey(0))
  obs = jax.random.normal(jax.random.PRNGKey(1), (6, OBS))
  params = agent.policy_params(state)
  for deterministic in (False, True, jnp.arange(6) < 3):
    action, extras = agent.act(params, obs, jax.random.PRNGKey(2), deterministic)
    np.testing.assert_array_equal(action, ref.act(params, obs, jax.random.PRNGKey(2),
                                                  deterministic)[0])
    mean, std = networks.Actor(cfg.hidden, ACT).apply(params.actor, obs)  # fresh normaliser
    u = jnp.arctanh(action)  # moderate actions here: atanh is accurate
    naive = jnp.sum(-0.5 * ((u - mean) / std) ** 2 - jnp.log(std) - 0.5 * math.log(2 * math.pi)
                    - jnp.log(1 - action ** 2), -1)
    np.testing.assert_allclose(extras["log_prob"], naive, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(extras["from_policy"], np.ones(6))


@pytest.mark.parametrize("absorbing", [True, False])
def test_policy_step_is_sacs_update_on_the_relabelled_batch(tmp_path, absorbing):
  cfg = _config(tmp_path, absorbing_reward=absorbing)
  agent, ref = gcl.make(cfg, SPEC), sac.make(gcl.sac_config(cfg), SPEC)
  state = agent.init(jax.random.PRNGKey(0))
  state = agent.observe(state, 2.0 * jax.random.normal(jax.random.PRNGKey(5), (32, OBS)) + 1.0)
  batch = _batch(agent, state, jax.random.PRNGKey(1))
  key = jax.random.PRNGKey(3)
  new, metrics = jax.jit(agent.update)(state, batch, key)
  assert not np.allclose(jax.tree.leaves(new.reward)[0], jax.tree.leaves(state.reward)[0])
  # Window 1 ends in a termination (the batch), so the absorbing reward moved.
  assert ("absorbing" in new.reward) == absorbing
  r_abs = new.reward["absorbing"] if absorbing else 0.0
  assert (r_abs != 0.0) == absorbing

  # SAC's own update on the B·T transitions with rewards r_ψ'(s, a), ψ' the new reward,
  # plus γ r_abs / (1 − γ) on the terminal transitions (the absorbing state's value).
  obs = normalizer_lib.normalize(state.sac.normalizer, batch.obs)
  mlp = networks.MLP(cfg.reward_hidden, 1)
  r = mlp.apply(new.reward["net"], jnp.concatenate([obs, batch.action], -1))[..., 0]
  r = r + batch.terminated * cfg.discount / (1 - cfg.discount) * r_abs
  flat = lambda x: jnp.reshape(x, (B * T,) + x.shape[2:])
  relabelled = base.Transition(obs=flat(batch.obs), action=flat(batch.action), reward=flat(r),
                               terminated=flat(batch.terminated), done=flat(batch.done),
                               next_obs=flat(batch.next_obs))
  expected, sac_metrics = jax.jit(ref.update)(state.sac, relabelled, jax.random.split(key)[1])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               jax.device_get(new.sac), jax.device_get(expected))
  for k, v in sac_metrics.items():
    np.testing.assert_allclose(metrics[k], v, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["learned_reward"], jnp.mean(r), rtol=1e-5, atol=1e-6)
  assert 1.0 <= metrics["ess"] <= B and "ess" in agent.progress_keys


# ----------------------------------------------------------------- config

@pytest.mark.parametrize("field, value", [("window", 0), ("reward_lr", 0.0), ("reward_l2", -1.0),
                                          ("demonstrations", None), ("policy_loss", "x")])
def test_config_refuses_bad_values_naming_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    gcl.GCLConfig(**{field: value})


def test_make_refuses_demonstrations_that_do_not_fit(tmp_path):
  with pytest.raises(ValueError, match="observations must be"):
    gcl.make(gcl.GCLConfig(demonstrations=_demos_file(tmp_path, obs=OBS + 1)), SPEC)
  with pytest.raises(ValueError, match="window=20"):
    gcl.make(gcl.GCLConfig(demonstrations=_demos_file(tmp_path), window=20), SPEC)
  with pytest.raises(FileNotFoundError):
    gcl.make(gcl.GCLConfig(demonstrations=str(tmp_path / "missing.npz")), SPEC)
  with pytest.raises(ValueError, match="gcl needs demonstrations: set demonstrations=PATH"):
    gcl.make(gcl.GCLConfig(), SPEC)  # no default: nothing to learn a reward from
  with pytest.raises(base.UnsupportedEnv, match="gcl needs continuous"):
    gcl.make(gcl.GCLConfig(), types.SimpleNamespace(observation_size=OBS, action_size=2,
                                                    discrete=True, name="toy_discrete"))


def test_one_step_windows_train_on_transitions(tmp_path):
  """window = 1: the loop samples [B] transitions; each is a one-step trajectory."""
  cfg = _config(tmp_path, window=1)
  agent = gcl.make(cfg, SPEC)
  assert agent.needs.sequence_length == 1
  state = agent.init(jax.random.PRNGKey(0))
  batch = jax.tree.map(lambda x: x[:, 0], _batch(agent, state, jax.random.PRNGKey(1)))
  new, metrics = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(2))
  assert all(np.isfinite(v) for v in metrics.values())
  assert jax.tree.structure(new) == jax.tree.structure(state)
