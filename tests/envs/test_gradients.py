"""Gradients of `step` w.r.t. actions against central finite differences.

The full measurement (Brax hopper / inverted_pendulum on generalized, spring
and MJX, float32 and float64) is `benchmarks/envs_gradients.py`, results in
benchmarks/results/envs_gradients.md: compiling reverse mode through those
physics steps takes minutes on a 2-core CPU. These tests check the same facts
where they are cheap: float64 (via `jax.enable_x64`, a thread-local context
manager, so the rest of the process stays float32), MJX reverse mode with and
without `solver_iterations=1`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_inf import envs


def _rel_err(g, fd):
  return float(np.linalg.norm(np.asarray(g) - fd) / np.linalg.norm(fd))


def _final_obs_objective(env, s0):
  """J(actions) = w · final_obs after len(actions) steps from s0 (w fixed)."""
  w = jnp.asarray(np.random.default_rng(7).normal(size=env.observation_size),
                  s0.obs.dtype)

  def objective(actions):
    s, _ = jax.lax.scan(lambda s, a: (env.step(s, a), None), s0, actions)
    return jnp.dot(s.final_obs, w)

  return objective


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


def test_pendulum_float32_gradient_is_accurate_float32_differences_are_not():
  """float64 differences are the reference; in float32 autodiff is far closer
  to it than float32 central differences are (the pattern the benchmark finds
  on the Brax envs)."""
  actions = np.random.default_rng(1).uniform(-0.5, 0.5, (10, 1))
  out = {}
  for x64 in (False, True):
    with jax.enable_x64(x64):
      env = envs.make('pendulum', fresh_resets=False)
      s0 = jax.jit(env.reset)(jax.random.PRNGKey(0))
      if not x64:
        s0_32 = jax.tree.map(np.asarray, s0)
      else:  # The same start as in float32, cast exactly.
        s0 = jax.tree.map(lambda t, v: jnp.asarray(v, t.dtype), s0, s0_32)
      assert s0.obs.dtype == (jnp.float64 if x64 else jnp.float32)
      objective = _final_obs_objective(env, s0)
      a = jnp.asarray(actions, s0.obs.dtype)
      grad = np.asarray(jax.jit(jax.grad(objective))(a), np.float64)
      fd = envs.central_differences(jax.jit(objective), a, 1e-2 if not x64 else 1e-5)
      out[x64] = grad, fd
  (g32, fd32), (g64, fd64) = out[False], out[True]
  # Measured: 1.1e-10, 7.3e-8, 6.9e-5.
  assert _rel_err(g64, fd64) < 1e-8
  assert _rel_err(g32, fd64) < 1e-6
  assert _rel_err(fd32, fd64) > 10 * _rel_err(g32, fd64)


def test_gradient_zero_through_clipped_and_nan_actions():
  """Outside [-1, 1] the action is clipped: zero gradient, never NaN."""
  env = envs.make('pendulum')
  s0 = jax.jit(env.reset)(jax.random.PRNGKey(0))
  g = jax.jit(jax.grad(lambda a: env.step(s0, a).reward))
  assert float(g(jnp.array([3.0]))[0]) == 0.0
  assert np.isfinite(float(g(jnp.array([jnp.nan]))[0]))
  assert float(g(jnp.array([0.2]))[0]) != 0.0


def test_solver_iterations_option():
  hopper = envs.make('hopper', backend='generalized', solver_iterations=2)
  assert hopper.brax_env.sys.solver_iterations == 2
  with pytest.raises(ValueError, match='spring'):
    envs.make('hopper', backend='spring', solver_iterations=1)
  with pytest.raises(ValueError, match='>= 1'):
    envs.make('hopper', backend='generalized', solver_iterations=0)


@pytest.mark.slow
def test_mjx_reverse_mode_needs_one_solver_iteration():
  """Default MJX solver (a while_loop): reverse mode fails at trace time.
  `solver_iterations=1`: reverse mode agrees with central differences already
  in float32 (benchmark: 5e-6 relative on inverted_pendulum, 2e-7 against
  float64 differences; forward mode works with the default solver)."""
  actions = jnp.full((2, 1), 0.1)
  one = envs.make('inverted_pendulum', backend='mjx', fresh_resets=False,
                  solver_iterations=1)
  assert one.brax_env.sys.opt.iterations == 1
  s0 = jax.jit(one.reset)(jax.random.PRNGKey(0))

  default = envs.make('inverted_pendulum', backend='mjx', fresh_resets=False)
  assert default.brax_env.sys.opt.iterations > 1
  with pytest.raises(ValueError, match='while_loop'):  # traced, not compiled
    jax.eval_shape(jax.grad(_final_obs_objective(default, s0)), actions)

  value_and_grad = jax.jit(jax.value_and_grad(_final_obs_objective(one, s0)))
  grad = value_and_grad(actions)[1]
  assert np.all(np.isfinite(grad)) and np.all(grad != 0)
  fd = envs.central_differences(lambda a: value_and_grad(a)[0], actions, 1e-2)
  assert _rel_err(grad, fd) < 1e-3
