"""Soft Q-learning for discrete actions (off-policy, one-step or n-step soft targets).

Soft Q-learning (Haarnoja et al., 2017; Fox et al., 2016; Schulman et al.,
2017) learns the soft-optimal Q of the regularised MDP,

  Q*(s, a) = r(s, a) + γ E_{s'} V*(s'),   V*(s) = τ log Σ_a π0(a) exp(Q*(s, a)/τ),

and acts with its Boltzmann policy π(a|s) ∝ π0(a) exp(Q(s, a)/τ). π0 is the
counting measure by default (`prior_logits=None`, as
`rlax_inf.soft_value_iteration(log_prior=None)`), or the fixed normalised prior
softmax(prior_logits) (the KL-to-prior convention).

Per batch, with a Q-network Q_θ over all A actions and its target Q̄:

  one-step (n_step = 1), batch [B]:
    δ = r + γ (1 − terminated) V̄(s') − Q_θ(s, a),  V̄ = τ log Σ π0 exp(Q̄(s', ·)/τ)
                                                         [rlax_inf.soft_q_learning]
  n-step (n_step = T > 1), sequences [B, T], the target of the first step:
    G[T−1] = r[T−1] + γ[T−1] V̄[T−1]
    G[i]   = r[i] + γ[i] ((1 − λ[i]) V̄[i] + λ[i] (G[i+1] − reg[i])),
    λ[i] = 1 − done[i],  γ[i] = γ (1 − terminated[i]),  V̄[i] = V̄(next_obs[i]),
    reg[i] = τ (log π̄ − log π0)(a[i+1] | next_obs[i]) = Q̄(next_obs[i], a[i+1]) − V̄[i],
    δ = G[0] − Q_θ(s[0], a[0])                            [rlax_inf.soft_lambda_returns]
    i.e. the soft n-step return along the sampled actions, each intermediate
    action paying its regulariser, cut at the first episode end (`done`:
    bootstrap from that step's true next observation, 0 if it terminated). The
    regulariser is that of π̄, the Boltzmann policy of Q̄; written as Q̄ − V̄
    (log π̄ = (Q̄ − V̄)/τ + log π0) it stays finite at τ = 0. Equivalently
    G[0] = r[0] + γ V̄[0] + γ Σ_k (discounted) (r[k] + γ V̄[k] − Q̄(s[k], a[k])):
    Q* is a fixed point whatever the behaviour (the Q(λ) of Harutyunyan et al.,
    2016, λ = 1, in soft form), but errors of Q̄ at the replayed actions enter
    with weight γ^k, which can be unstable far off-policy.
    `n_step_regularizer="expected"` pays E_π̄[reg[i]] = τ KL(π̄ ‖ π0) instead
    (n-step Q-learning's return plus the regulariser: stabler, biased off-policy).
  loss:    L_Q = ½ mean δ²  (or Huber with `huber_delta`)
  τ:       fixed, or tuned through log τ with L = τ (Ĥ − H̄)
           [rlax_inf.entropy_temperature_loss], H̄ = target_entropy_fraction · log A,
           Ĥ = the mean over the batch states of the EXACT entropy
           −Σ_a π(a|s) log π(a|s) of the online Boltzmann policy (no sampling).
  targets: θ̄ ← (1 − ρ) θ̄ + ρ θ every update [optax.incremental_update], or
           θ̄ ← θ every `target_update_period` updates [optax.periodic_update].

Acting: a ~ π(·|s) = softmax(log π0 + Q_θ(s, ·)/τ) [rlax_inf.boltzmann_log_policy];
deterministic acting is greedy, argmax_a Q_θ(s, a) (first maximiser).

With `hidden=()` the Q-network is one linear layer: an exact table of Q on the
one-hot observations of the tabular environments (`envs.tabular`).
"""

import dataclasses
import math
from typing import Any, Optional, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

import rlax_inf
from rlax_inf.agents import base
from rlax_inf.agents import gradients
from rlax_inf.agents import networks
from rlax_inf.agents import normalizer as normalizer_lib


@dataclasses.dataclass(frozen=True)
class SQLConfig:
  """Hyper-parameters of soft Q-learning.

  Attributes:
    hidden: hidden layer widths of the Q-network; () is a linear map (a table
      on one-hot observations).
    learning_rate: Adam step size of the Q-network.
    max_grad_norm: clip the Q gradient to this global norm (None: no clipping).
    discount: γ.
    n_step: 1: one-step soft Q-learning on [B] transitions; T > 1: soft T-step
      returns on [B, T] sequences (the loop's `needs.sequence_length`).
    n_step_regularizer: what each intermediate step of an n-step return pays:
      "sampled": τ (log π̄ − log π0) of the action taken (Q* is a fixed point
      for any behaviour); "expected": its mean under π̄, τ KL(π̄ ‖ π0) (−τ H(π̄)
      for the counting measure), lower variance but biased towards the
      behaviour's values off-policy, as n-step Q-learning is.
    temperature: τ (fixed), or its initial value when `learn_temperature`.
    learn_temperature: tune τ so that the policy's entropy tracks the target.
    target_entropy_fraction: H̄ = fraction · log A (entropy tuning only).
    alpha_lr: Adam step size of log τ.
    prior_logits: logits of a fixed prior π0 over the A actions (normalised by
      log-softmax); None is the counting measure.
    polyak: ρ of the Polyak target average (used when target_update_period = 0).
    target_update_period: K > 0: copy θ̄ ← θ every K updates instead of Polyak.
    huber_delta: None: squared TD error; else the Huber loss with this δ.
    reward_scale: rewards are multiplied by this in the targets.
    normalize_observations: feed (obs − mean)/std of all observations seen.
  """

  hidden: Tuple[int, ...] = (256, 256)
  learning_rate: float = 3e-4
  max_grad_norm: Optional[float] = None
  discount: float = 0.99
  n_step: int = 1
  n_step_regularizer: str = "sampled"
  temperature: float = 0.1
  learn_temperature: bool = False
  target_entropy_fraction: float = 0.3
  alpha_lr: float = 3e-4
  prior_logits: Optional[Tuple[float, ...]] = None
  polyak: float = 0.005
  target_update_period: int = 0
  huber_delta: Optional[float] = None
  reward_scale: float = 1.0
  normalize_observations: bool = False

  def __post_init__(self):
    if self.n_step < 1:
      raise ValueError(f"n_step must be >= 1, got {self.n_step}")
    if self.temperature < 0 or (self.learn_temperature and self.temperature <= 0):
      raise ValueError(f"temperature must be >= 0 (> 0 when learned), got {self.temperature}")
    if self.n_step_regularizer not in ("sampled", "expected"):
      raise ValueError("n_step_regularizer must be 'sampled' or 'expected', "
                       f"got {self.n_step_regularizer!r}")
    if self.target_update_period < 0:
      raise ValueError(f"target_update_period must be >= 0, got {self.target_update_period}")
    if not 0.0 < self.polyak <= 1.0:
      raise ValueError(f"polyak must be in (0, 1], got {self.polyak}")


@flax.struct.dataclass
class SQLState:
  """Everything soft Q-learning learns or carries between updates (arrays only)."""

  q: Any
  target_q: Any
  log_alpha: jnp.ndarray  # log τ (constant unless `learn_temperature`)
  q_opt: Any
  alpha_opt: Any
  normalizer: normalizer_lib.NormalizerState
  steps: jnp.ndarray


@flax.struct.dataclass
class PolicyParams:
  """What acting needs: the normaliser, the Q-network and log τ."""

  normalizer: normalizer_lib.NormalizerState
  q: Any
  log_alpha: jnp.ndarray


def log_prior(config: SQLConfig, num_actions: int) -> Optional[jax.Array]:
  """log π0 [A] = log_softmax(prior_logits), or None (the counting measure)."""
  if config.prior_logits is None:
    return None
  if len(config.prior_logits) != num_actions:
    raise ValueError(f"prior_logits has {len(config.prior_logits)} entries; the env has "
                     f"{num_actions} actions")
  return jax.nn.log_softmax(jnp.asarray(config.prior_logits, jnp.float32))


def target_entropy(config: SQLConfig, num_actions: int) -> float:
  """H̄ = target_entropy_fraction · log A."""
  return config.target_entropy_fraction * math.log(num_actions)


def make_losses(config: SQLConfig, q_net: networks.MLP, num_actions: int):
  """(q_loss, alpha_loss) of soft Q-learning as pure functions.

    q_loss(q, target_q, temperature, batch) -> (L_Q, (δ [B], Q_θ(s, ·) [B, A]))
    alpha_loss(log_alpha, entropy_s [B]) -> L_τ,  entropy_s = `policy_entropy` at the batch states

  `batch` holds normalised observations; [B] transitions when n_step = 1,
  [B, T] sequences with T = n_step otherwise.
  """
  prior = log_prior(config, num_actions)
  h_bar = target_entropy(config, num_actions)
  soft_value = jax.vmap(rlax_inf.soft_value, (0, None, None))
  take = jax.vmap(lambda x, a: x[a])

  def td_one_step(q_tm1, target_q, temperature, batch):
    q_t = q_net.apply(target_q, batch.next_obs)
    discount_t = config.discount * (1.0 - batch.terminated)
    return jax.vmap(rlax_inf.soft_q_learning, (0, 0, 0, 0, 0, None, None))(
        q_tm1, batch.action, config.reward_scale * batch.reward, discount_t, q_t,
        temperature, prior)

  def n_step_target(r_t, discount_t, done_t, q_t, a_next, temperature):
    """G[0] of one sequence [T]; q_t = Q̄(next_obs) [T, A], a_next[i] = a[i+1]."""
    v_t = soft_value(q_t, temperature, prior)
    adv_t = q_t - v_t[:, None]  # τ (log π̄ − log π0)(a | next_obs[i]) for every a
    if config.n_step_regularizer == "sampled":
      reg_t = take(adv_t, a_next)
    else:  # E_{a ~ π̄}[τ (log π̄ − log π0)(a)] = τ KL(π̄ ‖ π0)
      log_pi_t = jax.vmap(rlax_inf.boltzmann_log_policy, (0, None, None))(
          q_t, temperature, prior)
      reg_t = jnp.sum(jnp.where(jnp.isneginf(log_pi_t), 0.0, jnp.exp(log_pi_t) * adv_t), -1)
    returns = rlax_inf.soft_lambda_returns(r_t, discount_t, v_t, reg_t, 1.0 - done_t)
    return returns[0]

  def td_n_step(q_tm1, target_q, temperature, batch):
    q_t = q_net.apply(target_q, batch.next_obs)  # [B, T, A]
    # a[i+1] for i < T−1; the last entry is never used (the return bootstraps there).
    a_next = jnp.concatenate([batch.action[:, 1:], batch.action[:, -1:]], axis=1)
    discount_t = config.discount * (1.0 - batch.terminated)
    g = jax.vmap(n_step_target, (0, 0, 0, 0, 0, None))(
        config.reward_scale * batch.reward, discount_t, batch.done, q_t, a_next, temperature)
    return jax.lax.stop_gradient(g) - take(q_tm1, batch.action[:, 0])

  def q_loss(q, target_q, temperature, batch):
    obs = batch.obs if config.n_step == 1 else batch.obs[:, 0]
    q_tm1 = q_net.apply(q, obs)
    if config.n_step == 1:
      td = td_one_step(q_tm1, target_q, temperature, batch)
    else:
      td = td_n_step(q_tm1, target_q, temperature, batch)
    if config.huber_delta is None:
      loss = 0.5 * jnp.square(td)
    else:
      loss = optax.huber_loss(td, delta=config.huber_delta)
    return jnp.mean(loss), (td, q_tm1)

  def alpha_loss(log_alpha, entropy_s):
    # E_π[log π(a|s)] = −H(π(·|s)) per state: the exact (Rao-Blackwellised) stand-in
    # for the log-probabilities of sampled actions, so Ĥ is the exact mean entropy.
    return rlax_inf.entropy_temperature_loss(log_alpha, -entropy_s, h_bar)

  return q_loss, alpha_loss


def policy_entropy(q: jax.Array, temperature: Any, log_prior_: Optional[jax.Array]) -> jax.Array:
  """Exact entropy −Σ_a π log π [B] of the Boltzmann policies of q [B, A] (no gradient)."""
  log_pi = jax.vmap(rlax_inf.boltzmann_log_policy, (0, None, None))(
      jax.lax.stop_gradient(q), jax.lax.stop_gradient(temperature), log_prior_)
  return jax.vmap(rlax_inf.entropy)(log_pi)


def make(config: SQLConfig, env_spec: Any) -> base.Agent:
  """Soft Q-learning for `env_spec` (discrete actions only).

  Raises:
    base.UnsupportedEnv: the env has continuous actions.
  """
  base.check_action_space("sql", env_spec, (base.DISCRETE,))
  obs_size, num_actions = int(env_spec.observation_size), int(env_spec.action_size)
  q_net = networks.MLP(tuple(config.hidden), num_actions)
  prior = log_prior(config, num_actions)
  q_tx = optax.adam(config.learning_rate)
  if config.max_grad_norm is not None:
    q_tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), q_tx)
  alpha_tx = optax.adam(config.alpha_lr)
  q_loss, alpha_loss = make_losses(config, q_net, num_actions)
  q_step = gradients.make_step(q_loss, q_tx, has_aux=True)
  alpha_step = gradients.make_step(alpha_loss, alpha_tx)

  def temperature_of(log_alpha):
    # A fixed τ stays a Python number: τ = 0 then takes rlax_inf's exact hard branch.
    return jnp.exp(log_alpha) if config.learn_temperature else config.temperature

  def init(key):
    q = q_net.init(key, jnp.zeros((1, obs_size), jnp.float32))
    log_alpha = jnp.log(jnp.asarray(config.temperature, jnp.float32))
    return SQLState(q=q, target_q=q, log_alpha=log_alpha, q_opt=q_tx.init(q),
                    alpha_opt=alpha_tx.init(log_alpha),
                    normalizer=normalizer_lib.init(obs_size), steps=jnp.zeros((), jnp.int32))

  def policy_params(state):
    return PolicyParams(normalizer=state.normalizer, q=state.q, log_alpha=state.log_alpha)

  def act(params, obs, key, deterministic=False):
    """argmax_a Q(s, a) if deterministic, else a ~ Boltzmann(Q/τ, π0); no extras."""
    q = q_net.apply(params.q, normalizer_lib.normalize(params.normalizer, obs))
    log_pi = jax.vmap(rlax_inf.boltzmann_log_policy, (0, None, None))(
        q, temperature_of(params.log_alpha), prior)
    sampled = jax.random.categorical(key, log_pi).astype(jnp.int32)
    greedy = jnp.argmax(q, axis=-1).astype(jnp.int32)
    return base.select(deterministic, greedy, sampled), {}

  observe = normalizer_lib.make_observe(config.normalize_observations)

  def update(state, batch, key):
    """One soft Q-learning step: Q-network, then τ (if learned), then the target network."""
    del key  # the update is deterministic given the batch
    norm = lambda x: normalizer_lib.normalize(state.normalizer, x)
    batch = batch.replace(obs=norm(batch.obs), next_obs=norm(batch.next_obs))
    temperature = temperature_of(state.log_alpha)
    (loss, (td, q_s)), q, q_opt = q_step(state.q, state.q_opt, state.target_q, temperature,
                                         batch)
    entropy_s = policy_entropy(q_s, temperature, prior)
    if config.learn_temperature:
      a_loss, log_alpha, alpha_opt = alpha_step(state.log_alpha, state.alpha_opt, entropy_s)
    else:
      a_loss, log_alpha, alpha_opt = jnp.zeros(()), state.log_alpha, state.alpha_opt
    steps = state.steps + 1
    if config.target_update_period > 0:
      target_q = optax.periodic_update(q, state.target_q, steps, config.target_update_period)
    else:
      target_q = optax.incremental_update(q, state.target_q, config.polyak)
    new_state = SQLState(q=q, target_q=target_q, log_alpha=log_alpha, q_opt=q_opt,
                         alpha_opt=alpha_opt, normalizer=state.normalizer, steps=steps)
    metrics = dict(q_loss=loss, alpha_loss=a_loss, temperature=jnp.exp(state.log_alpha),
                   entropy=jnp.mean(entropy_s), q_mean=jnp.mean(q_s), td_abs=jnp.mean(jnp.abs(td)))
    return new_state, metrics

  return base.Agent(init=init, act=act, policy_params=policy_params, observe=observe,
                    update=update,
                    needs=base.Needs(base.OFF_POLICY, config.n_step, base.DISCRETE),
                    progress_keys=("temperature", "entropy"))
