"""VIREL: actor-critic with the temperature set by the critic's Bellman error.

VIREL (Fellows, Mahajan, Rudner, Whiteson, 2019, "VIREL: A Variational Inference
Framework for Reinforcement Learning") fits the policy to the Boltzmann
distribution of the critic, π_ω(a|s) ∝ exp(Q_ω(s, a)/ε_ω), whose temperature
is the critic's own mean squared Bellman error: an accurate critic gives a
greedy target, an inaccurate one a broad target. Per batch of transitions
(s, a, r, d, s'):

  M-step (critic, policy evaluation, no entropy term):
           δ_j = r + γ (1 − d) min_i Q̄_i(s', a') − Q_j(s, a),  a' ~ π(·|s')
           L_Q = ½ mean_{j, batch} δ_j²                    [rlax_inf.virel_critic_loss]
  temperature:
           ε_ω = c · mean_{j, batch} δ_j²,  c = `temperature_scale`
                                                           [rlax_inf.virel_temperature]
  E-step (actor, reverse KL to π_ω, times ε_ω):
           L_π = mean_s mean_k [ε_ω log π(a_k|s) − min_j Q_j(s, a_k)],  a_k = f_θ(ε_k; s)
                                                           [rlax_inf.virel_actor_loss]
  targets: θ̄ ← (1 − ρ) θ̄ + ρ θ                           [optax.incremental_update]

ε_ω is computed from the TD errors of the critic step of the same update (before
the critic moves) and is a constant for the actor. The policy is a
tanh-squashed diagonal Gaussian; actions live in the env's [-1, 1] box. As in
SAC, twin critics (`num_critics=2`) and their minimum in the target and the actor
keep the critic from over-estimating; `num_critics=1` is the paper's single critic.

The only other public implementation (softlearning's VIREL) uses
c = 4e-4 at batch 4096; ε_ω is a mean, so c does not depend on the batch size,
but ε_ω scales with the square of `reward_scale` where Q scales linearly. The
default c = 0.01 is tuned on one task only (Brax inverted_pendulum, 4 seeds, one
update per env step; benchmarks/results/em_agents.md): there ε_ω stayed at ~0.02 while
Q grew to ~80. The earlier run at c = 0.1 (one update per 4 env steps) had ε_ω grow
with the MSBE to 0.13 and the policy entropy with it, and seeds fell back from 1000;
c and the update ratio were changed together, so their shares are not separated.
"""

import dataclasses
from typing import Any, Tuple

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
class VIRELConfig:
  """Hyper-parameters of VIREL.

  Attributes:
    hidden: hidden layer widths of the actor and the critics.
    actor_lr, critic_lr: Adam step sizes.
    discount: γ.
    temperature_scale: c ≥ 0 in ε_ω = c · MSBE (0: the greedy actor, −Q only).
    num_action_samples: reparameterised actions per state in the actor step.
    num_critics: 1 (the paper) or more (their minimum, as SAC's twin critics).
    polyak: ρ of the target-critic average.
    reward_scale: rewards are multiplied by this in the critic's targets.
    normalize_observations: feed (obs − mean)/std of all observations seen.
  """

  hidden: Tuple[int, ...] = (256, 256)
  actor_lr: float = 3e-4
  critic_lr: float = 3e-4
  discount: float = 0.99
  temperature_scale: float = 0.01
  num_action_samples: int = 1
  num_critics: int = 2
  polyak: float = 0.005
  reward_scale: float = 1.0
  normalize_observations: bool = True

  def __post_init__(self):
    if not self.temperature_scale >= 0:
      raise ValueError(f"temperature_scale must be >= 0, got {self.temperature_scale}")
    if self.num_action_samples < 1:
      raise ValueError(f"num_action_samples must be >= 1, got {self.num_action_samples}")
    if self.num_critics < 1:
      raise ValueError(f"num_critics must be >= 1, got {self.num_critics}")
    if not 0.0 < self.polyak <= 1.0:
      raise ValueError(f"polyak must be in (0, 1], got {self.polyak}")


@flax.struct.dataclass
class VIRELState:
  """Everything VIREL learns or carries from one update to the next (arrays only)."""

  actor: Any
  critic: Any
  target_critic: Any
  actor_opt: Any
  critic_opt: Any
  normalizer: normalizer_lib.NormalizerState
  steps: jnp.ndarray


def make_losses(config: VIRELConfig, actor_net: networks.Actor, critic_net: networks.Critics,
                action_size: int):
  """(critic_loss, actor_loss) of VIREL as pure functions.

    critic_loss(critic, target_critic, actor, obs, next_obs, batch, key) -> (L_Q, (δ [J, B], Q))
    actor_loss(actor, critic, temperature, obs, key) -> (L_π, log π [B, N])
  """
  n = config.num_action_samples
  per_transition = jax.vmap(rlax_inf.virel_critic_loss)

  def critic_loss(critic, target_critic, actor, obs, next_obs, batch, key):
    mean_t, std_t = actor_net.apply(actor, next_obs)
    a_t = jnp.tanh(tanh_normal.sample_pre_tanh(key, mean_t, std_t))
    q_t = jnp.min(critic_net.apply(target_critic, next_obs, a_t), axis=0)
    r_t = config.reward_scale * batch.reward
    discount_t = config.discount * (1.0 - batch.terminated)
    q = critic_net.apply(critic, obs, batch.action)  # [J, B]
    loss = jax.vmap(per_transition, (0, None, None, None))(q, r_t, discount_t, q_t)
    td = jax.lax.stop_gradient(r_t + discount_t * q_t) - q
    return jnp.mean(loss), (jax.lax.stop_gradient(td), q)

  def actor_loss(actor, critic, temperature, obs, key):
    mean, std = actor_net.apply(actor, obs)
    mean, std = mean[:, None], std[:, None]  # [B, 1, A]
    shape = (obs.shape[0], n, action_size)
    u = tanh_normal.sample_pre_tanh(key, jnp.broadcast_to(mean, shape),
                                    jnp.broadcast_to(std, shape))
    log_pi = tanh_normal.log_prob_pre_tanh(u, mean, std)  # [B, N], pathwise through u
    obs_n = jnp.broadcast_to(obs[:, None], (obs.shape[0], n, obs.shape[1]))
    q_pi = jnp.min(critic_net.apply(critic, obs_n, jnp.tanh(u)), axis=0)
    loss = jax.vmap(rlax_inf.virel_actor_loss, (0, 0, None))(log_pi, q_pi, temperature)
    return jnp.mean(loss), log_pi

  return critic_loss, actor_loss


def make(config: VIRELConfig, env_spec: Any) -> base.Agent:
  """VIREL for `env_spec` (continuous actions only).

  Raises:
    base.UnsupportedEnv: the env has discrete actions.
  """
  base.check_action_space("virel", env_spec, (base.CONTINUOUS,))
  obs_size, action_size = int(env_spec.observation_size), int(env_spec.action_size)
  actor_net = networks.Actor(config.hidden, action_size)
  critic_net = networks.Critics(config.hidden, config.num_critics)
  actor_tx, critic_tx = optax.adam(config.actor_lr), optax.adam(config.critic_lr)
  critic_loss, actor_loss = make_losses(config, actor_net, critic_net, action_size)
  critic_step = gradients.make_step(critic_loss, critic_tx, has_aux=True)
  actor_step = gradients.make_step(actor_loss, actor_tx, has_aux=True)

  def init(key):
    k_actor, k_critic = jax.random.split(key)
    actor = actor_net.init(k_actor, obs_size)
    critic = critic_net.init(k_critic, obs_size, action_size)
    return VIRELState(actor=actor, critic=critic, target_critic=critic,
                      actor_opt=actor_tx.init(actor), critic_opt=critic_tx.init(critic),
                      normalizer=normalizer_lib.init(obs_size), steps=jnp.zeros((), jnp.int32))

  policy_params = base.actor_params

  def act(params, obs, key, deterministic=False):
    """tanh(μ) if deterministic, else tanh(u), u ~ N(μ, σ²); no extras."""
    mean, std = actor_net.apply(params.actor, normalizer_lib.normalize(params.normalizer, obs))
    u = tanh_normal.sample_pre_tanh(key, mean, std)
    return jnp.tanh(base.select(deterministic, mean, u)), {}

  observe = normalizer_lib.make_observe(config.normalize_observations)

  def update(state, batch, key):
    """One VIREL step on a [B] batch: critic (M), ε_ω from its TD errors, actor (E), target."""
    k_next, k_pi = jax.random.split(key)
    obs = normalizer_lib.normalize(state.normalizer, batch.obs)
    next_obs = normalizer_lib.normalize(state.normalizer, batch.next_obs)
    (c_loss, (td, q)), critic, critic_opt = critic_step(
        state.critic, state.critic_opt, state.target_critic, state.actor, obs, next_obs,
        batch, k_next)
    temperature = rlax_inf.virel_temperature(jnp.reshape(td, (-1,)), config.temperature_scale)
    (a_loss, log_pi), actor, actor_opt = actor_step(state.actor, state.actor_opt, critic,
                                                    temperature, obs, k_pi)
    new_state = VIRELState(
        actor=actor, critic=critic,
        target_critic=optax.incremental_update(critic, state.target_critic, config.polyak),
        actor_opt=actor_opt, critic_opt=critic_opt, normalizer=state.normalizer,
        steps=state.steps + 1)
    metrics = dict(critic_loss=c_loss, actor_loss=a_loss, temperature=temperature,
                   msbe=jnp.mean(jnp.square(td)), entropy=-jnp.mean(log_pi),
                   q_mean=jnp.mean(q))
    return new_state, metrics

  return base.Agent(init=init, act=act, policy_params=policy_params, observe=observe,
                    update=update, needs=base.Needs(base.OFF_POLICY, 1, base.CONTINUOUS),
                    progress_keys=("temperature", "msbe"))
