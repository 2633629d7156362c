"""The Environment contract on the pure-JAX classic-control suite.

One jitted rollout per environment is compiled once (module level) and reused.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_inf import envs

N_ENVS = 64
T = 40
EPISODE_LENGTH = 12


@functools.lru_cache(maxsize=None)
def _env(name, episode_length=EPISODE_LENGTH, action_repeat=1):
  return envs.make(name, episode_length=episode_length,
                   action_repeat=action_repeat)


def _policy(env, key, obs):
  if env.discrete:
    return jax.random.randint(key, (), 0, env.action_size)
  return jax.random.uniform(key, (env.action_size,), minval=-1, maxval=1)


@functools.lru_cache(maxsize=None)
def _rollout_fn(env):
  """jit(vmap) rollout: returns (first state, every state after a step)."""

  def one(key):
    k_reset, k_act = jax.random.split(key)
    s0 = env.reset(k_reset)

    def body(s, k):
      s = env.step(s, _policy(env, k, s.obs))
      return s, s

    _, traj = jax.lax.scan(body, s0, jax.random.split(k_act, T))
    return s0, traj

  return jax.jit(jax.vmap(one))


@functools.lru_cache(maxsize=None)
def _rollout(name, seed=0):
  env = _env(name)
  keys = jax.random.split(jax.random.PRNGKey(seed), N_ENVS)
  return jax.tree.map(np.asarray, _rollout_fn(env)(keys))


@pytest.mark.parametrize('name', ['pendulum', 'cartpole'])
def test_shapes_dtypes_vmap64(name):
  env = _env(name)
  s0, traj = _rollout(name)
  assert s0.obs.shape == (N_ENVS, env.observation_size)
  assert traj.obs.shape == (N_ENVS, T, env.observation_size)
  assert traj.final_obs.shape == traj.obs.shape
  assert traj.obs.dtype == np.float32
  for f in ('reward', 'done', 'terminated', 'truncated'):
    assert getattr(traj, f).shape == (N_ENVS, T)
    assert getattr(traj, f).dtype == np.float32
  assert set(traj.metrics) == set(envs.METRIC_NAMES)
  assert np.all(np.isfinite(traj.obs))


@pytest.mark.parametrize('name', ['pendulum', 'cartpole'])
def test_deterministic_for_fixed_key(name):
  a = _rollout(name)
  b = jax.tree.map(np.asarray, _rollout_fn(_env(name))(
      jax.random.split(jax.random.PRNGKey(0), N_ENVS)))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  c = _rollout(name, seed=1)
  assert not np.allclose(a[1].obs, c[1].obs)


@pytest.mark.parametrize('name', ['pendulum', 'cartpole'])
def test_done_terminated_truncated_flags(name):
  _, traj = _rollout(name)
  done, term, trunc = traj.done, traj.terminated, traj.truncated
  np.testing.assert_array_equal(done, np.maximum(term, trunc))
  assert not np.any((term == 1) & (trunc == 1))
  # Step count within the episode, reconstructed from done flags.
  length = np.zeros(N_ENVS)
  for t in range(T):
    length += 1
    # Truncation exactly at the time limit (unless it terminated then).
    at_limit = length == EPISODE_LENGTH
    np.testing.assert_array_equal(trunc[:, t] == 1, at_limit & (term[:, t] == 0))
    assert np.all(length <= EPISODE_LENGTH)
    np.testing.assert_array_equal(traj.metrics['running_length'][:, t],
                                  np.where(done[:, t] == 1, 0, length))
    np.testing.assert_array_equal(traj.steps[:, t],
                                  np.where(done[:, t] == 1, 0, length))
    length = np.where(done[:, t] == 1, 0, length)
  assert trunc.sum() > 0
  if name == 'pendulum':  # never terminates
    assert term.sum() == 0
  else:
    assert term.sum() > 0  # random pushes topple the pole within 12 steps


def test_cartpole_termination_only_on_real_terminal_states():
  _, traj = _rollout('cartpole')
  env = _env('cartpole')
  x, theta = traj.final_obs[..., 0], traj.final_obs[..., 2]
  outside = (np.abs(x) > env.x_limit) | (np.abs(theta) > env.theta_limit)
  np.testing.assert_array_equal(traj.terminated == 1, outside)


@pytest.mark.parametrize('name', ['pendulum', 'cartpole'])
def test_auto_reset_and_final_obs(name):
  s0, traj = _rollout(name)
  done = traj.done == 1
  # Not done: final_obs is obs. Done: obs is a fresh first observation.
  np.testing.assert_array_equal(traj.final_obs[~done], traj.obs[~done])
  assert not np.allclose(traj.final_obs[done], traj.obs[done])
  if name == 'cartpole':  # reset state is uniform in [-0.05, 0.05]^4
    assert np.all(np.abs(traj.obs[done]) <= 0.05)
  else:  # pendulum reset: |θ̇| <= 1
    assert np.all(np.abs(traj.obs[done][:, 2]) <= 1.0)
  # Fresh random resets: episodes of one env do not restart identically.
  first_resets = traj.obs[:, :][done].reshape(-1, traj.obs.shape[-1])
  assert len(np.unique(first_resets.round(6), axis=0)) == len(first_resets)


@pytest.mark.parametrize('name', ['pendulum', 'cartpole'])
def test_episode_metrics(name):
  _, traj = _rollout(name)
  rewards, done = traj.reward, traj.done == 1
  for i in range(8):
    ret, length, completed = 0.0, 0, 0
    for t in range(T):
      ret += rewards[i, t]
      length += 1
      if done[i, t]:
        completed += 1
        np.testing.assert_allclose(traj.metrics['episode_return'][i, t], ret,
                                   rtol=1e-4, atol=1e-3)
        assert traj.metrics['episode_length'][i, t] == length
        ret, length = 0.0, 0
      np.testing.assert_allclose(traj.metrics['running_return'][i, t], ret,
                                 rtol=1e-4, atol=1e-3)
      assert traj.metrics['episodes_completed'][i, t] == completed


def test_step_jit_matches_eager():
  env = _env('pendulum')
  s = env.reset(jax.random.PRNGKey(3))
  a = jnp.array([0.3])
  eager = env.step(s, a)
  jitted = jax.jit(env.step)(s, a)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6),
               eager, jitted)


def test_action_errors_at_trace_time():
  pend, cart = _env('pendulum'), _env('cartpole')
  sp = pend.reset(jax.random.PRNGKey(0))
  sc = cart.reset(jax.random.PRNGKey(0))
  with pytest.raises(ValueError, match='`action`'):
    jax.jit(pend.step)(sp, jnp.zeros((2,)))  # wrong shape
  with pytest.raises(ValueError, match='`action`'):
    jax.jit(pend.step)(sp, jnp.zeros((1,), jnp.int32))  # wrong dtype
  with pytest.raises(ValueError, match='`action`'):
    jax.jit(pend.step)(sp, jnp.zeros((4, 1)))  # batched without vmap
  with pytest.raises(ValueError, match='`action`'):
    jax.jit(cart.step)(sc, jnp.zeros((), jnp.float32))  # float for discrete
  with pytest.raises(ValueError, match='`action`'):
    jax.jit(cart.step)(sc, jnp.zeros((1,), jnp.int32))


def test_non_finite_actions_are_sanitised():
  env = _env('pendulum')
  s = env.reset(jax.random.PRNGKey(0))
  step = jax.jit(env.step)
  for bad, same_as in [(jnp.nan, 0.0), (jnp.inf, 1.0), (-jnp.inf, -1.0),
                       (5.0, 1.0)]:
    out = step(s, jnp.array([bad]))
    ref = step(s, jnp.array([same_as]))
    assert np.all(np.isfinite(np.asarray(out.obs)))
    np.testing.assert_array_equal(out.obs, ref.obs)
    np.testing.assert_array_equal(out.reward, ref.reward)


def test_action_repeat_and_time_limit_units():
  env = envs.make('pendulum', episode_length=10, action_repeat=3)
  assert env.spec.episode_length == 4  # ceil(10 / 3) agent steps
  one = envs.make('pendulum', episode_length=100)
  s3 = env.reset(jax.random.PRNGKey(0))
  s1 = one.reset(jax.random.PRNGKey(0))
  a = jnp.array([0.5])
  out3 = jax.jit(env.step)(s3, a)
  step1 = jax.jit(one.step)
  total = 0.0
  for _ in range(3):
    s1 = step1(s1, a)
    total += s1.reward
  np.testing.assert_allclose(out3.obs, s1.obs, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out3.reward, total, rtol=1e-5)


def test_unknown_name_and_backend():
  with pytest.raises(ValueError, match='cartpole'):
    envs.make('no_such_env')
  with pytest.raises(ValueError, match='generalized'):
    envs.make('hopper', backend='bogus')
  with pytest.raises(ValueError, match='generalized'):
    envs.make('swimmer', backend='spring')
  with pytest.raises(ValueError, match='jax'):
    envs.make('pendulum', backend='mjx')


def test_registry_plain_data():
  reg = envs.registry()
  assert set(reg) == set(envs.list_envs())
  for name in ['ant', 'hopper', 'inverted_pendulum', 'pendulum', 'cartpole',
               'gridworld', 'four_rooms', 'chain', 'garnet', 'CartpoleBalance',
               'CheetahRun', 'HopperHop', 'WalkerWalk', 'HumanoidRun']:
    assert name in reg, name
  assert 'fast' not in reg
  assert reg['cartpole']['discrete'] and not reg['cartpole']['differentiable']
  assert reg['pendulum']['differentiable']
  assert reg['gridworld']['observation_size'] == 25
  assert reg['hopper']['backends'] == list(envs.BACKENDS)
  assert reg['swimmer']['backends'] == ['generalized']
  assert reg['hopper']['default_backend'] == 'generalized'
  assert reg['CartpoleBalance']['default_backend'] == 'mjx'
  import json  # pylint: disable=g-import-not-at-top
  json.dumps(reg)  # plain data
  for name in ['pendulum', 'cartpole', 'four_rooms']:
    spec = _env(name).spec
    assert reg[name]['observation_size'] == spec.observation_size
    assert reg[name]['action_size'] == spec.action_size


def test_cached_resets_reuse_one_initial_state():
  env = envs.make('cartpole', episode_length=3, fresh_resets=False)
  s = jax.jit(env.reset)(jax.random.PRNGKey(0))
  step = jax.jit(env.step)
  starts = []
  for _ in range(9):
    s = step(s, jnp.int32(1))
    if s.done:
      starts.append(np.asarray(s.obs))
  assert len(starts) == 3
  np.testing.assert_array_equal(starts[0], starts[1])
  np.testing.assert_array_equal(starts[0], starts[2])
  np.testing.assert_array_equal(starts[0], s.cached_reset[1])


def test_fresh_resets_start_every_episode_anew():
  """Deterministic dynamics carry the key unchanged between resets: each reset
  must still split off a new key, in `step` and in `batch_step` alike."""
  env = envs.make('cartpole', episode_length=3)
  s = jax.jit(env.reset)(jax.random.PRNGKey(0))
  step = jax.jit(env.step)
  batch_step = jax.jit(env.batch_step)
  b = jax.tree.map(lambda x: x[None], s)
  starts, batch_starts = [], []
  for _ in range(9):
    s, b = step(s, jnp.int32(1)), batch_step(b, jnp.ones((1,), jnp.int32))
    if s.done:
      starts.append(np.asarray(s.obs))
      batch_starts.append(np.asarray(b.obs[0]))
  assert len(starts) == 3
  assert len({tuple(x) for x in starts}) == 3
  np.testing.assert_allclose(batch_starts, starts, rtol=1e-6)


@functools.lru_cache(maxsize=None)
def _batch_rollout_fn(env, reset_chunk):
  """`_rollout_fn` with the same keys, stepping the batch with `batch_step`."""

  def run(keys):
    k_reset, k_act = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
    s0 = jax.vmap(env.reset)(k_reset)
    step_keys = jnp.moveaxis(
        jax.vmap(lambda k: jax.random.split(k, T))(k_act), 1, 0)

    def body(s, k):
      a = jax.vmap(functools.partial(_policy, env))(k, s.obs)
      s = env.batch_step(s, a, reset_chunk=reset_chunk)
      return s, s

    _, traj = jax.lax.scan(body, s0, step_keys)
    return s0, jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), traj)

  return jax.jit(run)


def _assert_same_rollout(a, b):
  """Flags, counters and keys equal; floats equal up to vectorisation rounding."""
  for f in ('done', 'terminated', 'truncated', 'steps', 'key'):
    np.testing.assert_array_equal(getattr(a[1], f), getattr(b[1], f), err_msg=f)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5,
                                                       atol=1e-5), a, b)


@pytest.mark.parametrize('name', ['pendulum', 'cartpole'])
@pytest.mark.parametrize('reset_chunk', [1, None, N_ENVS])
def test_batch_step_equals_vmapped_step(name, reset_chunk):
  ref = _rollout(name)
  # Several envs end on one step: chunk 1 loops, N_ENVS resets all at once.
  assert ref[1].done.sum(axis=0).max() > 1
  keys = jax.random.split(jax.random.PRNGKey(0), N_ENVS)
  out = jax.tree.map(np.asarray,
                     _batch_rollout_fn(_env(name), reset_chunk)(keys))
  _assert_same_rollout(ref, out)


def test_batch_step_under_outer_vmap():
  """Vmapped over seeds (as training does): each seed as if run alone."""
  env = _env('cartpole')
  keys = jax.random.split(jax.random.PRNGKey(0), 2 * N_ENVS).reshape(
      2, N_ENVS, 2)
  seeds = jax.jit(jax.vmap(_batch_rollout_fn(env, 3)))(keys)
  for i in range(2):
    alone = _rollout_fn(env)(keys[i])
    _assert_same_rollout(jax.tree.map(np.asarray, alone),
                         jax.tree.map(lambda x: np.asarray(x[i]), seeds))


def test_batch_step_cached_resets_and_bad_chunk():
  env = envs.make('cartpole', episode_length=3, fresh_resets=False)
  s = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 4))
  a = jnp.ones((4,), jnp.int32)
  jax.tree.map(np.testing.assert_array_equal, env.batch_step(s, a),
               jax.vmap(env.step)(s, a))
  with pytest.raises(ValueError, match='reset_chunk'):
    _env('cartpole').batch_step(jax.vmap(_env('cartpole').reset)(
        jax.random.split(jax.random.PRNGKey(0), 4)), a, reset_chunk=5)
