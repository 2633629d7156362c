"""Pure-JAX classic control: cart-pole (discrete) and pendulum (continuous).

No physics engine and no compile-heavy pipelines: these compile in well under
a second, for fast tests of discrete and continuous agents. Dynamics follow
the classic formulations (Barto, Sutton & Anderson 1983 cart-pole with Euler
integration; the torque-limited pendulum swing-up as in OpenAI Gym).
"""

import math

import jax
import jax.numpy as jnp

from rlax_inf.envs import core


class CartPole(core.Environment):
  """Cart-pole balancing with two discrete actions (push left / push right).

  obs = [x, ẋ, θ, θ̇]; reward 1 per step; terminates when |x| > 2.4 or
  |θ| > 12°. Initial state uniform in [-0.05, 0.05]⁴. Not differentiable
  (discrete actions).

  Args:
    episode_length: time limit in agent steps.
    action_repeat: Euler steps (τ = 0.02 s) per agent step.
  """

  gravity = 9.8
  mass_cart = 1.0
  mass_pole = 0.1
  half_length = 0.5
  force_mag = 10.0
  tau = 0.02
  x_limit = 2.4
  theta_limit = 12 * 2 * math.pi / 360

  def __init__(self, episode_length: int = 500, action_repeat: int = 1):
    super().__init__(core.EnvSpec(
        name='cartpole', suite='classic', backend='jax', observation_size=4,
        action_size=2, discrete=True, action_low=0.0, action_high=1.0,
        episode_length=episode_length, action_repeat=action_repeat,
        differentiable=False))

  def core_reset(self, key):
    s = jax.random.uniform(key, (4,), jnp.float32, -0.05, 0.05)
    return s, s

  stochastic_dynamics = False

  def core_step(self, inner, action, key):
    del key
    x, x_dot, theta, theta_dot = inner
    force = jnp.where(action == 1, self.force_mag, -self.force_mag)
    total_mass = self.mass_cart + self.mass_pole
    pole_ml = self.mass_pole * self.half_length
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    temp = (force + pole_ml * theta_dot**2 * sin) / total_mass
    theta_acc = (self.gravity * sin - cos * temp) / (
        self.half_length *
        (4.0 / 3.0 - self.mass_pole * cos**2 / total_mass))
    x_acc = temp - pole_ml * theta_acc * cos / total_mass
    s = jnp.stack([
        x + self.tau * x_dot,
        x_dot + self.tau * x_acc,
        theta + self.tau * theta_dot,
        theta_dot + self.tau * theta_acc,
    ])
    terminated = (jnp.abs(s[0]) > self.x_limit) | (
        jnp.abs(s[2]) > self.theta_limit)
    return s, s, jnp.ones((), jnp.float32), terminated


class Pendulum(core.Environment):
  """Torque-limited pendulum swing-up with a continuous action in [-1, 1].

  State (θ, θ̇), θ = 0 upright; obs = [cos θ, sin θ, θ̇]; torque u = 2·a;
  reward −(θ² + 0.1 θ̇² + 0.001 u²) with θ wrapped to [−π, π); never
  terminates (only truncates). θ̈ = 3g/(2l) sin θ + 3u/(m l²), semi-implicit
  Euler with dt = 0.05, θ̇ clipped to ±8. Differentiable w.r.t. the action
  (except where the clip of θ̇ or of the action is active).

  Args:
    episode_length: time limit in agent steps.
    action_repeat: integration steps per agent step.
  """

  max_speed = 8.0
  max_torque = 2.0
  dt = 0.05
  g = 10.0
  m = 1.0
  length = 1.0

  def __init__(self, episode_length: int = 200, action_repeat: int = 1):
    super().__init__(core.EnvSpec(
        name='pendulum', suite='classic', backend='jax', observation_size=3,
        action_size=1, discrete=False, action_low=-1.0, action_high=1.0,
        episode_length=episode_length, action_repeat=action_repeat,
        differentiable=True))

  def _obs(self, s):
    return jnp.stack([jnp.cos(s[0]), jnp.sin(s[0]), s[1]])

  def core_reset(self, key):
    # The default float dtype: float64 under `jax.enable_x64` (gradient
    # checks), so that `step` keeps the state's dtype.
    dtype = jnp.result_type(float)
    s = jax.random.uniform(key, (2,), dtype, jnp.array([-jnp.pi, -1.0], dtype),
                           jnp.array([jnp.pi, 1.0], dtype))
    return s, self._obs(s)

  stochastic_dynamics = False

  def core_step(self, inner, action, key):
    del key
    theta, theta_dot = inner[0], inner[1]
    u = self.max_torque * action[0]
    wrapped = (theta + jnp.pi) % (2 * jnp.pi) - jnp.pi
    cost = wrapped**2 + 0.1 * theta_dot**2 + 0.001 * u**2
    theta_dot = theta_dot + self.dt * (
        3 * self.g / (2 * self.length) * jnp.sin(theta) +
        3.0 / (self.m * self.length**2) * u)
    theta_dot = jnp.clip(theta_dot, -self.max_speed, self.max_speed)
    theta = theta + self.dt * theta_dot
    s = jnp.stack([theta, theta_dot])
    return s, self._obs(s), -cost, jnp.zeros((), jnp.float32)
