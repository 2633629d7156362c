"""Brax adapter: the contract on a real physics env, and gradients.

Uses inverted_pendulum on the 'spring' backend (the fastest Brax compile on
CPU); everything is compiled once per module.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_inf import envs

N_ENVS = 64
T = 30
EPISODE_LENGTH = 15


@functools.lru_cache(maxsize=None)
def _env():
  return envs.make('inverted_pendulum', backend='spring',
                   episode_length=EPISODE_LENGTH)


@functools.lru_cache(maxsize=None)
def _rollout_fn():
  """64 envs × T steps; half push hard (terminate), half gently (truncate)."""
  env = _env()

  def one(key):
    k_reset, k_act, k_kind = jax.random.split(key, 3)
    s0 = env.reset(k_reset)
    hard = jax.random.bernoulli(k_kind)

    def body(s, k):
      gentle = jax.random.uniform(k, (1,), minval=-0.1, maxval=0.1)
      a = jnp.where(hard, jnp.ones((1,)), gentle)
      s = env.step(s, a)
      return s, s

    _, traj = jax.lax.scan(body, s0, jax.random.split(k_act, T))
    return s0, traj

  return jax.jit(jax.vmap(one))


@functools.lru_cache(maxsize=None)
def _rollout():
  keys = jax.random.split(jax.random.PRNGKey(0), N_ENVS)
  return jax.tree.map(np.asarray, _rollout_fn()(keys))


def test_spec():
  env = _env()
  assert env.spec.suite == 'brax' and env.spec.backend == 'spring'
  assert env.observation_size == 4 and env.action_size == 1
  assert not env.discrete and env.differentiable
  assert (env.action_low, env.action_high) == (-1.0, 1.0)
  reg = envs.registry()['inverted_pendulum']
  assert (reg['observation_size'], reg['action_size']) == (4, 1)


def test_termination_and_truncation_flags():
  _, traj = _rollout()
  assert traj.obs.shape == (N_ENVS, T, 4)
  assert np.all(np.isfinite(traj.obs))
  # Termination is the real terminal condition |pole angle| > 0.2.
  np.testing.assert_array_equal(traj.terminated == 1,
                                np.abs(traj.final_obs[..., 1]) > 0.2)
  assert traj.terminated.sum() > 0
  done, term, trunc = traj.done, traj.terminated, traj.truncated
  np.testing.assert_array_equal(done, np.maximum(term, trunc))
  length = np.zeros(N_ENVS)
  for t in range(T):
    length += 1
    np.testing.assert_array_equal(
        trunc[:, t] == 1, (length == EPISODE_LENGTH) & (term[:, t] == 0))
    length = np.where(done[:, t] == 1, 0, length)
  assert trunc.sum() > 0


def test_auto_reset():
  _, traj = _rollout()
  done = traj.done == 1
  not_done = ~done
  np.testing.assert_array_equal(traj.final_obs[not_done], traj.obs[not_done])
  # After a reset: q, qd uniform in [-0.01, 0.01].
  assert np.all(np.abs(traj.obs[done]) <= 0.01 + 1e-6)
  assert np.all(traj.steps[done] == 0)
  assert np.all(traj.metrics['running_length'][done] == 0)
  # Return of inverted_pendulum = number of steps (reward 1 per step).
  np.testing.assert_array_equal(traj.metrics['episode_return'],
                                traj.metrics['episode_length'])


def test_deterministic():
  _, a = _rollout()
  keys = jax.random.split(jax.random.PRNGKey(0), N_ENVS)
  _, b = _rollout_fn()(keys)
  np.testing.assert_array_equal(a.obs, b.obs)
  np.testing.assert_array_equal(a.done, b.done)


def test_batch_step_equals_vmapped_step():
  """`batch_step` (resets gathered, computed, scattered into Brax's physics
  state) gives the rollout of `jax.vmap(env.step)`."""
  env = _env()

  def run(keys):
    k_reset, k_act, k_kind = jnp.moveaxis(
        jax.vmap(lambda k: jax.random.split(k, 3))(keys), 1, 0)
    s0 = jax.vmap(env.reset)(k_reset)
    hard = jax.vmap(jax.random.bernoulli)(k_kind)
    step_keys = jnp.moveaxis(
        jax.vmap(lambda k: jax.random.split(k, T))(k_act), 1, 0)

    def body(s, k):
      gentle = jax.vmap(lambda k: jax.random.uniform(
          k, (1,), minval=-0.1, maxval=0.1))(k)
      a = jnp.where(hard[:, None], jnp.ones((N_ENVS, 1)), gentle)
      s = env.batch_step(s, a, reset_chunk=8)
      return s, s

    _, traj = jax.lax.scan(body, s0, step_keys)
    return jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), traj)

  keys = jax.random.split(jax.random.PRNGKey(0), N_ENVS)
  out = jax.tree.map(np.asarray, jax.jit(run)(keys))
  _, ref = _rollout()
  assert ref.done.sum(axis=0).max() > 8  # some steps need two loop iterations
  for f in ('done', 'terminated', 'truncated', 'steps', 'key'):
    np.testing.assert_array_equal(getattr(out, f), getattr(ref, f), err_msg=f)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5,
                                                       atol=1e-5), out, ref)


@pytest.mark.slow  # ~55 CPU s; benchmarks/envs_gradients covers every env and backend
def test_gradients_finite_and_match_finite_differences():
  """d(pole angle after 3 steps)/d(actions): finite and ≈ central differences.

  Forward mode keeps the compile short; reverse mode through the same `step`
  is tested in test_gradients.py and measured on Brax by
  `benchmarks/envs_gradients.py`. Cached resets: no reset is compiled into the
  differentiated step (about a quarter of the compile time; no episode ends
  within the 3 steps either way).
  """
  env = envs.make('inverted_pendulum', backend='spring',
                  episode_length=EPISODE_LENGTH, fresh_resets=False)
  s0 = jax.jit(env.reset)(jax.random.PRNGKey(1))

  def angle_after(actions):
    def body(s, a):
      return env.step(s, a), None
    s, _ = jax.lax.scan(body, s0, actions)
    return s.final_obs[1]

  f = jax.jit(lambda a: (angle_after(a), jax.jacfwd(angle_after)(a)))
  actions = jnp.full((3, 1), 0.1)
  value, grad = f(actions)
  grad = np.asarray(grad)[:, 0]
  assert np.all(np.isfinite(grad)) and np.all(grad != 0)
  eps = 1e-2
  bumps = np.eye(3)[:, :, None] * eps
  fd = np.array([(f(actions + b)[0] - f(actions - b)[0]) / (2 * eps)
                 for b in bumps])
  np.testing.assert_allclose(grad, fd, rtol=0.05, atol=1e-4)
  assert abs(float(value)) < 0.2  # still upright: no auto-reset in between
