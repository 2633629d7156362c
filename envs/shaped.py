"""Brax envs with a reward that depends smoothly on the state, for gradients through physics.

Brax's inverted_pendulum pays 1 per step while |θ| ≤ 0.2 and ends the episode
beyond: the reward's gradient w.r.t. the actions is zero everywhere, so an
analytic policy gradient (`rlax_inf.agents.apg`) has nothing to follow.
`upright_inverted_pendulum` keeps Brax's dynamics, observation and termination
and pays

    r = 1 − (θ' / 0.2)²,   θ' = the hinge angle after the step (obs[1]),

which is 1 upright, 0 at the termination angle (so the return is continuous
in θ there), and in [0, 1] on every step that does not terminate. An episode's
return is at most its length, as for Brax's reward (1000 for a balanced
1000-step episode).

    env = shaped.upright_inverted_pendulum(backend='spring', episode_length=1000)
    # pass it to training: training.Trainer(config, agent_config, 'apg', env=env)
"""

import dataclasses
import math

import jax.numpy as jnp

from rlax_inf.envs import brax_adapter

#: Brax inverted_pendulum's termination angle |θ| > 0.2 (rad).
ANGLE_LIMIT = 0.2


class UprightInvertedPendulum(brax_adapter.BraxEnv):
  """Brax inverted_pendulum with r = 1 − (θ' / 0.2)² (see the module doc)."""

  def __init__(self, backend: str = 'spring', episode_length: int = 1000,
               action_repeat: int = 1, **kwargs):
    """`episode_length` in agent steps (as `BraxEnv`; `upright_inverted_pendulum` converts)."""
    super().__init__('inverted_pendulum', backend, episode_length, action_repeat, **kwargs)
    self.spec = dataclasses.replace(self.spec, name='inverted_pendulum_upright')

  def core_step(self, inner, action, key):
    inner, obs, _, terminated = super().core_step(inner, action, key)
    reward = 1.0 - jnp.square(obs[1] / ANGLE_LIMIT)
    return inner, obs, reward, terminated


def upright_inverted_pendulum(backend: str = 'spring', episode_length: int = 1000,
                              action_repeat: int = 1, fresh_resets: bool = True,
                              **kwargs) -> UprightInvertedPendulum:
  """The shaped inverted_pendulum (module doc), built like `envs.make`'s Brax envs.

  Args:
    backend: a Brax backend ('spring' and 'generalized' have gradients checked
      against finite differences on inverted_pendulum: `envs.GRADIENT_NOTES`).
    episode_length: time limit in underlying steps.
    action_repeat: underlying steps per agent step.
    fresh_resets: as in `envs.make`.
    **kwargs: passed to `BraxEnv` (e.g. `solver_iterations`).
  """
  if episode_length < 1 or action_repeat < 1:
    raise ValueError('episode_length and action_repeat must be >= 1; got '
                     f'{episode_length}, {action_repeat}.')
  env = UprightInvertedPendulum(backend, math.ceil(episode_length / action_repeat),
                                action_repeat, **kwargs)
  env.fresh_resets = bool(fresh_resets)
  return env
