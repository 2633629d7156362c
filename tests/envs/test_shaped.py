"""envs.shaped: the upright inverted_pendulum's reward, flags and gradient."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_inf import envs
from rlax_inf.envs import shaped


@functools.lru_cache(maxsize=None)
def _envs():
  return (shaped.upright_inverted_pendulum(backend='spring', episode_length=20),
          envs.make('inverted_pendulum', backend='spring', episode_length=20))


@pytest.mark.slow  # two Brax spring compiles (~20 CPU s, 57 s wall on the loaded VM)
def test_same_dynamics_and_flags_as_brax_with_the_shaped_reward():
  env, plain = _envs()
  assert env.spec.name == 'inverted_pendulum_upright' and env.spec.differentiable
  assert env.spec.episode_length == 20

  def rollout(e):
    def body(s, _):
      s = e.step(s, jnp.full((1,), 0.6))  # pushes the pole over: terminates
      return s, (s.final_obs, s.reward, s.terminated, s.done)
    return jax.lax.scan(body, e.reset(jax.random.PRNGKey(0)), None, length=30)[1]

  obs, r, term, done = jax.jit(lambda: rollout(env))()
  p_obs, p_r, p_term, p_done = jax.jit(lambda: rollout(plain))()
  np.testing.assert_array_equal(obs, p_obs)
  np.testing.assert_array_equal(term, p_term)
  np.testing.assert_array_equal(done, p_done)
  assert np.all(p_r == 1.0) and np.sum(term) >= 1
  np.testing.assert_allclose(r, 1.0 - (obs[:, 1] / 0.2)**2, rtol=1e-6)
  alive = term == 0
  assert np.all((r[alive] >= 0) & (r[alive] <= 1))


@pytest.mark.slow  # compiles a float64 Brax gradient (~30 s on the loaded VM)
def test_reward_gradient_matches_central_differences_in_float64():
  with jax.enable_x64(True):
    env = shaped.upright_inverted_pendulum(backend='spring', episode_length=100)
    s0 = env.reset(jax.random.PRNGKey(1))

    def rollout(actions):
      def body(s, a):
        s = env.step(s, a)
        return s, (s.reward, s.final_obs[1])
      return jax.lax.scan(body, s0, actions)[1]

    # The env's own reward (State.reward, float32) differentiated, against float64
    # central differences of the formula on the float64 angles.
    ret = lambda actions: jnp.sum(rollout(actions)[0])
    formula = lambda actions: jnp.sum(1.0 - (rollout(actions)[1] / 0.2)**2)
    actions = 0.05 * jax.random.normal(jax.random.PRNGKey(2), (5, 1), jnp.float64)
    grad = jax.jit(jax.grad(ret))(actions)
    fd = envs.central_differences(jax.jit(formula), actions, 1e-6)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-9)
    assert np.max(np.abs(grad)) > 1e-3
