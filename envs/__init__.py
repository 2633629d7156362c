"""rlax_inf.envs: one pure, jittable, vmappable environment interface.

    from rlax_inf import envs
    env = envs.make('hopper', backend='positional', episode_length=1000)
    state = jax.vmap(env.reset)(jax.random.split(key, 64))
    state = jax.vmap(env.step)(state, actions)      # auto-resets when done

Suites (see `list_envs()` / `registry()`):
* Brax: every env in Brax's registry on backends `BACKENDS`
  ('generalized' is the default, as in Brax; 'positional' and 'spring' compile
  fastest on CPU; 'mjx' is MuJoCo XLA).
* MuJoCo Playground DM Control Suite ('CartpoleBalance', 'CheetahRun', ...):
  optional extra `rlax-inf[playground]`; backends 'mjx' (default) / 'warp'.
* Pure-JAX classic control: 'cartpole' (discrete), 'pendulum' (continuous).
* Pure-JAX tabular: 'gridworld', 'four_rooms', 'chain', 'garnet' built on
  `tabular.TabularMDP`, which `rlax_inf.messages` solves exactly.

`State` fields: obs, reward, done, terminated, truncated, final_obs, metrics
(episode_return, episode_length, running_return, running_length,
episodes_completed), inner, steps, key. Bootstrap with
`discount = 1 - terminated`; store `final_obs` as the next observation.

Time limit: `episode_length` counts underlying environment steps, as in Brax,
so an episode is truncated after ceil(episode_length / action_repeat) agent
steps; `env.spec.episode_length` is that number of agent steps.

Actions: continuous float [action_size] in [-1, 1]; discrete int32 [].
Out-of-range values are clipped; NaN → 0, ±inf → ±1 (never NaN states).
A wrong shape or dtype raises ValueError naming `action` at trace time.

Gradients (`spec.differentiable`): `step` is differentiable w.r.t. the action
for 'pendulum' and the Brax / MJX envs. What agrees with finite differences
on short horizons, with numbers: GRADIENT_NOTES. MJX reverse mode needs
`make(name, backend='mjx', solver_iterations=1)`.
"""

import math
from typing import Any, Dict, List, Optional

from rlax_inf.envs import brax_adapter
from rlax_inf.envs import classic
from rlax_inf.envs import core
from rlax_inf.envs import differentiation
from rlax_inf.envs import normalization
from rlax_inf.envs import playground
from rlax_inf.envs import tabular
from rlax_inf.envs.brax_adapter import BraxEnv
from rlax_inf.envs.classic import CartPole
from rlax_inf.envs.classic import Pendulum
from rlax_inf.envs.core import EnvSpec
from rlax_inf.envs.core import Environment
from rlax_inf.envs.core import METRIC_NAMES
from rlax_inf.envs.core import State
from rlax_inf.envs.differentiation import central_differences
from rlax_inf.envs.normalization import RunningStatistics
from rlax_inf.envs.normalization import batch_statistics
from rlax_inf.envs.normalization import denormalize
from rlax_inf.envs.normalization import init_statistics
from rlax_inf.envs.normalization import merge_across
from rlax_inf.envs.normalization import merge_statistics
from rlax_inf.envs.normalization import normalize
from rlax_inf.envs.normalization import update_statistics
from rlax_inf.envs.playground import PlaygroundEnv
from rlax_inf.envs.tabular import TabularEnv
from rlax_inf.envs.tabular import TabularMDP

#: Brax physics backends (for Brax env names).
BACKENDS = brax_adapter.BACKENDS
#: Backend per suite: the choices `make` accepts and its default (first).
SUITE_BACKENDS = {
    'brax': BACKENDS,
    'playground': playground.PLAYGROUND_BACKENDS,
    'classic': ('jax',),
    'tabular': ('jax',),
}

_CLASSIC = {'cartpole': CartPole, 'pendulum': Pendulum}

# Static (observation_size, action_size), so that `registry()` builds nothing
# (building every env takes tens of seconds). All checked against the built
# environments in tests/envs/test_registry.py (Playground: test_playground.py).
# Pure-JAX envs, default constructor arguments (garnet: 20 states, 4 actions).
_PURE_SIZES = {
    'cartpole': (4, 2), 'pendulum': (3, 1), 'gridworld': (25, 4),
    'four_rooms': (104, 4), 'chain': (10, 2), 'garnet': (20, 4),
}
# Brax's envs; the same on every backend.
_BRAX_SIZES = {
    'ant': (27, 8), 'halfcheetah': (17, 6), 'hopper': (11, 3),
    'humanoid': (244, 17), 'humanoidstandup': (244, 17),
    'inverted_double_pendulum': (8, 1), 'inverted_pendulum': (4, 1),
    'pusher': (23, 7), 'reacher': (11, 2), 'swimmer': (8, 2),
    'walker2d': (17, 6),
}
# Playground DM Control Suite (impl=jax); checked in test_playground.py.
_PLAYGROUND_SIZES = {
    'AcrobotSwingup': (6, 1), 'AcrobotSwingupSparse': (6, 1), 'BallInCup': (8, 2),
    'CartpoleBalance': (5, 1), 'CartpoleBalanceSparse': (5, 1), 'CartpoleSwingup': (5, 1),
    'CartpoleSwingupSparse': (5, 1), 'CheetahRun': (17, 6), 'FingerSpin': (9, 2),
    'FingerTurnEasy': (12, 2), 'FingerTurnHard': (12, 2), 'FishSwim': (24, 5),
    'HopperHop': (15, 4), 'HopperStand': (15, 4), 'HumanoidStand': (67, 21),
    'HumanoidWalk': (67, 21), 'HumanoidRun': (67, 21), 'PendulumSwingup': (3, 1),
    'PointMass': (4, 2), 'ReacherEasy': (6, 2), 'ReacherHard': (6, 2),
    'SwimmerSwimmer6': (25, 5), 'WalkerRun': (24, 6), 'WalkerStand': (24, 6),
    'WalkerWalk': (24, 6),
}

#: What agrees with finite differences, per suite/backend: measured on this
#: package's 2-core CPU with jax 0.10.2 / brax 0.14.2 / mujoco-mjx 3.17.0 by
#: `python -m benchmarks.envs_gradients` (results/envs_gradients.md). J is a
#: fixed random projection of the observation after H agent steps, actions in
#: ±0.1; "rel" = ‖g − fd‖ / ‖fd‖ over all H × action_size components against
#: float64 central differences with ε = 1e-6 (the reference). float64: build
#: and run the env inside `with jax.enable_x64(True):`. Checked cheaply in
#: tests/envs/test_gradients.py (pendulum both dtypes, MJX) and test_brax.py.
GRADIENT_NOTES = {
    'pendulum': (
        'agrees: reverse mode, H=10, rel 1e-7 (float32), 1e-9 (float64).'),
    'brax/spring': (
        'agrees on inverted_pendulum, H=5, reverse mode: rel 2e-7 (float32), '
        '9e-11 (float64).'),
    'brax/positional': 'not measured (same autodiff path as spring).',
    'brax/generalized': (
        'agrees in reverse mode. inverted_pendulum, H=5: rel 1e-7 (float32), '
        '7e-11 (float64). hopper, H=3 (in the air): 3e-7 / 4e-11; H=30 (foot '
        'on the ground by step ~15): 1.2e-6 (float32) / 1.1e-9 (float64). '
        'With contact, J jumps within 1e-5 of the point (contact / solver '
        'switching): float64 central differences agree only at ε = 1e-6 '
        '(~100% off at 1e-4 and 1e-5), which float32 cannot resolve: float32 '
        'differences are 45% off at best (ε=1e-2). The float32 GRADIENT is '
        'accurate; it is float32 finite differences that disagree.'),
    'brax/mjx': (
        'default solver (sys.opt.iterations > 1, a lax.while_loop): reverse '
        'mode raises ValueError at trace time; forward mode works and agrees '
        '(inverted_pendulum, H=5: rel 1e-7 float32). With '
        "make(..., solver_iterations=1) reverse mode works and agrees, float32 "
        'included: inverted_pendulum H=5: 5e-7 (float32) / 5e-11 (float64); '
        'hopper H=3: 4e-6 / 1e-9; H=30 (in contact): 1.3e-6 / 7e-10, no jumps '
        '(float64 differences converge as ε²; float32 differences 3e-3 at '
        'best). (Brax ant and humanoid '
        'already set opt.iterations = 1 on mjx.)'),
    'playground/mjx': 'as brax/mjx (MJX underneath); not measured here.',
    'cartpole': 'not differentiable (discrete actions).',
    'tabular': 'not differentiable (discrete actions, sampled transitions).',
}


def list_envs() -> List[str]:
  """All environment names `make` accepts (plain strings)."""
  return (list(_CLASSIC) + list(tabular.TABULAR_MDPS) +
          list(brax_adapter.brax_env_names()) +
          list(playground.playground_env_names()))


def _suite(name: str) -> str:
  if name in _CLASSIC:
    return 'classic'
  if name in tabular.TABULAR_MDPS:
    return 'tabular'
  if name in brax_adapter.brax_env_names():
    return 'brax'
  if name in playground.playground_env_names():
    return 'playground'
  raise ValueError(
      f'Unknown environment {name!r}; choose one of {list_envs()}.')


def make(name: str, backend: Optional[str] = None, episode_length: int = 1000,
         action_repeat: int = 1, fresh_resets: bool = True,
         **kwargs) -> Environment:
  """Builds an environment.

  Args:
    name: a name from `list_envs()`.
    backend: Brax names: one of `BACKENDS` (default 'generalized', Brax's
      own default; 'swimmer' supports only it). Playground names: 'mjx'
      (default) or 'warp'. Pure-JAX names: None or 'jax'.
    episode_length: time limit in underlying environment steps (Brax's
      convention); episodes are truncated after
      ceil(episode_length / action_repeat) agent steps.
    action_repeat: underlying steps per agent step (rewards are summed).
    fresh_resets: True: every auto-reset samples a new initial state. False:
      Brax's behaviour, one initial state per env (sampled at `reset`) is
      reused by every auto-reset; `step` is cheaper (no reset inside).
    **kwargs: passed to the environment constructor (Brax env arguments,
      Playground config overrides, tabular MDP arguments; `key` for garnet).
      Brax names also take `solver_iterations` (`BraxEnv`): the physics'
      constraint-solver iterations; 1 on 'mjx' enables reverse-mode gradients
      (GRADIENT_NOTES).

  Returns:
    An `Environment` with pure `reset(key)` and `step(state, action)`.

  Raises:
    ValueError: unknown name or backend (naming the choices).
  """
  suite = _suite(name)
  choices = SUITE_BACKENDS[suite]
  if suite == 'brax':
    choices = brax_adapter.supported_backends(name)
  if backend is None:
    backend = choices[0]
  if backend not in choices:
    raise ValueError(f'Unknown backend {backend!r} for {name!r} ({suite}); '
                     f'choose one of {list(choices)}.')
  if episode_length < 1 or action_repeat < 1:
    raise ValueError('episode_length and action_repeat must be >= 1; got '
                     f'{episode_length}, {action_repeat}.')
  agent_steps = math.ceil(episode_length / action_repeat)
  if suite == 'classic':
    env = _CLASSIC[name](agent_steps, action_repeat, **kwargs)
  elif suite == 'tabular':
    env = tabular.make_tabular(name, agent_steps, action_repeat, **kwargs)
  elif suite == 'brax':
    env = BraxEnv(name, backend, agent_steps, action_repeat, **kwargs)
  else:
    env = PlaygroundEnv(name, backend, agent_steps, action_repeat, **kwargs)
  env.fresh_resets = bool(fresh_resets)
  return env


def registry() -> Dict[str, Dict[str, Any]]:
  """Plain-data description of every environment (for `rlax-inf list`).

  Static: builds no environment and imports neither Brax nor Playground (the
  sizes are tables checked against the built envs by the tests). The exact
  spec of one configuration is `make(name, ...).spec`.

  Returns:
    {name: {'suite', 'backends', 'default_backend', 'observation_size',
    'action_size', 'discrete', 'action_low', 'action_high', 'differentiable',
    'available'}}. Sizes are for the default constructor arguments (tabular
    defaults; garnet: 20 states, 4 actions); None where unknown without the
    optional extra.
  """
  out = {}
  for name in list_envs():
    suite = _suite(name)
    backends = SUITE_BACKENDS[suite]
    if suite == 'brax':
      backends = brax_adapter.supported_backends(name)
    entry = {
        'suite': suite,
        'backends': list(backends),
        'default_backend': backends[0],
        'discrete': suite in ('tabular',) or name == 'cartpole',
        'action_low': -1.0,
        'action_high': 1.0,
        'differentiable': suite in ('brax', 'playground') or name == 'pendulum',
        'available': suite != 'playground' or playground.available(),
    }
    if suite == 'brax':
      entry['observation_size'], entry['action_size'] = _BRAX_SIZES.get(
          name, (None, None))
    elif suite == 'playground':
      entry['observation_size'], entry['action_size'] = _PLAYGROUND_SIZES.get(
          name, (None, None))
    else:
      entry['observation_size'], entry['action_size'] = _PURE_SIZES[name]
    if entry['discrete']:
      entry['action_low'] = 0
      entry['action_high'] = entry['action_size'] - 1
    out[name] = entry
  return out

