"""The contract every registered agent inherits (parametrised over the registry).

init / act / update shapes and dtypes under jit; seed i of a vmapped run equals
the single run; a checkpoint round trip; and a few training steps through a
checkpoint on every env family the agent accepts (pure-JAX classic and tabular
suites here; Brax on each backend and MuJoCo Playground in
test_contract_envs.py; 1 vs 4 host devices in test_contract_devices.py: apart,
so that pytest-xdist's per-file scheduling spreads them over workers).
"""

import dataclasses
import functools
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_inf import envs
from rlax_inf.agents import base
from rlax_inf.agents import checkpointing
from rlax_inf.agents import config as config_lib
from rlax_inf.agents import registry
from rlax_inf.agents import training
from rlax_inf.envs import demonstrations

AGENTS = registry.names()
TOL = dict(rtol=1e-4, atol=1e-5)


def small(name, env=None, backend=None):
  """The registry's default config for `name` with tiny networks (where it has any).

  Agents that learn from demonstrations (a `demonstrations` field) get a tiny file of
  random demonstrations shaped for `env` (default: `default_env(name)`).
  """
  cfg = registry.get(name).config
  fields = {f.name for f in dataclasses.fields(cfg)}
  kw = {"hidden": (8,)} if "hidden" in fields else {}
  if "demonstrations" in fields:
    kw["demonstrations"] = tiny_demonstrations(env or default_env(name), backend)
  return dataclasses.replace(cfg, **kw)


@functools.lru_cache(maxsize=None)
def tiny_demonstrations(env, backend=None, episodes=2, length=40):
  """A demonstrations file of random episodes shaped for `env` (cached per env)."""
  spec = envs.make(env, backend=backend, episode_length=length).spec
  rng = np.random.default_rng(0)
  obs = rng.normal(size=(episodes, length, spec.observation_size)).astype(np.float32)
  act = rng.uniform(-1, 1, size=(episodes, length, spec.action_size)).astype(np.float32)
  path = os.path.join(tempfile.mkdtemp(prefix="demos_"), f"{env}_{backend}.npz")
  demonstrations.save_demonstrations(path, demonstrations.from_episodes(obs, act))
  return path


def default_env(name):
  return "pendulum" if base.CONTINUOUS in registry.get(name).action_spaces else "cartpole"


def tiny_config(name, **kw):
  kw = dict(dict(env=default_env(name), num_seeds=2, total_steps=64, num_envs=4,
                 batch_size=8, grad_updates_per_step=1, prefill_steps=32, eval_every=32,
                 episode_length=12, num_eval_envs=2, num_minibatches=2, num_epochs=1), **kw)
  return config_lib.TrainConfig(**kw)


def test_registry_refuses_configs_that_collide_with_the_loop():
  @dataclasses.dataclass(frozen=True)
  class Clashing:
    batch_size: int = 3

  with pytest.raises(ValueError, match=r"\['batch_size'\] collide"):
    registry.register("clash", Clashing(), lambda c, s: None, base.OFF_POLICY,
                      (base.DISCRETE,), "")
  assert "clash" not in registry.names()


@pytest.mark.parametrize("name", AGENTS)
def test_registered_config_is_frozen_and_disjoint_from_the_loop(name):
  entry = registry.get(name)
  fields = {f.name for f in dataclasses.fields(entry.config)}
  assert not fields & config_lib.field_names()
  with pytest.raises(dataclasses.FrozenInstanceError):
    entry.config.__setattr__(next(iter(fields)), None)


def _batch(agent, spec, key, obs_size):
  """A random batch of the shape the agent's loop gives it, with its own extras."""
  n = agent.needs
  shape = (6,) if n.loop == base.OFF_POLICY and n.sequence_length == 1 else (3, n.sequence_length)
  k = jax.random.split(key, 5)
  obs = jax.random.normal(k[0], shape + (obs_size,))
  params = agent.policy_params(agent.init(k[1]))
  flat = jnp.reshape(obs, (-1, obs_size))
  action, extras = agent.act(params, flat, k[2], False)
  unflat = lambda x: jnp.reshape(x, shape + x.shape[1:])
  done = (jax.random.uniform(k[3], shape) < 0.2).astype(jnp.float32)
  return base.Transition(obs=obs, action=unflat(action), reward=jax.random.normal(k[4], shape),
                         terminated=done * (jax.random.uniform(k[4], shape) < 0.5),
                         done=done, next_obs=obs + 0.1, extras=jax.tree.map(unflat, extras))


@pytest.mark.parametrize("name", AGENTS)
def test_init_act_update_shapes_and_dtypes_under_jit(name):
  env = envs.make(default_env(name), episode_length=10)
  spec = env.spec
  agent = registry.get(name).make(small(name), spec)
  assert isinstance(agent, base.Agent) and isinstance(agent.needs, base.Needs)
  state = jax.jit(agent.init)(jax.random.PRNGKey(0))
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state))  # arrays only
  obs = jax.random.normal(jax.random.PRNGKey(1), (5, spec.observation_size))
  act = jax.jit(agent.act)
  for deterministic in (True, False, jnp.arange(5) < 2):
    action, extras = act(agent.policy_params(state), obs, jax.random.PRNGKey(2), deterministic)
    if spec.discrete:
      assert action.shape == (5,) and action.dtype == jnp.int32
      assert np.all((action >= 0) & (action < spec.action_size))
    else:
      assert action.shape == (5, spec.action_size) and action.dtype == jnp.float32
      assert np.all(np.abs(action) <= 1.0)
    assert all(x.shape[0] == 5 for x in jax.tree.leaves(extras))
  batch = _batch(agent, spec, jax.random.PRNGKey(3), spec.observation_size)
  new_state, metrics = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(4))
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  jax.tree.map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype) or pytest.fail(
      f"{name}: update changed a leaf {a.shape} {a.dtype} -> {b.shape} {b.dtype}"),
               state, new_state)
  assert metrics and all(jnp.shape(v) == () and np.isfinite(v) for v in metrics.values())
  changed = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state, new_state))
  assert any(changed), f"{name}: update changed nothing"


@pytest.fixture(scope="module", params=AGENTS)
def two_seed_run(request):
  name = request.param
  trainer = training.Trainer(tiny_config(name), small(name), name)
  ts = trainer.init(trainer.seed_keys())
  history = []
  for _ in range(trainer.schedule.num_intervals):
    ts, metrics = trainer.run_interval(ts)
    history.append(jax.device_get(metrics))
  return name, trainer, ts, history


def test_vmapped_seed_equals_the_single_run(two_seed_run):
  # Slow (make test-slow) except for the agents in conftest.VMAP_DEFAULT_AGENTS.
  name, _, ts, history = two_seed_run
  single_ts, single = training.train(tiny_config(name, num_seeds=1, seed=1), name, small(name))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a[1], b[0], **TOL),
               jax.device_get(ts.agent), jax.device_get(single_ts.agent))
  for k in ("eval_return", "train_return"):
    np.testing.assert_allclose([h[k][1] for h in history], single[k][:, 0], **TOL)
  leaves = [x for x in jax.tree.leaves(jax.device_get(ts.agent)) if x[0].size > 1]
  assert any(not np.allclose(x[0], x[1]) for x in leaves), "the two seeds are copies"
  for h in history:
    assert all(v.shape == (2,) and np.all(np.isfinite(v)) for v in h.values())
    assert set(training.EVAL_KEYS) <= set(h)


def test_checkpoint_round_trip_then_training_goes_on(two_seed_run, tmp_path):
  _, trainer, ts, _ = two_seed_run
  mngr = checkpointing.manager(str(tmp_path / "ckpt"))
  checkpointing.save(mngr, 1, ts)
  restored, step = checkpointing.restore(mngr, trainer.abstract_state())
  mngr.close()
  assert step == 1
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(ts), jax.device_get(restored))
  # The restored state trains on like the original (the original is donated: copy first).
  a, ma = trainer.run_interval(jax.tree.map(lambda x: x.copy(), ts))
  b, mb = trainer.run_interval(restored)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(ma), jax.device_get(mb))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(a.agent), jax.device_get(b.agent))


@pytest.mark.parametrize("name", AGENTS)
@pytest.mark.parametrize(
    "env", ["gridworld", pytest.param("four_rooms", marks=pytest.mark.slow), "cartpole",
            "pendulum"])
def test_pure_jax_families_train_through_a_checkpoint_or_refuse(name, env, tmp_path):
  entry = registry.get(name)
  spec = envs.registry()[env]
  space = base.DISCRETE if spec["discrete"] else base.CONTINUOUS
  cfg = tiny_config(name, env=env, num_seeds=1, total_steps=48, eval_every=16)
  if space not in entry.action_spaces:
    with pytest.raises(base.UnsupportedEnv, match=f"{name} needs .* actions; '{env}'"):
      training.Trainer(cfg, small(name, cfg.env, cfg.backend), name)
    return
  if env == default_env(name):
    pytest.skip("covered by the two-seed run above")
  train_through_a_checkpoint(name, cfg, tmp_path)


def train_through_a_checkpoint(name, cfg, tmp_path):
  """One interval, a checkpoint, a restore, one more interval: finite metrics throughout."""
  trainer = training.Trainer(cfg, small(name, cfg.env, cfg.backend), name)
  ts, metrics = trainer.run_interval(trainer.init(trainer.seed_keys()))
  mngr = checkpointing.manager(str(tmp_path / "ckpt"))
  checkpointing.save(mngr, 1, ts)
  ts, _ = checkpointing.restore(mngr, trainer.abstract_state())
  mngr.close()
  ts, metrics = trainer.run_interval(ts)
  metrics = jax.device_get(metrics)
  assert all(np.all(np.isfinite(v)) for v in metrics.values()), metrics
  assert int(jax.device_get(ts.evaluations)[0]) == 2
