"""MuJoCo Playground's DM Control Suite behind the `Environment` interface.

Optional extra: `pip install rlax-inf[playground]` (PyPI `playground`, import
`mujoco_playground`; it pulls warp-lang). The DM Control Suite models ship
with the package, so nothing is downloaded. Playground's own episode length
and action repeat settings are not used: `Environment` provides them.

Backends: 'mjx' (MuJoCo XLA in JAX, `impl='jax'`, runs on CPU and GPU; the
default) and 'warp' (`impl='warp'`, NVIDIA GPUs only).
"""

import importlib.util
from typing import Tuple

import jax
import jax.numpy as jnp

from rlax_inf.envs import brax_adapter
from rlax_inf.envs import core

PLAYGROUND_BACKENDS = ('mjx', 'warp')
_IMPL = {'mjx': 'jax', 'warp': 'warp'}

# The suite's names, listed here so that `registry()` works without the extra.
DM_CONTROL_NAMES = (
    'AcrobotSwingup', 'AcrobotSwingupSparse', 'BallInCup', 'CartpoleBalance',
    'CartpoleBalanceSparse', 'CartpoleSwingup', 'CartpoleSwingupSparse',
    'CheetahRun', 'FingerSpin', 'FingerTurnEasy', 'FingerTurnHard',
    'FishSwim', 'HopperHop', 'HopperStand', 'HumanoidStand', 'HumanoidWalk',
    'HumanoidRun', 'PendulumSwingup', 'PointMass', 'ReacherEasy',
    'ReacherHard', 'SwimmerSwimmer6', 'WalkerRun', 'WalkerStand', 'WalkerWalk',
)


def available() -> bool:
  """Whether the `playground` extra is installed (without importing it)."""
  return importlib.util.find_spec('mujoco_playground') is not None


def playground_env_names() -> Tuple[str, ...]:
  """DM Control Suite names (a static list: importing the package is slow).

  tests/envs/test_playground.py checks it against the installed package.
  """
  return DM_CONTROL_NAMES


class PlaygroundEnv(core.Environment):
  """A MuJoCo Playground DM Control Suite task as a pure `Environment`.

  `terminated` is Playground's `done` (for these tasks: the physics state
  became non-finite); the time limit is a truncation.

  Args:
    name: DM Control Suite name, e.g. 'CartpoleBalance', 'CheetahRun'.
    backend: 'mjx' or 'warp'.
    episode_length: time limit in agent steps.
    action_repeat: Playground env steps per agent step.
    **kwargs: Playground config overrides (e.g. `ctrl_dt`, `sim_dt`).
  """

  def __init__(self, name: str, backend: str, episode_length: int,
               action_repeat: int, **kwargs):
    if backend not in PLAYGROUND_BACKENDS:
      raise ValueError(
          f'Unknown backend {backend!r} for Playground env {name!r}; choose '
          f'one of {list(PLAYGROUND_BACKENDS)}.')
    try:
      from mujoco_playground import dm_control_suite  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(
          f'{name!r} needs MuJoCo Playground: pip install '
          "'rlax-inf[playground]'") from e
    overrides = {'impl': _IMPL[backend], **kwargs}
    self.playground_env = dm_control_suite.load(
        name, config_overrides=overrides)
    obs = jax.eval_shape(self.playground_env.reset,
                         jax.random.PRNGKey(0)).obs
    if not hasattr(obs, 'shape') or len(obs.shape) != 1:
      raise ValueError(f'Playground env {name!r} has a non-flat observation.')
    super().__init__(core.EnvSpec(
        name=name, suite='playground', backend=backend,
        observation_size=int(obs.shape[0]),
        action_size=int(self.playground_env.action_size), discrete=False,
        action_low=-1.0, action_high=1.0, episode_length=episode_length,
        action_repeat=action_repeat, differentiable=backend == 'mjx'))

  def core_reset(self, key):
    inner = brax_adapter.canonical_state(self.playground_env.reset(key), with_info=False)
    return inner, inner.obs

  stochastic_dynamics = False

  def core_step(self, inner, action, key):
    del key  # MJX dynamics are deterministic given the action.
    inner = inner.replace(metrics=dict(inner.metrics), info=dict(inner.info))
    inner = brax_adapter.canonical_state(self.playground_env.step(inner, action),
                                         with_info=False)
    return inner, inner.obs, inner.reward, inner.done
