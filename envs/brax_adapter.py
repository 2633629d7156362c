"""Brax / MJX environments behind the `Environment` interface.

Every environment in Brax's registry (`brax.envs`) runs on each physics
backend it supports: 'generalized' (the default here, as in Brax itself),
'positional', 'spring' and 'mjx'. Brax's own training wrappers are NOT used:
the time limit, action repeat and auto-reset come from `Environment`, so the
termination / truncation split and fresh random resets are the same for every
suite, and one unbatched environment is stepped per call (users vmap).
"""

from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp

from rlax_inf.envs import core

#: Physics backends of Brax, in the order `registry()` reports them.
BACKENDS = ('generalized', 'positional', 'spring', 'mjx')
#: Backend used when `make(name, backend=None)` is given a Brax name.
DEFAULT_BACKEND = 'generalized'

# Brax envs that only run on some backends (Brax raises otherwise).
_ONLY_BACKENDS = {'swimmer': ('generalized',)}
# In Brax's registry but not a real task: a unit-test stub with Python-side
# counters and no physics backend.
_EXCLUDED = ('fast',)


# Brax's registry (`brax.envs._envs`) less `_EXCLUDED`, listed here because
# importing brax takes seconds; tests/envs/test_registry.py checks it against
# the installed Brax.
BRAX_NAMES = (
    'ant', 'halfcheetah', 'hopper', 'humanoid', 'humanoidstandup',
    'inverted_double_pendulum', 'inverted_pendulum', 'pusher', 'reacher',
    'swimmer', 'walker2d',
)


def brax_env_names() -> Tuple[str, ...]:
  """Names of the Brax environments `make` accepts (a static list)."""
  return BRAX_NAMES


def supported_backends(name: str) -> Tuple[str, ...]:
  """Backends on which the Brax environment `name` can be built."""
  return _ONLY_BACKENDS.get(name, BACKENDS)


class BraxEnv(core.Environment):
  """A Brax `PipelineEnv` as a pure `Environment`.

  Args:
    name: Brax registry name, e.g. 'ant', 'hopper', 'inverted_pendulum'.
    backend: one of `supported_backends(name)`.
    episode_length: time limit in agent steps.
    action_repeat: Brax env steps per agent step.
    solver_iterations: None keeps the environment's own setting. An int
      replaces the maximum number of constraint-solver iterations of the
      physics: `sys.opt.iterations` on 'mjx' (MuJoCo's `opt.iterations`),
      `sys.solver_iterations` on 'generalized'. On 'mjx', 1 makes the solver a
      single step instead of a `lax.while_loop`, which reverse-mode
      differentiation needs (see `rlax_inf.envs.GRADIENT_NOTES`). 'spring' and
      'positional' have no such solver: ValueError.
    **kwargs: passed to the Brax environment's constructor (e.g.
      `n_frames`, `terminate_when_unhealthy`).
  """

  def __init__(self, name: str, backend: str, episode_length: int,
               action_repeat: int, solver_iterations: Optional[int] = None,
               **kwargs):
    from brax import envs as brax_envs  # pylint: disable=g-import-not-at-top
    choices = supported_backends(name)
    if backend not in choices:
      raise ValueError(
          f'Unknown backend {backend!r} for Brax env {name!r}; choose one of '
          f'{list(choices)}.')
    self.brax_env = brax_envs.get_environment(name, backend=backend, **kwargs)
    if solver_iterations is not None:
      self.brax_env.sys = _with_solver_iterations(
          self.brax_env.sys, backend, solver_iterations)
    obs = jax.eval_shape(self.brax_env.reset, jax.random.PRNGKey(0)).obs
    if not hasattr(obs, 'shape') or len(obs.shape) != 1:
      raise ValueError(f'Brax env {name!r} has a non-flat observation; only '
                       'flat observation vectors are supported.')
    super().__init__(core.EnvSpec(
        name=name,
        suite='brax',
        backend=backend,
        observation_size=int(obs.shape[0]),
        action_size=int(self.brax_env.action_size),
        discrete=False,
        action_low=-1.0,
        action_high=1.0,
        episode_length=episode_length,
        action_repeat=action_repeat,
        differentiable=True,
    ))

  def core_reset(self, key: jax.Array) -> Tuple[Any, jax.Array]:
    inner = canonical_state(self.brax_env.reset(key))
    return inner, inner.obs

  stochastic_dynamics = False

  def core_step(self, inner, action, key):
    del key  # Brax dynamics are deterministic given the action.
    # Some Brax envs update `state.metrics` in place: hand them a copy.
    inner = inner.replace(metrics=dict(inner.metrics), info=dict(inner.info))
    inner = canonical_state(self.brax_env.step(inner, action))
    return inner, inner.obs, inner.reward, inner.done


def _with_solver_iterations(sys, backend: str, iterations: int):
  """`sys` with the constraint solver's maximum iterations replaced."""
  if isinstance(iterations, bool) or not isinstance(iterations, int) or (
      iterations < 1):
    raise ValueError(
        f'solver_iterations must be an int >= 1 or None; got {iterations!r}.')
  if backend == 'mjx':
    return sys.tree_replace({'opt.iterations': iterations})
  if backend == 'generalized':
    return sys.replace(solver_iterations=iterations)
  raise ValueError(
      f'solver_iterations applies to the mjx and generalized backends; '
      f'{backend!r} has no iterative constraint solver.')


def canonical_state(state, with_info: bool = True):
  """Makes reward / done / metrics (and info) arrays of one fixed dtype.

  `lax.scan` and `jnp.where` need the physics state's leaves to keep their
  dtypes from step to step; Brax and Playground states mix Python and JAX
  scalars. Shared by the Brax and Playground adapters.
  """
  dtype = state.obs.dtype
  fields = dict(
      reward=jnp.asarray(state.reward, dtype),
      done=jnp.asarray(state.done, dtype),
      metrics={k: jnp.asarray(v, dtype) for k, v in state.metrics.items()})
  if with_info:
    fields['info'] = {k: jnp.asarray(v) if not isinstance(v, dict) else v
                      for k, v in state.info.items()}
  return state.replace(**fields)
