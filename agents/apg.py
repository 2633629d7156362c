"""Analytic policy gradient through a differentiable simulator, with an optional SHAC critic.

Driven by the differentiable loop (`differentiable.Loop`): each update gets one
H-step window of `num_envs` envs, its transitions [N, H] and the action
adjoints λ_t = ∂J/∂a_t of the window objective

  J = Σ_{n,t} g_t [r_t + γ (1 − terminated_t) c_t V̄(s'_t)]     (differentiable.window_objective)

(V̄ = 0 without the critic: brax.training's APG; with it, SHAC, Xu et al. 2022,
"Accelerated Policy Learning with Parallel Differentiable Simulation").

  policy:  a_t = tanh(μ_θ(s_t) + σ_θ(s_t) ε_t), ε_t ~ N(0, I) (reparameterised);
           L_π(θ) = −(1/(N H)) Σ_{n,t} sg(λ_t) · a_θ(s_t, ε_t),
           so ∇_θ L_π = −(1/(N H)) dJ/dθ, the pathwise gradient of the window
           return through the simulator (chain rule over the steps, see
           `differentiable`); one Adam step, global-norm clipped.
  critic:  (with `critic=True`) V_φ on the window's TD(λ) targets from the
           target critic V̄:  y = λ-returns of r_t with γ_t = γ (1 − terminated_t),
           v_t = V̄(s'_t), λ_t = λ (1 − done_t)       [rlax_inf.soft_lambda_returns]
           L_V = ½ mean (V_φ(s_t) − sg(y_t))², `critic_steps` full-batch Adam steps,
           then V̄ ← ρ V̄ + (1 − ρ) V_φ.  The policy bootstraps with V̄ (SHAC).

Needs an env whose step is differentiable w.r.t. the action (`spec.differentiable`:
the pure-JAX pendulum, Brax and MJX; `rlax_inf.envs.GRADIENT_NOTES` says where
that agrees with finite differences) and a reward that depends smoothly on the
state (Brax's inverted_pendulum pays a constant 1 per step, whose gradient is
zero: `rlax_inf.envs.shaped.upright_inverted_pendulum` shapes it).

float64: build and run under 64-bit JAX (`JAX_ENABLE_X64=1 rlax-inf train
--agent apg --set float64=true ...`, or inside `with jax.enable_x64(True):`);
`float64=True` casts the networks and observations to float64.
"""

import dataclasses
from typing import Any, Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp

import rlax_inf
from rlax_inf.agents import base
from rlax_inf.agents import gradients
from rlax_inf.agents import networks
from rlax_inf.agents import normalizer as normalizer_lib


@dataclasses.dataclass(frozen=True)
class APGConfig:
  """Hyper-parameters of the analytic policy gradient (SHAC with `critic=True`).

  Attributes:
    horizon: H, the window length in agent steps (the loop's sequence length).
    critic: bootstrap the window return with a learned value V̄(s_H) (SHAC).
    critic_steps: full-batch critic updates per window.
    float64: networks and observations in float64 (needs JAX_ENABLE_X64=1).
  """

  hidden: Tuple[int, ...] = (64, 64)  # policy and critic MLPs
  horizon: int = 32
  policy_lr: float = 1e-3
  critic_lr: float = 1e-3
  max_grad_norm: Optional[float] = 1.0  # global-norm clip per optimiser; None: off
  discount: float = 0.99
  critic: bool = False
  td_lambda: float = 0.95  # λ of the critic's TD(λ) targets
  critic_steps: int = 4
  polyak: float = 0.2  # ρ of the target critic, V̄ ← ρ V̄ + (1 − ρ) V (SHAC's 0.2)
  min_std: float = 1e-3  # floor of the policy's standard deviation (pre-tanh)
  normalize_observations: bool = True
  float64: bool = False

  def __post_init__(self):
    if self.horizon < 1:
      raise ValueError(f"horizon must be >= 1, got {self.horizon}")
    for name in ("policy_lr", "critic_lr", "min_std"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
    if self.max_grad_norm is not None and not self.max_grad_norm > 0:
      raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
    for name in ("discount", "td_lambda", "polyak"):
      if not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
    if self.critic_steps < 1:
      raise ValueError(f"critic_steps must be >= 1, got {self.critic_steps}")
    if any(w < 1 for w in self.hidden):
      raise ValueError(f"hidden widths must be >= 1, got {self.hidden}")


@flax.struct.dataclass
class APGState:
  """Everything the agent learns or carries between updates (arrays only)."""

  actor: Any
  critic: Any  # None without the critic
  target_critic: Any  # V̄; None without the critic
  actor_opt: Any
  critic_opt: Any
  normalizer: normalizer_lib.NormalizerState
  steps: jnp.ndarray  # updates taken


@flax.struct.dataclass
class APGParams:
  """What `act` needs: the normaliser, the actor and the bootstrap critic V̄ (or None)."""

  normalizer: Any
  actor: Any
  target_critic: Any


def make_losses(config: APGConfig, actor_net: networks.Actor, value_net: networks.MLP):
  """(actor_loss, critic_loss, critic_targets) of APG / SHAC.

    actor_loss(actor, obs[B, T, O], noise[B, T, A], return_grad[B, T, A]) -> (L_π, std)
    critic_loss(critic, obs[B, T, O], y[B, T]) -> L_V
    critic_targets(target_critic, next_obs, reward, terminated, done) -> y [B, T]
  """

  def actor_loss(actor, obs, noise, return_grad):
    mean, std = actor_net.apply(actor, obs)
    action = jnp.tanh(mean + std * noise)
    lam = jax.lax.stop_gradient(return_grad)
    n = lam.shape[0] * lam.shape[1]
    return -jnp.sum(lam * action) / n, jnp.mean(std)

  def value(params, obs):
    return value_net.apply(params, obs)[..., 0]

  def critic_loss(critic, obs, y):
    return 0.5 * jnp.mean(jnp.square(value(critic, obs) - jax.lax.stop_gradient(y)))

  returns = jax.vmap(rlax_inf.soft_lambda_returns)

  def critic_targets(target_critic, next_obs, reward, terminated, done):
    v_t = value(target_critic, next_obs)
    gamma_t = config.discount * (1.0 - terminated)
    lambda_t = config.td_lambda * (1.0 - done)
    y = returns(reward.astype(v_t.dtype), gamma_t.astype(v_t.dtype), v_t,
                jnp.zeros_like(v_t), lambda_t.astype(v_t.dtype))
    return jax.lax.stop_gradient(y)

  return actor_loss, critic_loss, critic_targets


def make(config: APGConfig, env_spec: Any) -> base.Agent:
  """The APG (SHAC with `config.critic`) agent for `env_spec`.

  Args:
    config: the hyper-parameters.
    env_spec: the env's `EnvSpec`: continuous actions, `differentiable`.

  Returns:
    The `base.Agent`, driven by the differentiable loop with windows of H =
    `config.horizon` steps.

  Raises:
    base.UnsupportedEnv: discrete actions, or an env that is not differentiable.
    ValueError: `float64=True` without 64-bit JAX.
  """
  space = base.check_action_space("apg", env_spec, (base.CONTINUOUS,))
  if not getattr(env_spec, "differentiable", False):
    raise base.UnsupportedEnv(
        f"apg needs an env whose step is differentiable w.r.t. the action; "
        f"{getattr(env_spec, 'name', 'this environment')!r} is not")
  if config.float64 and not jax.config.jax_enable_x64:
    raise ValueError("apg: float64=True needs 64-bit JAX: set JAX_ENABLE_X64=1 in the "
                     "environment (or build and run inside `with jax.enable_x64(True):`)")
  dtype = jnp.float64 if config.float64 else jnp.float32
  obs_size, action_size = int(env_spec.observation_size), int(env_spec.action_size)
  actor_net = networks.Actor(config.hidden, action_size, config.min_std)
  value_net = networks.MLP(tuple(config.hidden), 1)
  actor_tx = gradients.adam(config.policy_lr, config.max_grad_norm)
  critic_tx = gradients.adam(config.critic_lr, config.max_grad_norm)
  actor_loss, critic_loss, critic_targets = make_losses(config, actor_net, value_net)
  actor_step = gradients.make_step(actor_loss, actor_tx, has_aux=True)
  critic_step = gradients.make_step(critic_loss, critic_tx)
  cast = lambda tree: jax.tree.map(lambda x: x.astype(dtype), tree)

  def init(key):
    k_actor, k_critic = jax.random.split(key)
    actor = cast(actor_net.init(k_actor, obs_size))
    critic = critic_opt = None
    if config.critic:
      critic = cast(value_net.init(k_critic, jnp.zeros((1, obs_size))))
      critic_opt = critic_tx.init(critic)
    return APGState(actor=actor, critic=critic, target_critic=critic,
                    actor_opt=actor_tx.init(actor), critic_opt=critic_opt,
                    normalizer=normalizer_lib.init(obs_size), steps=jnp.zeros((), jnp.int32))

  def policy_params(state):
    return APGParams(normalizer=state.normalizer, actor=state.actor,
                     target_critic=state.target_critic)

  def normalize(normalizer, obs):
    return normalizer_lib.normalize(normalizer, obs.astype(dtype)).astype(dtype)

  def act(params, obs, key, deterministic=False):
    """tanh(μ + σ ε) (ε = 0 where `deterministic`) and the loop's extras.

    extras: 'noise' ε [N, A]; 'value' V̄(obs) [N] (zeros without the critic),
    differentiable w.r.t. obs; 'discount' γ [N]; 'return_grad' zeros [N, A].
    """
    x = normalize(params.normalizer, obs)
    mean, std = actor_net.apply(params.actor, x)
    noise = base.select(deterministic, jnp.zeros_like(mean),
                        jax.random.normal(key, mean.shape, mean.dtype))
    action = jnp.tanh(mean + std * noise)
    n = obs.shape[0]
    if config.critic:
      value = value_net.apply(params.target_critic, x)[..., 0]
    else:
      value = jnp.zeros((n,), dtype)
    extras = dict(noise=noise, value=value, discount=jnp.full((n,), config.discount, dtype),
                  return_grad=jnp.zeros_like(action))
    return action, extras

  observe = normalizer_lib.make_observe(config.normalize_observations)

  def update(state, batch, key):
    """One policy step from the window's adjoints, then the critic (SHAC)."""
    del key  # deterministic given the window
    obs = normalize(state.normalizer, batch.obs)
    return_grad = batch.extras["return_grad"].astype(dtype)
    (loss, std), actor, actor_opt = actor_step(
        state.actor, state.actor_opt, obs, batch.extras["noise"].astype(dtype), return_grad)
    metrics = dict(policy_surrogate=loss, policy_std=std,
                   return_grad_norm=jnp.sqrt(jnp.sum(jnp.square(return_grad))))
    critic, target, critic_opt = state.critic, state.target_critic, state.critic_opt
    if config.critic:
      next_obs = normalize(state.normalizer, batch.next_obs)
      y = critic_targets(target, next_obs, batch.reward, batch.terminated, batch.done)

      def critic_iteration(carry, _):
        params, opt = carry
        loss, params, opt = critic_step(params, opt, obs, y)
        return (params, opt), loss

      (critic, critic_opt), losses = jax.lax.scan(
          critic_iteration, (critic, critic_opt), None, length=config.critic_steps)
      target = jax.tree.map(lambda t, c: config.polyak * t + (1.0 - config.polyak) * c,
                            target, critic)
      metrics.update(critic_loss=losses[-1], value_mean=jnp.mean(y))
    new_state = APGState(actor=actor, critic=critic, target_critic=target, actor_opt=actor_opt,
                         critic_opt=critic_opt, normalizer=state.normalizer,
                         steps=state.steps + 1)
    return new_state, metrics

  return base.Agent(init=init, act=act, policy_params=policy_params, observe=observe,
                    update=update,
                    needs=base.Needs(base.DIFFERENTIABLE, config.horizon, space),
                    progress_keys=("window_objective",))
