"""KL-regularised policy gradient (Bartunov) with a soft λ-return value baseline.

An on-policy actor-critic whose objective is the return regularised by the KL
to a prior policy π0, E_π Σ_t γ^t (r_t − τ KL_t), KL_t = KL(π(·|s_t) ‖ π0(·|s_t)):

  π0:      uniform (discrete: the uniform categorical; continuous: the standard
           Gaussian N(0, I) in pre-tanh space, the only fixed prior whose KL to
           a tanh-Gaussian is closed form: KL is invariant under the shared
           bijection tanh), or with `stable_em=True` the policy itself, frozen
           and refreshed every `prior_period` updates [rlax_inf.swap_prior]:
           each refresh starts one step of stable EM, π_j ≈ argmax E_π Σ r − τ KL(π ‖ π_{j−1}).
  KL_t:    in closed form [rlax_inf.kl_divergence].
  δ_t   =  r_t − ℓ τ KL_t + γ_t V(s'_t) − V(s_t),   γ_t = γ (1 − terminated_t),
           ℓ = 1 for the long-term KL (inside the return), 0 for the instantaneous one.
  Â_t   =  Σ_{k≥t} (Π_{j=t}^{k−1} γ λ (1 − done_j)) δ_k        (GAE of the soft TD residuals)
  policy:  L_π = mean_{b,t} [−sg(w_t Â_t) log π(a_t|s_t) + τ KL_t] − c_H mean H[π(·|s_t)],
           w_t = min(ρ̄, π(a_t|s_t) / μ(a_t|s_t))  (truncated importance weight of the
           behaviour policy μ, 1 on the first minibatch; `max_importance_weight=None`: w = 1)
  value:   y_t = G_t − ℓ τ KL_t,  G = soft λ-returns with v_t = V(s'_t),
           regulariser ℓ τ KL_{t+1}, and λ_t = λ (1 − done_t)
                                                  [rlax_inf.soft_lambda_returns]
           L_V = ½ mean_{b,t} (V(s_t) − sg(y_t))²

s'_t is the batch's `next_obs[t]` (the true next observation), so the cut at
T − 1 and time-limit truncations bootstrap from V(s'_t) and terminations do
not (γ_t = 0); λ_t = 0 at `done` stops the return from crossing into the next
episode. s'_t = s_{t+1} wherever done_t = 0, so KL_{t+1} is read from the
rollout itself (its value at t = T − 1 and at done is never used).

The policy loss is `rlax_inf.kl_regularized_pg_loss` fed the TD residuals with
discount γλ (1 − done): its "returns" Σ_k Π(γλ) x_k then are exactly Â_t, and
with λ = 1, done = 0 they telescope to the bootstrapped regularised return
minus V(s_t). Identity (tested, with y from the value's soft λ-returns):

  kl_regularized_pg_loss(w·log π, KL, r + γ_t V(s') − V(s), γλ(1 − done), τ, ℓ)
      = −Σ_t [sg(w_t Â_t) log π_t − τ KL_t],      y_t = Â_t + V(s_t).

Why not `rlax_inf.stable_em_loss`: it is the pathwise reverse-KL step
mean_k [τ (log π − log π_old) − Q(s, a_k)] over reparameterised samples and
needs a critic Q(s, a); this agent has a state-value baseline and a
score-function gradient, so the same trust region enters as the closed-form
KL(π ‖ π_old) inside `kl_regularized_pg_loss` (the KL-penalty form of PPO /
TRPO's step), with π_old refreshed by `rlax_inf.swap_prior`.

Bartunov, "Reinforcement learning through the lenses of variational inference";
Schulman et al., "High-Dimensional Continuous Control Using Generalized
Advantage Estimation", 2016; Rawlik, Toussaint, Vijayakumar, 2012 (stable EM).

Policies: a categorical over logits for discrete envs, a tanh-Gaussian for
continuous ones (chosen from `env_spec.discrete`). Continuous actions store the
pre-tanh sample u in `extras['pre_tanh']` so that log π(tanh u) is computed
from u (stable), never from atanh(a).
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Optional, Tuple

import distrax
import flax.struct
import jax
import jax.numpy as jnp

import rlax_inf
from rlax_inf.agents import _tanh_normal as tanh_normal
from rlax_inf.agents import base
from rlax_inf.agents import gradients
from rlax_inf.agents import networks
from rlax_inf.agents import normalizer as normalizer_lib


@dataclasses.dataclass(frozen=True)
class KLPGConfig:
  """Hyper-parameters of the KL-regularised policy gradient."""

  hidden: Tuple[int, ...] = (64, 64)  # policy and value MLPs
  policy_lr: float = 3e-4
  value_lr: float = 1e-3
  max_grad_norm: Optional[float] = 1.0  # global-norm clip per optimiser; None: off
  discount: float = 0.99
  td_lambda: float = 0.95  # λ of the advantages and of the value's soft λ-returns
  unroll_length: int = 32  # T, the on-policy rollout length
  temperature: float = 0.01  # τ of the KL regulariser
  long_term: bool = True  # KL inside the return (True) or instantaneous
  stable_em: bool = False  # π0 = the policy refreshed every prior_period updates
  prior_period: int = 1  # updates between prior refreshes (stable EM)
  entropy_cost: float = 0.0  # c_H of the optional entropy bonus
  max_importance_weight: Optional[float] = 1.0  # ρ̄ of w = min(ρ̄, π/μ); None: w = 1
  reward_scale: float = 1.0
  normalize_observations: bool = True

  def __post_init__(self):
    if self.temperature < 0:
      raise ValueError(f"temperature must be >= 0, got {self.temperature}")
    if self.prior_period < 1:
      raise ValueError(f"prior_period must be >= 1, got {self.prior_period}")
    if self.unroll_length < 2:
      raise ValueError(f"unroll_length must be >= 2, got {self.unroll_length}")
    if not 0.0 <= self.td_lambda <= 1.0:
      raise ValueError(f"td_lambda must be in [0, 1], got {self.td_lambda}")
    if self.max_importance_weight is not None and self.max_importance_weight <= 0:
      raise ValueError("max_importance_weight must be > 0 or None, "
                       f"got {self.max_importance_weight}")


@flax.struct.dataclass
class KLPGState:
  """Everything the agent learns or carries between updates (arrays only)."""

  actor: Any
  value: Any
  prior: Any  # the frozen prior policy's parameters (stable EM), else None
  actor_opt: Any
  value_opt: Any
  normalizer: normalizer_lib.NormalizerState
  steps: jnp.ndarray  # updates taken


class Policy(NamedTuple):
  """A policy family as pure functions of its distribution parameters `dist`.

    init(key, obs_size) -> params
    dist(params, obs) -> dist          (log-probabilities [..., A], or pre-tanh (mean, std))
    sample(dist, key, deterministic) -> (action, extras)   extras: 'log_prob' (+ 'pre_tanh')
    log_prob(dist, action, extras) -> log π(a|s)
    kl(dist, prior_dist) -> KL(π ‖ π0);  prior_dist=None: the uniform prior
    entropy(dist) -> H[π] (continuous: of the pre-tanh Gaussian)
  """

  init: Callable[..., Any]
  dist: Callable[..., Any]
  sample: Callable[..., Tuple[jax.Array, dict]]
  log_prob: Callable[..., jax.Array]
  kl: Callable[..., jax.Array]
  entropy: Callable[..., jax.Array]


def categorical_policy(hidden: Tuple[int, ...], num_actions: int) -> Policy:
  """π(·|s) = softmax(MLP(s)); uniform prior log π0 = −log A."""
  net = networks.MLP(tuple(hidden), num_actions)

  def init(key, obs_size):
    return net.init(key, jnp.zeros((1, obs_size)))

  def dist(params, obs):
    return jax.nn.log_softmax(net.apply(params, obs), axis=-1)

  def sample(log_p, key, deterministic):
    a = base.select(deterministic, jnp.argmax(log_p, axis=-1),
                    jax.random.categorical(key, log_p, axis=-1)).astype(jnp.int32)
    return a, dict(log_prob=log_prob(log_p, a, {}))

  def log_prob(log_p, action, extras):
    del extras
    return jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

  def kl(log_p, prior_log_p):
    if prior_log_p is None:
      prior_log_p = jnp.full_like(log_p, -jnp.log(float(num_actions)))
    return rlax_inf.kl_divergence(distrax.Categorical(logits=log_p),
                                  distrax.Categorical(logits=prior_log_p))

  def entropy(log_p):
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)

  return Policy(init, dist, sample, log_prob, kl, entropy)


def tanh_gaussian_policy(hidden: Tuple[int, ...], action_size: int) -> Policy:
  """a = tanh(u), u ~ N(μ(s), σ(s)²); uniform prior N(0, I) in pre-tanh space."""
  actor = networks.Actor(hidden, action_size)

  def dist(params, obs):
    return actor.apply(params, obs)

  def sample(d, key, deterministic):
    mean, std = d
    u = base.select(deterministic, mean, tanh_normal.sample_pre_tanh(key, mean, std))
    return jnp.tanh(u), dict(log_prob=tanh_normal.log_prob_pre_tanh(u, mean, std), pre_tanh=u)

  def log_prob(d, action, extras):
    mean, std = d
    if "pre_tanh" in extras:
      u = extras["pre_tanh"]
    else:  # exact for |u| ≲ 7 (float32); the agent's own rollouts always carry u
      u = jnp.arctanh(jnp.clip(action, -1.0 + 1e-6, 1.0 - 1e-6))
    return tanh_normal.log_prob_pre_tanh(u, mean, std)

  def kl(d, prior_d):
    mean, std = d
    if prior_d is None:
      prior_d = (jnp.zeros_like(mean), jnp.ones_like(std))
    return rlax_inf.kl_divergence(rlax_inf.TanhGaussian(mean, std),
                                  rlax_inf.TanhGaussian(*prior_d))

  def entropy(d):
    _, std = d
    return jnp.sum(jnp.log(std) + 0.5 * jnp.log(2.0 * jnp.pi * jnp.e), axis=-1)

  return Policy(actor.init, dist, sample, log_prob, kl, entropy)


def advantages_and_targets(r_t, terminated_t, done_t, v_tm1, v_t, kl_t, temperature,
                           long_term, discount, td_lambda):
  """Â_t (GAE of the soft TD residuals) and value targets y_t of one rollout [T].

  Â is what `kl_regularized_pg_loss` accumulates from the TD residuals (its
  "returns" with discount γλ(1 − done)); y is the soft λ-return
  (`rlax_inf.soft_lambda_returns`) minus ℓ τ KL_t. y_t = Â_t + V(s_t).

  Args:
    r_t, terminated_t, done_t: rewards and episode flags [T].
    v_tm1: V(s_t) [T].
    v_t: V(s'_t) [T], s'_t the true next observation.
    kl_t: KL_t at s_t [T].
    temperature, long_term, discount, td_lambda: as in `KLPGConfig`.

  Returns:
    (x_t, pg_discount_t, y_t): the residuals fed to the loss as rewards
    (r + γ_t V(s') − V(s), the loss subtracts ℓ τ KL), its discounts, and the
    value targets.
  """
  gamma_t = discount * (1.0 - terminated_t)
  not_done = 1.0 - done_t
  x_t = r_t + gamma_t * v_t - v_tm1
  pg_discount_t = discount * td_lambda * not_done
  reg = temperature * kl_t if long_term else jnp.zeros_like(kl_t)
  reg_next = jnp.concatenate([reg[1:], jnp.zeros_like(reg[:1])])
  g_t = rlax_inf.soft_lambda_returns(r_t, gamma_t, v_t, reg_next, td_lambda * not_done)
  return x_t, pg_discount_t, g_t - reg


def make_losses(config: KLPGConfig, policy: Policy, value_net: networks.MLP):
  """(policy_loss, value_loss) of the KL-regularised policy gradient.

    policy_loss(actor, prior, obs, batch, v_tm1, v_t) -> (L_π, aux)
    value_loss(value, obs, y) -> (L_V, V(s))
  """
  tau = config.temperature
  pg_loss = jax.vmap(rlax_inf.kl_regularized_pg_loss, (0, 0, 0, 0, None, None))
  targets = jax.vmap(advantages_and_targets,
                     (0, 0, 0, 0, 0, 0, None, None, None, None))

  def policy_loss(actor, prior, obs, batch, v_tm1, v_t):
    d = policy.dist(actor, obs)
    prior_d = None if prior is None else jax.lax.stop_gradient(policy.dist(prior, obs))
    kl_t = policy.kl(d, prior_d)  # [B, T]
    log_pi = policy.log_prob(d, batch.action, batch.extras)
    if config.max_importance_weight is None:
      w = jnp.ones_like(log_pi)
    else:
      rho = jnp.exp(log_pi - batch.extras["log_prob"])
      w = jax.lax.stop_gradient(jnp.minimum(config.max_importance_weight, rho))
    x_t, pg_discount_t, y = targets(
        config.reward_scale * batch.reward, batch.terminated, batch.done, v_tm1, v_t,
        jax.lax.stop_gradient(kl_t), tau, config.long_term, config.discount, config.td_lambda)
    loss = pg_loss(w * log_pi, kl_t, x_t, pg_discount_t, tau, config.long_term)
    entropy = policy.entropy(d)
    total = jnp.mean(loss) / log_pi.shape[1] - config.entropy_cost * jnp.mean(entropy)
    aux = dict(kl=jnp.mean(kl_t), entropy=jnp.mean(entropy), importance_weight=jnp.mean(w),
               behaviour_kl=jnp.mean(batch.extras["log_prob"] - log_pi)
               if "log_prob" in batch.extras else jnp.zeros(()),
               value_targets=y)
    return total, aux

  def value_loss(value, obs, y):
    v = value_net.apply(value, obs)[..., 0]
    return 0.5 * jnp.mean(jnp.square(v - jax.lax.stop_gradient(y))), v

  return policy_loss, value_loss


def make(config: KLPGConfig, env_spec: Any) -> base.Agent:
  """The KL-regularised policy gradient agent for `env_spec`.

  Args:
    config: the hyper-parameters.
    env_spec: the env's `EnvSpec`; `discrete` picks the categorical policy,
      otherwise the tanh-Gaussian one.

  Returns:
    The `base.Agent`, on-policy with rollouts of T = `config.unroll_length`.
  """
  space = base.check_action_space("klpg", env_spec, (base.CONTINUOUS, base.DISCRETE))
  obs_size, action_size = int(env_spec.observation_size), int(env_spec.action_size)
  if space == base.DISCRETE:
    policy = categorical_policy(config.hidden, action_size)
  else:
    policy = tanh_gaussian_policy(config.hidden, action_size)
  value_net = networks.MLP(tuple(config.hidden), 1)
  actor_tx = gradients.adam(config.policy_lr, config.max_grad_norm)
  value_tx = gradients.adam(config.value_lr, config.max_grad_norm)
  policy_loss, value_loss = make_losses(config, policy, value_net)
  policy_step = gradients.make_step(policy_loss, actor_tx, has_aux=True)
  value_step = gradients.make_step(value_loss, value_tx, has_aux=True)

  def init(key):
    k_actor, k_value = jax.random.split(key)
    actor = policy.init(k_actor, obs_size)
    value = value_net.init(k_value, jnp.zeros((1, obs_size)))
    return KLPGState(
        actor=actor, value=value, prior=actor if config.stable_em else None,
        actor_opt=actor_tx.init(actor), value_opt=value_tx.init(value),
        normalizer=normalizer_lib.init(obs_size), steps=jnp.zeros((), jnp.int32))

  policy_params = base.actor_params

  def act(params, obs, key, deterministic=False):
    """A sample of π (the mode where `deterministic`, a flag or an [N] mask).

    extras: 'log_prob' [N] (behaviour log π(a|s)) and, continuous, 'pre_tanh' [N, A].
    """
    d = policy.dist(params.actor, normalizer_lib.normalize(params.normalizer, obs))
    return policy.sample(d, key, deterministic)

  observe = normalizer_lib.make_observe(config.normalize_observations)

  def update(state, batch, key):
    """One step on a [B, T] rollout batch: policy, then value, then the prior swap."""
    del key  # the losses are deterministic given the batch
    obs = normalizer_lib.normalize(state.normalizer, batch.obs)
    next_obs = normalizer_lib.normalize(state.normalizer, batch.next_obs)
    v_tm1 = value_net.apply(state.value, obs)[..., 0]
    v_t = value_net.apply(state.value, next_obs)[..., 0]
    (p_loss, aux), actor, actor_opt = policy_step(
        state.actor, state.actor_opt, state.prior, obs, batch, v_tm1, v_t)
    (v_loss, v), value, value_opt = value_step(
        state.value, state.value_opt, obs, aux.pop("value_targets"))
    steps = state.steps + 1
    prior = state.prior
    if config.stable_em:
      prior = rlax_inf.swap_prior(prior, actor, steps, config.prior_period)
    new_state = KLPGState(actor=actor, value=value, prior=prior, actor_opt=actor_opt,
                          value_opt=value_opt, normalizer=state.normalizer, steps=steps)
    metrics = dict(policy_loss=p_loss, value_loss=v_loss, value_mean=jnp.mean(v), **aux)
    return new_state, metrics

  return base.Agent(init=init, act=act, policy_params=policy_params, observe=observe,
                    update=update,
                    needs=base.Needs(base.ON_POLICY, config.unroll_length, space),
                    progress_keys=("kl",))
