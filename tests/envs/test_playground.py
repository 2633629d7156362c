"""MuJoCo Playground DM Control Suite through `envs.make` (optional extra)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_inf import envs

mujoco_playground = pytest.importorskip('mujoco_playground')


def test_static_names_match_package():
  from mujoco_playground import dm_control_suite  # pylint: disable=g-import-not-at-top
  assert set(envs.playground.DM_CONTROL_NAMES) == set(dm_control_suite.ALL_ENVS)


def test_cartpole_balance_builds_and_steps():
  env = envs.make('CartpoleBalance', episode_length=3)
  assert env.spec.suite == 'playground' and env.spec.backend == 'mjx'
  reg = envs.registry()['CartpoleBalance']
  assert (env.observation_size, env.action_size) == (
      reg['observation_size'], reg['action_size'])

  def rollout(key):
    s = env.reset(key)

    def body(s, a):
      s = env.step(s, a)
      return s, s

    return jax.lax.scan(body, s, jnp.full((4, 1), 0.5))[1]

  traj = jax.jit(jax.vmap(rollout))(jax.random.split(jax.random.PRNGKey(0), 2))
  assert traj.obs.shape == (2, 4, env.observation_size)
  assert np.all(np.isfinite(np.asarray(traj.obs)))
  # Balance reward is in [0, 1]; the time limit (3) truncates, not terminates.
  assert np.all((np.asarray(traj.reward) >= 0) & (np.asarray(traj.reward) <= 1))
  np.testing.assert_array_equal(np.asarray(traj.truncated)[:, 2], 1.0)
  np.testing.assert_array_equal(np.asarray(traj.terminated), 0.0)
  np.testing.assert_array_equal(np.asarray(traj.steps)[:, 3], 1)


def test_unknown_playground_backend():
  with pytest.raises(ValueError, match='warp'):
    envs.make('CheetahRun', backend='positional')
