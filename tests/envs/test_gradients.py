"""Reverse-mode gradients of `step` w.r.t. actions against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np

from rlax_inf import envs


def test_pendulum_reverse_mode_matches_finite_differences():
  env = envs.make('pendulum', episode_length=200)
  s0 = jax.jit(env.reset)(jax.random.PRNGKey(0))

  def total_reward(actions):
    def body(s, a):
      s = env.step(s, a)
      return s, s.reward
    _, r = jax.lax.scan(body, s0, actions)
    return jnp.sum(r)

  f = jax.jit(jax.value_and_grad(total_reward))
  actions = jax.random.uniform(jax.random.PRNGKey(1), (10, 1), minval=-0.5,
                               maxval=0.5)
  _, grad = f(actions)
  grad = np.asarray(grad)[:, 0]
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  eps = 1e-3
  fd = np.array([(f(actions.at[i, 0].add(eps))[0] -
                  f(actions.at[i, 0].add(-eps))[0]) / (2 * eps)
                 for i in range(10)])
  np.testing.assert_allclose(grad, fd, rtol=2e-2, atol=2e-2)


def test_gradient_zero_through_clipped_and_nan_actions():
  """Outside [-1, 1] the action is clipped: zero gradient, never NaN."""
  env = envs.make('pendulum')
  s0 = jax.jit(env.reset)(jax.random.PRNGKey(0))
  g = jax.jit(jax.grad(lambda a: env.step(s0, a).reward))
  assert float(g(jnp.array([3.0]))[0]) == 0.0
  assert np.isfinite(float(g(jnp.array([jnp.nan]))[0]))
  assert float(g(jnp.array([0.2]))[0]) != 0.0
