"""Soft actor-critic with a reverse- or forward-KL policy step.

SAC (Haarnoja et al., 2018; Algorithm 1 of Lavington et al., 2021): twin critics
with Polyak-averaged targets, a tanh-Gaussian actor and an automatically tuned
temperature α. With `policy_loss="fkl"` (SAC-FKL, Lavington et al., 2021) only
the policy step changes: N actions are resampled per state and the actor fits
the self-normalised target p*(a|s) ∝ exp(Q(s, a)/α) by maximum likelihood.

Per batch of transitions (s, a, r, d, s') with d = 1 at real terminals:

  critic:  y = r + γ (1 − d) (min_j Q̄_j(s', a') − α log π(a'|s')),  a' ~ π(·|s')
           L_Q = ½ mean_{j, batch} (Q_j(s, a) − sg(y))²           [rlax_inf.soft_td_target]
  actor:   RKL  L_π = mean_s mean_k [α log π(a_k|s) − min_j Q_j(s, a_k)],  a_k = f_θ(ε_k; s)
                                                                [rlax_inf.reverse_kl_loss]
           FKL  L_π = −mean_s Σ_k w̄_k log π(a_k|s),  a_k ~ sg(π), w̄ = snis(Q(s, a_k)/α − log π)
                                                                [rlax_inf.forward_kl_loss]
  alpha:   L_α = α · (Ĥ − H̄),   H̄ = −|A| by default          [rlax_inf.entropy_temperature_loss]
  targets: θ̄ ← (1 − ρ) θ̄ + ρ θ                                 [optax.incremental_update]

`critic_layer_norm=True` puts a LayerNorm after each hidden layer of the critics
(brax.training's SAC `q_network_layer_norm`, the critics of FastTD3 / FastSAC).

`make(config, env_spec)` returns the `base.Agent`; the losses (`make_losses`)
are apart from the update, which only orchestrates the three optimiser steps.
Actions live in the env's [-1, 1] box.
"""

import dataclasses
from typing import Any, Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

import rlax_inf
from rlax_inf.agents import _tanh_normal as tanh_normal
from rlax_inf.agents import base
from rlax_inf.agents import gradients
from rlax_inf.agents import networks
from rlax_inf.agents import normalizer as normalizer_lib


@dataclasses.dataclass(frozen=True)
class SACConfig:
  """Hyper-parameters of SAC / SAC-FKL (defaults follow brax.training's SAC)."""

  hidden: Tuple[int, ...] = (256, 256)
  actor_lr: float = 3e-4
  critic_lr: float = 3e-4
  alpha_lr: float = 3e-4
  discount: float = 0.99
  polyak: float = 0.005  # ρ of the target-network average
  reward_scale: float = 1.0
  init_temperature: float = 1.0
  learn_temperature: bool = True
  target_entropy: Optional[float] = None  # None: −|A|
  policy_loss: str = "rkl"  # "rkl" (SAC) or "fkl" (SAC-FKL)
  num_action_samples: int = 1  # actions per state in the actor step (16 for SAC-FKL)
  normalize_observations: bool = True
  critic_layer_norm: bool = False  # LayerNorm after each hidden layer of the critics

  def __post_init__(self):
    if self.policy_loss not in ("rkl", "fkl"):
      raise ValueError(f"policy_loss must be 'rkl' or 'fkl', got {self.policy_loss!r}")
    if self.num_action_samples < 1:
      raise ValueError(f"num_action_samples must be >= 1, got {self.num_action_samples}")
    if self.policy_loss == "fkl" and self.num_action_samples < 2:
      # One sample has self-normalised weight 1: the step is −∇ log π(a), a ~ π, whose
      # expectation is zero. The actor would not learn.
      raise ValueError("policy_loss='fkl' needs num_action_samples >= 2 (16 by default "
                       f"for sac-fkl), got {self.num_action_samples}")


@flax.struct.dataclass
class SACState:
  """Everything SAC learns or carries from one update to the next (arrays only)."""

  actor: Any
  critic: Any
  target_critic: Any
  log_alpha: jnp.ndarray
  actor_opt: Any
  critic_opt: Any
  alpha_opt: Any
  normalizer: normalizer_lib.NormalizerState
  steps: jnp.ndarray


def target_entropy(config: SACConfig, action_size: int) -> float:
  return -float(action_size) if config.target_entropy is None else config.target_entropy


def make_losses(config: SACConfig, actor_net: networks.Actor, critic_net: networks.Critics,
                action_size: int):
  """(critic_loss, actor_loss, alpha_loss) of SAC / SAC-FKL as pure functions.

    critic_loss(critic, target_critic, actor, alpha, obs, next_obs, batch, key) -> (L_Q, q)
    actor_loss(actor, critic, alpha, obs, key) -> (L_π, log π [B, N])
    alpha_loss(log_alpha, log_pi) -> L_α
  """
  n = config.num_action_samples
  h_bar = target_entropy(config, action_size)

  def critic_loss(critic, target_critic, actor, alpha, obs, next_obs, batch, key):
    mean_t, std_t = actor_net.apply(actor, next_obs)
    u_t = tanh_normal.sample_pre_tanh(key, mean_t, std_t)
    log_pi_t = tanh_normal.log_prob_pre_tanh(u_t, mean_t, std_t)
    q_t = jnp.min(critic_net.apply(target_critic, next_obs, jnp.tanh(u_t)), axis=0)
    discount_t = config.discount * (1.0 - batch.terminated)
    y = jax.lax.stop_gradient(rlax_inf.soft_td_target(
        config.reward_scale * batch.reward, discount_t, q_t, log_pi_t, alpha))
    q = critic_net.apply(critic, obs, batch.action)  # [2, B]
    return 0.5 * jnp.mean(jnp.square(q - y[None])), q

  def actor_loss(actor, critic, alpha, obs, key):
    mean, std = actor_net.apply(actor, obs)
    mean, std = mean[:, None], std[:, None]  # [B, 1, A]
    shape = (obs.shape[0], n, action_size)
    u = tanh_normal.sample_pre_tanh(key, jnp.broadcast_to(mean, shape),
                                    jnp.broadcast_to(std, shape))
    obs_n = jnp.broadcast_to(obs[:, None], (obs.shape[0], n, obs.shape[1]))
    if config.policy_loss == "rkl":  # pathwise through u
      log_pi = tanh_normal.log_prob_pre_tanh(u, mean, std)  # [B, N]
      q_pi = jnp.min(critic_net.apply(critic, obs_n, jnp.tanh(u)), axis=0)
      loss = jax.vmap(rlax_inf.reverse_kl_loss, (0, 0, None))(log_pi, q_pi, alpha)
    else:  # resampled, self-normalised; gradients only through μ, σ of log π
      u = jax.lax.stop_gradient(u)
      log_pi = tanh_normal.log_prob_pre_tanh(u, mean, std)
      q_pi = jax.lax.stop_gradient(
          jnp.min(critic_net.apply(critic, obs_n, jnp.tanh(u)), axis=0))
      loss = jax.vmap(rlax_inf.forward_kl_loss, (0, 0, None))(
          log_pi, q_pi, jax.lax.stop_gradient(alpha))
    return jnp.mean(loss), log_pi

  def alpha_loss(log_alpha, log_pi):
    return rlax_inf.entropy_temperature_loss(log_alpha, jnp.reshape(log_pi, (-1,)), h_bar)

  return critic_loss, actor_loss, alpha_loss


def make(config: SACConfig, env_spec: Any) -> base.Agent:
  """SAC / SAC-FKL for `env_spec` (continuous actions only).

  Raises:
    base.UnsupportedEnv: the env has discrete actions.
  """
  name = "sac-fkl" if config.policy_loss == "fkl" else "sac"
  base.check_action_space(name, env_spec, (base.CONTINUOUS,))
  obs_size, action_size = int(env_spec.observation_size), int(env_spec.action_size)
  actor_net = networks.Actor(config.hidden, action_size)
  critic_net = networks.Critics(config.hidden, 2, config.critic_layer_norm)
  actor_tx, critic_tx, alpha_tx = (optax.adam(config.actor_lr), optax.adam(config.critic_lr),
                                   optax.adam(config.alpha_lr))
  critic_loss, actor_loss, alpha_loss = make_losses(config, actor_net, critic_net, action_size)
  critic_step = gradients.make_step(critic_loss, critic_tx, has_aux=True)
  actor_step = gradients.make_step(actor_loss, actor_tx, has_aux=True)
  alpha_step = gradients.make_step(alpha_loss, alpha_tx)

  def init(key):
    k_actor, k_critic = jax.random.split(key)
    actor = actor_net.init(k_actor, obs_size)
    critic = critic_net.init(k_critic, obs_size, action_size)
    log_alpha = jnp.log(jnp.asarray(config.init_temperature, jnp.float32))
    return SACState(
        actor=actor, critic=critic, target_critic=critic, log_alpha=log_alpha,
        actor_opt=actor_tx.init(actor), critic_opt=critic_tx.init(critic),
        alpha_opt=alpha_tx.init(log_alpha), normalizer=normalizer_lib.init(obs_size),
        steps=jnp.zeros((), jnp.int32))

  policy_params = base.actor_params

  def act(params, obs, key, deterministic=False):
    """tanh(μ) if deterministic, else tanh(u), u ~ N(μ, σ²); no extras."""
    mean, std = actor_net.apply(params.actor, normalizer_lib.normalize(params.normalizer, obs))
    u = tanh_normal.sample_pre_tanh(key, mean, std)
    return jnp.tanh(base.select(deterministic, mean, u)), {}

  observe = normalizer_lib.make_observe(config.normalize_observations)

  def update(state, batch, key):
    """One SAC (or SAC-FKL) step on a [B] batch: critic, then actor, then α, then targets."""
    k_next, k_pi = jax.random.split(key)
    obs = normalizer_lib.normalize(state.normalizer, batch.obs)
    next_obs = normalizer_lib.normalize(state.normalizer, batch.next_obs)
    alpha = jnp.exp(state.log_alpha)
    (c_loss, q), critic, critic_opt = critic_step(
        state.critic, state.critic_opt, state.target_critic, state.actor, alpha, obs,
        next_obs, batch, k_next)
    (a_loss, log_pi), actor, actor_opt = actor_step(
        state.actor, state.actor_opt, critic, alpha, obs, k_pi)
    t_loss, log_alpha, alpha_opt = alpha_step(state.log_alpha, state.alpha_opt, log_pi)
    if not config.learn_temperature:
      log_alpha, alpha_opt = state.log_alpha, state.alpha_opt
    new_state = SACState(
        actor=actor, critic=critic,
        target_critic=optax.incremental_update(critic, state.target_critic, config.polyak),
        log_alpha=log_alpha, actor_opt=actor_opt, critic_opt=critic_opt, alpha_opt=alpha_opt,
        normalizer=state.normalizer, steps=state.steps + 1)
    metrics = dict(critic_loss=c_loss, actor_loss=a_loss, alpha_loss=t_loss,
                   temperature=alpha, entropy=-jnp.mean(log_pi), q_mean=jnp.mean(q))
    return new_state, metrics

  return base.Agent(init=init, act=act, policy_params=policy_params, observe=observe,
                    update=update, needs=base.Needs(base.OFF_POLICY, 1, base.CONTINUOUS),
                    progress_keys=("temperature",))
