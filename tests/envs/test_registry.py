"""`registry()` is static (fast `rlax-inf list`): its tables match the built envs."""

import subprocess
import sys

import jax
import pytest

from rlax_inf import envs


def test_registry_builds_nothing_and_imports_no_physics():
  code = ('import sys; from rlax_inf import envs; r = envs.registry(); '
          'print(len(r), "brax" in sys.modules, '
          '"mujoco_playground" in sys.modules)')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True, timeout=120).stdout.split()
  assert out == [str(len(envs.list_envs())), 'False', 'False']


def test_brax_names_match_installed_brax():
  from brax import envs as brax_envs  # pylint: disable=g-import-not-at-top
  installed = set(brax_envs._envs) - set(envs.brax_adapter._EXCLUDED)  # pylint: disable=protected-access
  assert set(envs.brax_adapter.BRAX_NAMES) == installed


@pytest.mark.parametrize('name', sorted(envs._PURE_SIZES))  # pylint: disable=protected-access
def test_pure_jax_sizes_match_built_envs(name):
  spec = envs.make(name).spec
  entry = envs.registry()[name]
  assert (entry['observation_size'], entry['action_size']) == (
      spec.observation_size, spec.action_size)
  assert entry['discrete'] == spec.discrete
  assert entry['differentiable'] == spec.differentiable


@pytest.mark.slow
def test_brax_sizes_match_built_envs():
  """Every Brax env, built on 'positional' (else its only backend).

  `eval_shape` of reset: Brax's own `observation_size` runs reset eagerly
  (minutes for all envs on CPU).
  """
  from brax import envs as brax_envs  # pylint: disable=g-import-not-at-top
  reg = envs.registry()
  assert set(envs._BRAX_SIZES) == set(envs.brax_adapter.BRAX_NAMES)  # pylint: disable=protected-access
  for name in envs.brax_adapter.BRAX_NAMES:
    backends = envs.brax_adapter.supported_backends(name)
    backend = 'positional' if 'positional' in backends else backends[0]
    env = brax_envs.get_environment(name, backend=backend)
    obs = jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs
    assert (reg[name]['observation_size'], reg[name]['action_size']) == (
        obs.shape[0], env.action_size), name
