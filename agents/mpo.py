"""Maximum a posteriori policy optimisation (MPO) for continuous actions.

MPO (Abdolmaleki et al., 2018, "Maximum a Posteriori Policy Optimisation";
decoupled constraints from "Relative Entropy Regularized Policy Iteration",
2018) treats policy improvement as EM against the target (old) policy π̄ and the
target critic Q̄. Per batch of states s, with N actions a_k ~ π̄(·|s):

  E-step:  q(a_k|s) ∝ exp(Q̄(s, a_k)/η),  w̄ = softmax_k(Q̄(s, a_k)/η),
           η minimises the dual g(η) = η ε + η log (1/N) Σ_k exp(Q̄(s, a_k)/η)
                                                   [rlax_inf.mpo_e_step, via mpo_loss]
  M-step:  L_π = −Σ_k w̄_k [log N(u_k; μ, σ̄) + log N(u_k; μ̄, σ)]
                 + α_μ KL_μ + α_σ KL_σ,
           KL_μ = KL(N(μ̄, σ̄) ‖ N(μ, σ̄)) ≤ ε_μ,  KL_σ = KL(N(μ̄, σ̄) ‖ N(μ̄, σ)) ≤ ε_σ,
           each multiplier α by its own dual α (ε − KL)
                  [rlax_inf.decoupled_gaussian_log_prob / _kl, lagrange_penalty, mpo_loss]
  penalty (`action_penalty_epsilon` ε_p > 0; MO-MPO's action penalization,
  Abdolmaleki et al., 2020, on by default in Acme's MPO): a second E-step on the cost
           c_k = −‖u_k − clip(u_k, −b, b)‖  (b = `action_penalty_bound`, pre-tanh),
           w̄ᵖ = softmax_k(c_k/η_p), η_p by its own dual with ε_p, and the M-step fits
           w̄ + w̄ᵖ. Without it nothing pulls a pre-tanh mean back from saturation:
           where |μ| ≫ 1 every sample maps to ±1, Q̄ is flat across them and the
           mean random-walks (the collapse of benchmarks/results/em_agents.md).
  targets: θ̄ ← θ every `target_update_period` updates, actor and critic
           [optax.periodic_update] (or Polyak averaging with `target_update_period=0`).

The policy is a tanh-squashed diagonal Gaussian, a = tanh(u), u ~ N(μ(s), σ(s)²).
The M-step acts on the pre-tanh Gaussian: the squashing's log-Jacobian does not
depend on the parameters, and a KL is invariant under the bijection, so the
decoupled likelihoods and KLs of the Gaussian are those of the squashed policy.
η, α_μ, α_σ are dual variables stepped by Adam at `dual_lr` and projected back onto
[1e-10, ∞) after every step (projected gradient descent; `rlax_inf.project_multiplier`).

Critic (Q̄ and π̄ in the targets, τ = `critic_temperature`, 0 by default: MPO's
plain expected value; τ > 0 the soft one):

  "td"       [B] transitions, N next actions a'_k ~ π̄(·|s'):
             y = r + γ (1 − d) mean_k [Q̄(s', a'_k) − τ log π̄(a'_k|s')]
                                                          [rlax_inf.soft_td_target]
  "retrace"  [B, T] sequences (needs.sequence_length = `retrace_length`), with
             V̂[i] = mean_k [Q̄(s'_i, a'_k) − τ log π̄(a'_k|s'_i)],  a'_k ~ π̄(·|s'_i):
             G[T−1] = r[T−1] + γ[T−1] V̂[T−1]
             G[i]   = r[i] + γ[i] (V̂[i] + c[i] (G[i+1] − Q̄(s'_i, a[i+1]))),
             c[i]   = λ (1 − done[i]) min(1, π̄(a[i+1]|s'_i) / μ(a[i+1]|s'_i)),
             δ[i]   = G[i] − Q(s_i, a_i), every i            [rlax_inf.soft_retrace]
             with s'_i = next_obs[i], γ[i] = γ (1 − terminated[i]) and μ the
             behaviour policy's density, stored by `act` as extras["log_prob"].
  loss:      L_Q = ½ mean δ².

`soft_retrace` takes categorical action sets; the sampled set is passed as N + 1
slots (`_sampled_retrace_inputs`): the N samples with weight 1/N and the replayed
action with a weight e⁻⁶⁰ that only carries its trace, so that V̂ is the sample
mean above to float32 precision and c is the ratio of the two densities. The
prefill's random actions are stored with log μ = 0 ≥ log(uniform density on the
box): their traces are smaller than the true ratio, which Retrace allows
(any 0 ≤ c ≤ π/μ keeps Q^π̄ the fixed point; Munos et al., 2016).

Actions live in the env's [-1, 1] box.
"""

import dataclasses
import math
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

CRITICS = ("td", "retrace")
#: log of the replayed action's slot weight in `soft_retrace`'s action set (see the module doc).
_BEHAVIOUR_SLOT_LOG_WEIGHT = -60.0
#: |a| ≤ 1 − this before atanh, so replayed actions that rounded to ±1 keep finite log-probs.
_ATANH_MARGIN = 1e-6


@dataclasses.dataclass(frozen=True)
class MPOConfig:
  """Hyper-parameters of MPO.

  Attributes:
    hidden: hidden layer widths of the actor and the critic.
    actor_lr, critic_lr, dual_lr: Adam step sizes of the actor, the critic and
      the dual variables (η, α_μ, α_σ).
    discount: γ.
    num_action_samples: N actions per state for the E-step and the critic's V̂.
    epsilon: ε, the E-step bound on KL(q ‖ π̄).
    epsilon_mean, epsilon_stddev: ε_μ, ε_σ, the M-step bounds on KL_μ and KL_σ.
    init_temperature, init_alpha_mean, init_alpha_stddev: initial η, α_μ, α_σ.
    critic: "td" (one-step, [B] transitions) or "retrace" ([B, T] sequences).
    retrace_length: T of the Retrace sequences (critic="retrace").
    retrace_lambda: λ of the Retrace traces.
    critic_temperature: τ ≥ 0 of the soft critic target (0: MPO's expectation).
    action_penalty_epsilon: ε_p of the action penalization (0: off).
    action_penalty_bound: b, the pre-tanh bound of the penalty (tanh(2) ≈ 0.96).
    num_critics: J ≥ 1 critics trained on the same target; the targets and the E-step
      use their minimum min_j Q̄_j (J = 2: SAC's / TD3's twin critics; 1: the paper).
    target_update_period: K > 0: copy θ̄ ← θ every K updates; 0: Polyak with `polyak`.
    polyak: ρ of the Polyak average (target_update_period = 0).
    reward_scale: rewards are multiplied by this in the critic's targets.
    normalize_observations: feed (obs − mean)/std of all observations seen.
  """

  hidden: Tuple[int, ...] = (256, 256)
  actor_lr: float = 3e-4
  critic_lr: float = 3e-4
  dual_lr: float = 1e-2
  discount: float = 0.99
  num_action_samples: int = 20
  epsilon: float = 0.1
  epsilon_mean: float = 2.5e-3
  epsilon_stddev: float = 1e-6
  init_temperature: float = 1.0
  init_alpha_mean: float = 1.0
  init_alpha_stddev: float = 100.0
  critic: str = "td"
  retrace_length: int = 8
  retrace_lambda: float = 1.0
  critic_temperature: float = 0.0
  num_critics: int = 1
  action_penalty_epsilon: float = 0.0
  action_penalty_bound: float = 2.0
  target_update_period: int = 100
  polyak: float = 0.005
  reward_scale: float = 1.0
  normalize_observations: bool = True

  def __post_init__(self):
    for name in ("epsilon", "epsilon_mean", "epsilon_stddev"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} (a KL bound) must be > 0, got {getattr(self, name)}")
    if self.num_action_samples < 1:
      raise ValueError(f"num_action_samples must be >= 1, got {self.num_action_samples}")
    for name in ("init_temperature", "init_alpha_mean", "init_alpha_stddev"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
    if self.critic not in CRITICS:
      raise ValueError(f"critic must be one of {CRITICS}, got {self.critic!r}")
    if self.retrace_length < 2:
      raise ValueError(f"retrace_length must be >= 2, got {self.retrace_length}")
    if not 0.0 <= self.retrace_lambda <= 1.0:
      raise ValueError(f"retrace_lambda must be in [0, 1], got {self.retrace_lambda}")
    if self.action_penalty_epsilon < 0:
      raise ValueError(f"action_penalty_epsilon must be >= 0, got {self.action_penalty_epsilon}")
    if not self.action_penalty_bound > 0:
      raise ValueError(f"action_penalty_bound must be > 0, got {self.action_penalty_bound}")
    if self.num_critics < 1:
      raise ValueError(f"num_critics must be >= 1, got {self.num_critics}")
    if self.critic_temperature < 0:
      raise ValueError(f"critic_temperature must be >= 0, got {self.critic_temperature}")
    if self.target_update_period < 0:
      raise ValueError(f"target_update_period must be >= 0, got {self.target_update_period}")
    if not 0.0 < self.polyak <= 1.0:
      raise ValueError(f"polyak must be in (0, 1], got {self.polyak}")


@flax.struct.dataclass
class Duals:
  """MPO's raw dual variables (projected onto [1e-10, ∞) where used)."""

  temperature: jnp.ndarray  # η
  alpha_mean: jnp.ndarray  # α_μ
  alpha_stddev: jnp.ndarray  # α_σ
  penalty_temperature: jnp.ndarray  # η_p (unused while action_penalty_epsilon = 0)


@flax.struct.dataclass
class MPOState:
  """Everything MPO learns or carries from one update to the next (arrays only)."""

  actor: Any
  critic: Any
  target_actor: Any
  target_critic: Any
  duals: Duals
  policy_opt: Any  # one optax state for {"actor", "duals"}
  critic_opt: Any
  normalizer: normalizer_lib.NormalizerState
  steps: jnp.ndarray


def _sample(key, mean, std, n):
  """N pre-tanh samples [..., N, A] of N(mean, std²) [..., A] and their log π(tanh u)."""
  shape = mean.shape[:-1] + (n,) + mean.shape[-1:]
  mean, std = mean[..., None, :], std[..., None, :]
  u = tanh_normal.sample_pre_tanh(key, jnp.broadcast_to(mean, shape),
                                  jnp.broadcast_to(std, shape))
  return u, tanh_normal.log_prob_pre_tanh(u, mean, std)


def _repeat(obs, n):
  """obs [..., O] → [..., N, O]."""
  return jnp.broadcast_to(obs[..., None, :], obs.shape[:-1] + (n, obs.shape[-1]))


def _sampled_retrace_inputs(q_samples, log_pi_samples, q_behaviour, log_pi_behaviour,
                            log_mu_behaviour):
  """`soft_retrace`'s categorical inputs at one next state for N samples of π̄ + the replay.

    slots 0..N−1: the samples, weight p = 1/N; slot N: the replayed action, p = e⁻⁶⁰/N;
    log π0(slot) = log p − log π̄(a_slot), so that τ (log p − log π0) = τ log π̄(a),
    log μ' = log μ(a_N) − log π̄(a_N) + log p_N, so that p_N / μ' = π̄(a_N) / μ(a_N).

  Args:
    q_samples: Q̄(s', a'_k) [N].
    log_pi_samples: log π̄(a'_k|s') [N].
    q_behaviour: Q̄(s', a_b) [] of the replayed next action.
    log_pi_behaviour: log π̄(a_b|s') [].
    log_mu_behaviour: log μ(a_b|s') [] (behaviour density).

  Returns:
    (q [N+1], a [] = N, log_slot_probs [N+1], log_prior [N+1], log_mu []).
  """
  n = q_samples.shape[0]
  log_p = jnp.full((n + 1,), -math.log(n), q_samples.dtype)
  log_p = log_p.at[n].add(_BEHAVIOUR_SLOT_LOG_WEIGHT)
  q = jnp.concatenate([q_samples, q_behaviour[None]])
  log_pi = jnp.concatenate([log_pi_samples, log_pi_behaviour[None]])
  log_mu = log_mu_behaviour - log_pi_behaviour + log_p[n]
  return q, jnp.asarray(n, jnp.int32), log_p, log_p - log_pi, log_mu


def make_losses(config: MPOConfig, actor_net: networks.Actor, critic_net: networks.Critics):
  """(critic_loss, policy_loss) of MPO as pure functions.

    critic_loss(critic, target_critic, target_actor, batch, key) -> (L_Q, (δ, Q(s, a)))
    policy_loss({"actor", "duals"}, target_critic, target_actor, obs [S, O], key)
        -> (L, (metrics, E-step weights w̄ [S, N]))

  `batch` holds normalised observations: [B] transitions (critic="td") or [B, T]
  sequences (critic="retrace").
  """
  n, tau = config.num_action_samples, config.critic_temperature
  # min_j Q_j: the value of the targets and the E-step (Q itself when J = 1).
  q_of = lambda params, obs, a: jnp.min(critic_net.apply(params, obs, a), axis=0)

  def target_actor_apply(params, obs):
    return jax.tree.map(jax.lax.stop_gradient, actor_net.apply(params, obs))

  def next_values(target_critic, target_actor, next_obs, key):
    """Q̄(s', a'_k) and log π̄(a'_k|s') [..., N] for a'_k ~ π̄(·|s')."""
    mean, std = target_actor_apply(target_actor, next_obs)
    u, log_pi = _sample(key, mean, std, n)
    return q_of(target_critic, _repeat(next_obs, n), jnp.tanh(u)), log_pi

  def td_errors(critic, target_critic, target_actor, batch, key):
    q_t, log_pi_t = next_values(target_critic, target_actor, batch.next_obs, key)  # [B, N]
    discount_t = config.discount * (1.0 - batch.terminated)
    per_sample = lambda x: jnp.broadcast_to(x[:, None], q_t.shape)
    y = rlax_inf.soft_td_target(per_sample(config.reward_scale * batch.reward),
                                per_sample(discount_t), q_t, log_pi_t, tau)
    y = jax.lax.stop_gradient(jnp.mean(y, axis=-1))
    q = critic_net.apply(critic, batch.obs, batch.action)  # [J, B]
    return y - q, q

  def retrace_errors(critic, target_critic, target_actor, batch, key):
    q_t, log_pi_t = next_values(target_critic, target_actor, batch.next_obs, key)  # [B, T, N]
    # The replayed next action a[i+1] at s'_i; the last step's is never used (c[T−1] = 0).
    a_next = jnp.concatenate([batch.action[:, 1:], batch.action[:, -1:]], axis=1)
    log_mu = batch.extras["log_prob"]
    log_mu_next = jnp.concatenate([log_mu[:, 1:], log_mu[:, -1:]], axis=1)
    mean, std = target_actor_apply(target_actor, batch.next_obs)
    u_next = jnp.arctanh(jnp.clip(a_next, -1.0 + _ATANH_MARGIN, 1.0 - _ATANH_MARGIN))
    log_pi_next = tanh_normal.log_prob_pre_tanh(u_next, mean, std)
    q_next = q_of(target_critic, batch.next_obs, a_next)
    slots = jax.vmap(jax.vmap(_sampled_retrace_inputs))(q_t, log_pi_t, q_next, log_pi_next,
                                                        log_mu_next)
    q_slots, a_slot, log_p, log_prior, log_mu_slot = slots
    q_all = critic_net.apply(critic, batch.obs, batch.action)  # [J, B, T]
    q = q_all[0]
    discount_t = config.discount * (1.0 - batch.terminated)
    lambda_t = config.retrace_lambda * (1.0 - batch.done)
    # soft_retrace takes q_tm1 and q_t over the same action set; only slot 0 (a_tm1 = 0)
    # of q_tm1 is read, so Q(s_i, a_i) is broadcast over the N + 1 slots.
    q_tm1 = jnp.broadcast_to(q[..., None], q_slots.shape)
    td = jax.vmap(rlax_inf.soft_retrace, (0, 0, 0, 0, 0, 0, 0, 0, None, 0, 0))(
        q_tm1, q_slots, jnp.zeros(q.shape, jnp.int32), a_slot,
        config.reward_scale * batch.reward, discount_t, log_p, log_mu_slot, tau, log_prior,
        lambda_t)
    # The Retrace target G does not depend on Q(s_i, a_i): δ_j = G − Q_j = δ_0 + Q_0 − Q_j.
    return td + q - q_all, q_all

  errors = td_errors if config.critic == "td" else retrace_errors

  def critic_loss(critic, target_critic, target_actor, batch, key):
    td, q = errors(critic, target_critic, target_actor, batch, key)
    return 0.5 * jnp.mean(jnp.square(td)), (td, q)

  def policy_loss(params, target_critic, target_actor, obs, key):
    actor, duals = params["actor"], params["duals"]
    mean_old, std_old = target_actor_apply(target_actor, obs)  # [S, A]
    u, _ = _sample(key, mean_old, std_old, n)  # [S, N, A]
    q = jax.lax.stop_gradient(q_of(target_critic, _repeat(obs, n), jnp.tanh(u)))  # [S, N]
    mean, std = actor_net.apply(actor, obs)

    def one_state(u, q, mean_old, std_old, mean, std):
      log_pi = rlax_inf.decoupled_gaussian_log_prob(u, mean_old, std_old, mean, std)
      kl_mean, kl_std = rlax_inf.decoupled_gaussian_kl(mean_old, std_old, mean, std)
      loss, extra = rlax_inf.mpo_loss(
          log_pi, q, duals.temperature, config.epsilon,
          ((kl_mean, duals.alpha_mean, config.epsilon_mean),
           (kl_std, duals.alpha_stddev, config.epsilon_stddev)))
      if config.action_penalty_epsilon > 0:
        b = config.action_penalty_bound
        cost = -jnp.linalg.norm(u - jnp.clip(u, -b, b), axis=-1)  # [N]
        w_p, dual_p = rlax_inf.mpo_e_step(
            cost, rlax_inf.project_multiplier(duals.penalty_temperature),
            config.action_penalty_epsilon)
        loss = loss + rlax_inf.mpo_m_step_loss(log_pi, w_p) + dual_p
      return loss, (extra, kl_mean, kl_std)

    loss, (extra, kl_mean, kl_std) = jax.vmap(one_state)(u, q, mean_old, std_old, mean, std)
    ess = jax.vmap(rlax_inf.effective_sample_size)(jnp.log(extra.weights + 1e-30))
    metrics = dict(policy_loss=jnp.mean(extra.policy_loss),
                   temperature_loss=jnp.mean(extra.temperature_loss),
                   kl_mean=jnp.mean(kl_mean), kl_stddev=jnp.mean(kl_std),
                   mean_abs=jnp.mean(jnp.abs(mean)),
                   ess_fraction=jnp.mean(ess) / n, std=jnp.mean(std))
    return jnp.mean(loss), (metrics, extra.weights)

  return critic_loss, policy_loss


def make(config: MPOConfig, env_spec: Any) -> base.Agent:
  """MPO for `env_spec` (continuous actions only).

  Raises:
    base.UnsupportedEnv: the env has discrete actions.
  """
  base.check_action_space("mpo", env_spec, (base.CONTINUOUS,))
  obs_size, action_size = int(env_spec.observation_size), int(env_spec.action_size)
  retrace = config.critic == "retrace"
  actor_net = networks.Actor(config.hidden, action_size)
  critic_net = networks.Critics(config.hidden, config.num_critics)
  policy_tx = optax.multi_transform(
      {"actor": optax.adam(config.actor_lr), "duals": optax.adam(config.dual_lr)},
      lambda params: {k: jax.tree.map(lambda _: k, v) for k, v in params.items()})
  critic_tx = optax.adam(config.critic_lr)
  critic_loss, policy_loss = make_losses(config, actor_net, critic_net)
  critic_step = gradients.make_step(critic_loss, critic_tx, has_aux=True)
  policy_step = gradients.make_step(policy_loss, policy_tx, has_aux=True)

  def init(key):
    k_actor, k_critic = jax.random.split(key)
    actor = actor_net.init(k_actor, obs_size)
    critic = critic_net.init(k_critic, obs_size, action_size)
    scalar = lambda x: jnp.asarray(x, jnp.float32)
    duals = Duals(temperature=scalar(config.init_temperature),
                  alpha_mean=scalar(config.init_alpha_mean),
                  alpha_stddev=scalar(config.init_alpha_stddev),
                  penalty_temperature=scalar(config.init_temperature))
    return MPOState(
        actor=actor, critic=critic, target_actor=actor, target_critic=critic, duals=duals,
        policy_opt=policy_tx.init({"actor": actor, "duals": duals}),
        critic_opt=critic_tx.init(critic), normalizer=normalizer_lib.init(obs_size),
        steps=jnp.zeros((), jnp.int32))

  policy_params = base.actor_params

  def act(params, obs, key, deterministic=False):
    """tanh(μ) if deterministic, else tanh(u), u ~ N(μ, σ²); Retrace stores log μ(a)."""
    mean, std = actor_net.apply(params.actor, normalizer_lib.normalize(params.normalizer, obs))
    u = base.select(deterministic, mean, tanh_normal.sample_pre_tanh(key, mean, std))
    extras = {"log_prob": tanh_normal.log_prob_pre_tanh(u, mean, std)} if retrace else {}
    return jnp.tanh(u), extras

  observe = normalizer_lib.make_observe(config.normalize_observations)

  def update(state, batch, key):
    """One MPO step: critic, then policy and duals (E- and M-step), then the targets."""
    k_critic, k_policy = jax.random.split(key)
    norm = lambda x: normalizer_lib.normalize(state.normalizer, x)
    batch = batch.replace(obs=norm(batch.obs), next_obs=norm(batch.next_obs))
    (c_loss, (td, q)), critic, critic_opt = critic_step(
        state.critic, state.critic_opt, state.target_critic, state.target_actor, batch,
        k_critic)
    obs = jnp.reshape(batch.obs, (-1, obs_size))  # every state of the batch (or sequences)
    (p_loss, (p_metrics, _)), policy, policy_opt = policy_step(
        {"actor": state.actor, "duals": state.duals}, state.policy_opt, state.target_critic,
        state.target_actor, obs, k_policy)
    # Projected gradient descent on the duals: the raw η, α_μ, α_σ are put back onto
    # [floor, ∞) after each step (as Acme clips its log-duals at −18). `project_multiplier`
    # alone only projects the value used in the loss; the raw variable would keep falling
    # by `dual_lr` per step while its bound is slack (KL < ε), and a multiplier at −100 needs
    # 10⁴ steps to bind again once the KL exceeds ε: the policy then moves unconstrained.
    duals = jax.tree.map(rlax_inf.project_multiplier, policy["duals"])
    steps = state.steps + 1
    if config.target_update_period > 0:
      target = lambda new, old: optax.periodic_update(new, old, steps,
                                                      config.target_update_period)
    else:
      target = lambda new, old: optax.incremental_update(new, old, config.polyak)
    new_state = MPOState(
        actor=policy["actor"], critic=critic,
        target_actor=target(policy["actor"], state.target_actor),
        target_critic=target(critic, state.target_critic), duals=duals,
        policy_opt=policy_opt, critic_opt=critic_opt, normalizer=state.normalizer,
        steps=steps)
    project = rlax_inf.project_multiplier
    metrics = dict(critic_loss=c_loss, loss=p_loss, q_mean=jnp.mean(q),
                   td_abs=jnp.mean(jnp.abs(td)), temperature=project(state.duals.temperature),
                   alpha_mean=project(state.duals.alpha_mean),
                   alpha_stddev=project(state.duals.alpha_stddev), **p_metrics)
    return new_state, metrics

  return base.Agent(init=init, act=act, policy_params=policy_params, observe=observe,
                    update=update,
                    needs=base.Needs(base.OFF_POLICY, config.retrace_length if retrace else 1,
                                     base.CONTINUOUS),
                    progress_keys=("temperature", "kl_mean"))
