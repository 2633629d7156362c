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
  alpha:   L_α = α · mean(sg(−log π(a_k|s) − H̄)),   H̄ = −|A| by default
  targets: θ̄ ← (1 − ρ) θ̄ + ρ θ

The agent is the optax shape: `init(key, env_spec, config) -> state`,
`act(params, obs, key, deterministic) -> action`, `update(state, batch) ->
(state, metrics)`, all pure over an explicit pytree state. Actions live in the
[-1, 1] box; the training loop rescales them to the environment's bounds.
"""

import dataclasses
import functools
from typing import Any, NamedTuple, Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

import rlax_inf
from rlax_inf.agents import _tanh_normal as tanh_normal
from rlax_inf.agents import networks
from rlax_inf.agents import normalizer as normalizer_lib
from rlax_inf.agents.replay import Transition


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
  num_action_samples: int = 1  # actions per state in the RKL actor step
  fkl_samples: int = 16  # N, actions resampled per state in the FKL actor step
  normalize_observations: bool = True

  def __post_init__(self):
    if self.policy_loss not in ("rkl", "fkl"):
      raise ValueError(f"policy_loss must be 'rkl' or 'fkl', got {self.policy_loss!r}")
    if self.num_action_samples < 1 or self.fkl_samples < 1:
      raise ValueError("num_action_samples and fkl_samples must be >= 1")


@flax.struct.dataclass
class PolicyParams:
  """What acting needs: the observation normaliser and the actor's parameters."""

  normalizer: normalizer_lib.NormalizerState
  actor: Any
  config: SACConfig = flax.struct.field(pytree_node=False)
  action_size: int = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class SACState:
  """Everything SAC learns or carries from one update to the next."""

  actor: Any
  critic: Any
  target_critic: Any
  log_alpha: jnp.ndarray
  actor_opt: Any
  critic_opt: Any
  alpha_opt: Any
  normalizer: normalizer_lib.NormalizerState
  key: jnp.ndarray
  steps: jnp.ndarray
  config: SACConfig = flax.struct.field(pytree_node=False)
  obs_size: int = flax.struct.field(pytree_node=False)
  action_size: int = flax.struct.field(pytree_node=False)


def _nets(config: SACConfig, action_size: int):
  return networks.Actor(config.hidden, action_size), networks.Critics(config.hidden, 2)


def _optimizers(config: SACConfig):
  return (optax.adam(config.actor_lr), optax.adam(config.critic_lr),
          optax.adam(config.alpha_lr))


def target_entropy(config: SACConfig, action_size: int) -> float:
  return -float(action_size) if config.target_entropy is None else config.target_entropy


def init(key: jax.Array, env_spec: Any, config: SACConfig = SACConfig()) -> SACState:
  """Fresh parameters, optimiser states and temperature for `env_spec`.

  Args:
    key: PRNG key (raw uint32[2]).
    env_spec: anything with `observation_size` and `action_size` (an env).
    config: hyper-parameters.

  Returns:
    The initial `SACState`.
  """
  if getattr(env_spec, "discrete", False):
    raise ValueError("SAC needs a continuous action space")
  obs_size, action_size = int(env_spec.observation_size), int(env_spec.action_size)
  return _init(key, config, obs_size, action_size)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init(key, config: SACConfig, obs_size: int, action_size: int) -> SACState:
  # Jitted: flax's initialisers run op by op otherwise (seconds of dispatch on CPU).
  actor_net, critic_net = _nets(config, action_size)
  k_actor, k_critic, k_state = jax.random.split(key, 3)
  actor = actor_net.init(k_actor, obs_size)
  critic = critic_net.init(k_critic, obs_size, action_size)
  log_alpha = jnp.log(jnp.asarray(config.init_temperature, jnp.float32))
  actor_tx, critic_tx, alpha_tx = _optimizers(config)
  return SACState(
      actor=actor, critic=critic, target_critic=critic, log_alpha=log_alpha,
      actor_opt=actor_tx.init(actor), critic_opt=critic_tx.init(critic),
      alpha_opt=alpha_tx.init(log_alpha), normalizer=normalizer_lib.init(obs_size),
      key=k_state, steps=jnp.zeros((), jnp.int32), config=config,
      obs_size=obs_size, action_size=action_size)


def policy_params(state: SACState) -> PolicyParams:
  return PolicyParams(normalizer=state.normalizer, actor=state.actor,
                      config=state.config, action_size=state.action_size)


def act(params: PolicyParams, obs: jax.Array, key: jax.Array,
        deterministic: Any = False) -> jax.Array:
  """Action in [-1, 1]^A for `obs[..., O]`: tanh(μ) if deterministic, else tanh(u), u ~ N(μ, σ²).

  `deterministic` may be a Python or a traced boolean (one program serves both).
  """
  actor_net, _ = _nets(params.config, params.action_size)
  mean, std = actor_net.apply(params.actor, normalizer_lib.normalize(params.normalizer, obs))
  u = tanh_normal.sample_pre_tanh(key, mean, std)
  return jnp.tanh(jnp.where(deterministic, mean, u))


def observe(state: SACState, obs: jax.Array) -> SACState:
  """Fold freshly collected observations `obs[N, O]` into the normaliser."""
  if not state.config.normalize_observations:
    return state
  return state.replace(normalizer=normalizer_lib.update(state.normalizer, obs))


def _polyak(target, online, rho):
  return jax.tree.map(lambda t, o: t + rho * (o - t), target, online)


def update(state: SACState, batch: Transition) -> Tuple[SACState, dict]:
  """One SAC (or SAC-FKL) gradient step on a batch of transitions.

  Args:
    state: current `SACState`.
    batch: `Transition` with leading batch axis B.

  Returns:
    (new state, scalar metrics: critic_loss, actor_loss, alpha_loss,
     temperature, entropy, q_mean).
  """
  cfg = state.config
  actor_net, critic_net = _nets(cfg, state.action_size)
  actor_tx, critic_tx, alpha_tx = _optimizers(cfg)
  key, k_next, k_pi = jax.random.split(state.key, 3)
  obs = normalizer_lib.normalize(state.normalizer, batch.obs)
  next_obs = normalizer_lib.normalize(state.normalizer, batch.next_obs)
  alpha = jnp.exp(state.log_alpha)

  # Critic: soft TD target from a fresh next action, min over twin targets.
  mean_t, std_t = actor_net.apply(state.actor, next_obs)
  u_t = tanh_normal.sample_pre_tanh(k_next, mean_t, std_t)
  log_pi_t = tanh_normal.log_prob_pre_tanh(u_t, mean_t, std_t)
  q_t = jnp.min(critic_net.apply(state.target_critic, next_obs, jnp.tanh(u_t)), axis=0)
  discount_t = cfg.discount * (1.0 - batch.terminated)
  y = jax.lax.stop_gradient(rlax_inf.soft_td_target(
      cfg.reward_scale * batch.reward, discount_t, q_t, log_pi_t, alpha))

  def critic_loss_fn(critic):
    q = critic_net.apply(critic, obs, batch.action)  # [2, B]
    return 0.5 * jnp.mean(jnp.square(q - y[None])), q

  (critic_loss, q), critic_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
      state.critic)
  critic_updates, critic_opt = critic_tx.update(critic_grads, state.critic_opt)
  critic = optax.apply_updates(state.critic, critic_updates)

  # Actor: RKL (pathwise) or FKL (resampled, self-normalised), against the new critics.
  n = cfg.num_action_samples if cfg.policy_loss == "rkl" else cfg.fkl_samples
  obs_n = jnp.broadcast_to(obs[:, None], (obs.shape[0], n, obs.shape[1]))

  def actor_loss_fn(actor):
    mean, std = actor_net.apply(actor, obs)
    mean, std = mean[:, None], std[:, None]  # [B, 1, A]
    eps_shape = (obs.shape[0], n, state.action_size)
    if cfg.policy_loss == "rkl":
      u = tanh_normal.sample_pre_tanh(k_pi, jnp.broadcast_to(mean, eps_shape),
                                      jnp.broadcast_to(std, eps_shape))
      log_pi = tanh_normal.log_prob_pre_tanh(u, mean, std)  # [B, N]
      q_pi = jnp.min(critic_net.apply(critic, obs_n, jnp.tanh(u)), axis=0)
      loss = jnp.mean(jax.vmap(rlax_inf.reverse_kl_loss, (0, 0, None))(log_pi, q_pi, alpha))
    else:
      u = jax.lax.stop_gradient(tanh_normal.sample_pre_tanh(
          k_pi, jnp.broadcast_to(mean, eps_shape), jnp.broadcast_to(std, eps_shape)))
      log_pi = tanh_normal.log_prob_pre_tanh(u, mean, std)  # [B, N], grads via μ, σ
      q_pi = jax.lax.stop_gradient(
          jnp.min(critic_net.apply(critic, obs_n, jnp.tanh(u)), axis=0))
      loss = jnp.mean(jax.vmap(rlax_inf.forward_kl_loss, (0, 0, None))(
          log_pi, q_pi, jax.lax.stop_gradient(alpha)))
    return loss, log_pi

  (actor_loss, log_pi), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
      state.actor)
  actor_updates, actor_opt = actor_tx.update(actor_grads, state.actor_opt)
  actor = optax.apply_updates(state.actor, actor_updates)

  # Temperature: drive the policy entropy towards the target H̄.
  neg_entropy = jax.lax.stop_gradient(jnp.mean(log_pi))
  h_bar = target_entropy(cfg, state.action_size)

  def alpha_loss_fn(log_alpha):
    return jnp.exp(log_alpha) * (-neg_entropy - h_bar)

  alpha_loss, alpha_grad = jax.value_and_grad(alpha_loss_fn)(state.log_alpha)
  if cfg.learn_temperature:
    alpha_updates, alpha_opt = alpha_tx.update(alpha_grad, state.alpha_opt)
    log_alpha = optax.apply_updates(state.log_alpha, alpha_updates)
  else:
    alpha_opt, log_alpha = state.alpha_opt, state.log_alpha

  new_state = state.replace(
      actor=actor, critic=critic, target_critic=_polyak(state.target_critic, critic, cfg.polyak),
      log_alpha=log_alpha, actor_opt=actor_opt, critic_opt=critic_opt, alpha_opt=alpha_opt,
      key=key, steps=state.steps + 1)
  metrics = dict(critic_loss=critic_loss, actor_loss=actor_loss, alpha_loss=alpha_loss,
                 temperature=alpha, entropy=-neg_entropy, q_mean=jnp.mean(q))
  return new_state, metrics


class Agent(NamedTuple):
  """An agent as a tuple of pure functions over an explicit state (optax's shape)."""

  name: str
  config: Any  # the default config instance
  init: Any
  act: Any
  update: Any
  observe: Any
  policy_params: Any


SAC = Agent("sac", SACConfig(), init, act, update, observe, policy_params)
SAC_FKL = Agent("sac-fkl", SACConfig(policy_loss="fkl"), init, act, update, observe,
                policy_params)
