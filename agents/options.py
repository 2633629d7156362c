"""A policy over options trained on the augmented bound, options as auxiliary variables (Bartunov).

The agent executes options (Sutton, Precup & Singh, 1999): an option o_t picks
the intra-option policy π_o(a|s); at each step the running option continues
with probability c(s_t, o_{t−1}), else a new one is drawn from the option
selection q(o|s_t) [rlax_inf.sample_option]:

  π(o_t | s_t, o_{t−1}) = c 1[o_t = o_{t−1}] + (1 − c) q(o_t | s_t)
                                                  [rlax_inf.option_transition_log_probs]

(o_1 ~ q(·|s_1) at an episode's first step). The option is the agent's
per-env carry (`base.Agent.initial_carry`): the loop feeds o_{t−1} back to
`act` and resets it at episode ends. It learns, together, the intra-option
policies, c, q and a reverse model q̃(o_t | o_{t−1}, s_t, a_t) (a Markov chain
over options whose rows are a function of the step's features, the form of
`rlax_inf.option_chain_log_probs`) by maximising the per-step augmented bound
[rlax_inf.options_augmented_rewards]

  b_t = r_t − τ [KL(π_{o_t}(·|s_t) ‖ π0(·|s_t)) + log π(o_t | s_t, o_{t−1}) − log q̃(o_t | o_{t−1}, s_t, a_t)]

(= τ (α r_t − KL − log π(o_t|·) + log q̃) with α = 1/τ), whose expected sum is
the return regularised by the KL of the marginal action policy from π0 minus
τ E KL(p(o | a, s) ‖ q̃). With `reverse_model=False` the option term is
−H(π(·|s_t, o_{t−1})) instead (the flat MDP on (s, o)).

Which reverse model: any q̃ gives a lower bound, and the gap τ E KL(p(o|a, s) ‖ q̃)
is what shapes the options. With o_{t−1} in q̃ (the default, the tighter bound)
the gap is zero both for options that (s_t, a_t) identify and for identical
options (then the posterior is the prior chain, which q̃ can copy). The
mean-field q̃(o_t | s_t, a_t) (`reverse_previous_option=False`) cannot copy the
chain's persistence: the gap closes for options that the state or the action
identify (distinct regions or directions, as the discriminators of Gregor et
al.'s VIC, 2016) or for options that do not persist (c → 0).
Either way a single option used everywhere also closes the gap (the bound's
"posterior collapse"); `learn_selection=False` fixes q(o|s) = 1/O, which rules
that out, and `learn_continuation=False` fixes c, which rules out c → 0.
On four rooms none of these four settings made the options distinct
(benchmarks/results/options.md): every degenerate split is an optimum of the bound.
With the information term below and `info_selection` (β 4, η 0.03, c fixed 0.5) they did,
on 4/4 seeds (I(o; room)/H(room) 0.26–0.32, every option used, the task still solved).

The information term (`info_weight` β > 0; 0, the default, leaves the agent as
above) adds to the bracket a lower bound on I(o_t; s_t) (Barber & Agakov's, as
in the discriminators of VIC, Gregor et al. 2016, and DIAYN, Eysenbach et al.
2018), with a state-only reverse model q̃(o_t | s_t) and the marginal p̂(o) of
the option process in place of a prior over options:

  b_t += τ β [log q̃(o_t | s_t) − log p̂(o_t) − log O],
  p̂(o) = sg(mean over the batch's steps of π(o | s_t, o_{t−1}))     [`information_rewards`]

Its expectation, −β [H(o|s) + KL(p̂ ‖ uniform)] up to the gap KL(p(o|s) ‖ q̃), is
highest for options that the state identifies and that are used evenly, so a
single option everywhere (0 for the plain MI bound) now costs β log O per step.
The − log O keeps the term's expectation ≤ 0, so it does not pay the agent to
stay in an episode. Its gradient: the score function through the returns for
selection, continuation and intra-option policies (which options run where, and
where they go), maximum likelihood for q̃(o|s) (its only gradient; p̂ is
stopped: E_p̂[∇ log p̂] = 0 at the true marginal).

With `info_selection` η > 0 (needs β > 0) the option selection q(o|s), the
initiation of the options, is learned from the information term alone (as VIC
learns its option prior). The selection that maximises the term's expectation
at s with an entropy bonus, Σ_o q(o|s) [log q̃(o|s) − log p̂(o)] + η H(q(·|s)),
is the Gibbs distribution

  q*(o|s) = softmax_o((log q̃(o|s) − log p̂(o)) / η),

and q moves towards it by minimising τ β mean_t KL(sg(q*(·|s_t)) ‖ q(·|s_t)) (an
M-step, as MPO's); q gets no gradient from the rest of the bound (it enters it
stopped). η < 1 sharpens: q → q̃ → q* amplifies any state dependence 1/η-fold
per round (the uniform split is a saddle), while − log p̂ keeps the options
in use. Why leave the split to this term: the bound hardly depends on how the
policy is split into options (above), and the task's advantages favour
whichever option is trained best so far, so one option wins.

  π0:      uniform (discrete), N(0, I) in pre-tanh space (continuous), as in klpg.
  V:       V(s_t, o_{t−1}), one head per previous option and one for "none"
           (an episode's first step): the state of the augmented MDP.
  y_t:     λ-return of sg(b_t) bootstrapping from V(s'_t, o_t), γ_t = γ (1 − terminated_t),
           λ_t = λ (1 − done_t)                [rlax_inf.soft_lambda_returns, no regulariser]
  Â_t  =   y_t − V(s_t, o_{t−1})
  actor:   ascend the surrogate of `rlax_inf.options_bound_surrogate` over the K = B·T
           steps of the batch, each a length-1 trajectory from (s_t, o_{t−1}) whose
           Monte-Carlo value F is its λ-return (an actor-critic):
             F_k = sg(V + w Â) + (b − sg(b)),   baseline V(s_t, o_{t−1}),
             ∇ = mean_k [w Â ∇(log π(o_t|·) + log π_{o_t}(a_t|s_t)) + ∇ b_t],
           w = min(ρ̄, p(o_t, a_t|·) / μ(o_t, a_t|·)) the truncated importance weight of
           the behaviour policy (1 on the first minibatch; None: w = 1). ∇b_t is the
           pathwise part: the closed-form KL to the intra-option policies, log π(o_t|·)
           to selection and continuation, and τ log q̃ to the reverse model (its only
           gradient: maximum likelihood of the options the policy took).
  value:   L_V = ½ mean (V(s_t, o_{t−1}) − sg(y_t))².

Networks (q̃(o|s): one more MLP s → [O], learned only when β > 0): one actor MLP s → (intra-option parameters [O, ·], selection logits
[O], continuation logits [O]; c = sigmoid(logit + continue_bias)), the reverse
MLP (s, a) → logits [O + 1, O] (row o_{t−1}, row O at an episode's first step),
the value MLP s → [O + 1]. Intra-option policies: categorical over logits
(discrete), tanh-Gaussian (continuous; log-probs from the stored pre-tanh sample).

Bartunov, "Reinforcement learning through the lenses of variational inference";
Agakov & Barber, "An auxiliary variational method", 2004; Bacon, Harb & Precup,
"The option-critic architecture", 2017 (termination = 1 − c); Gregor, Rezende &
Wierstra, "Variational intrinsic control", 2016; Eysenbach et al., "Diversity is all you
need", 2018; Barber & Agakov, "The IM algorithm", 2003.
"""

import dataclasses
import math
from typing import Any, NamedTuple, Optional, Tuple

import distrax
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

_MIN_STD = 1e-3  # as networks.Actor


@dataclasses.dataclass(frozen=True)
class OptionsConfig:
  """Hyper-parameters of the options agent."""

  num_options: int = 4  # O
  hidden: Tuple[int, ...] = (64, 64)  # actor, reverse-model and value MLPs
  policy_lr: float = 3e-4  # intra-option policies, selection and continuation
  reverse_lr: float = 1e-3  # the reverse model q̃
  value_lr: float = 1e-3
  max_grad_norm: Optional[float] = 1.0  # global-norm clip per optimiser; None: off
  discount: float = 0.99
  td_lambda: float = 0.95
  unroll_length: int = 32  # T, the on-policy rollout length
  temperature: float = 0.01  # τ = 1/α of the bound's regularisers
  reverse_model: bool = True  # False: the + H(π(o_t | s_t, o_{t−1})) variant
  reverse_previous_option: bool = True  # q̃(o_t | o_{t−1}, s_t, a_t); False: q̃(o_t | s_t, a_t)
  continue_bias: float = 2.0  # added to the continuation logits (c ≈ 0.88 at init)
  learn_selection: bool = True  # False: q(o|s) = 1/O, a fixed prior over options
  learn_continuation: bool = True  # False: c(s, o) = sigmoid(continue_bias), fixed
  max_importance_weight: Optional[float] = 1.0  # ρ̄ of w = min(ρ̄, p/μ); None: w = 1
  info_weight: float = 0.0  # β of the information term τ β [log q̃(o|s) − log p̂(o) − log O]; 0: off
  info_selection: float = 0.0  # η > 0: q(o|s) learned only from the information term (β > 0); 0: off
  reward_scale: float = 1.0
  normalize_observations: bool = True

  def __post_init__(self):
    def bad(name, why):
      raise ValueError(f"{name} must be {why}, got {getattr(self, name)!r}")

    if self.num_options < 1:
      bad("num_options", ">= 1")
    if not self.hidden or any(h < 1 for h in self.hidden):
      bad("hidden", "a non-empty tuple of widths >= 1")
    for name in ("policy_lr", "reverse_lr", "value_lr"):
      if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
        bad(name, "finite and > 0")
    if self.max_grad_norm is not None and not self.max_grad_norm > 0:
      bad("max_grad_norm", "> 0 or None")
    if not 0.0 <= self.discount <= 1.0:
      bad("discount", "in [0, 1]")
    if not 0.0 <= self.td_lambda <= 1.0:
      bad("td_lambda", "in [0, 1]")
    if self.unroll_length < 2:
      bad("unroll_length", ">= 2")
    if not (math.isfinite(self.temperature) and self.temperature >= 0):
      bad("temperature", "finite and >= 0")
    if not math.isfinite(self.continue_bias):
      bad("continue_bias", "finite")
    if self.max_importance_weight is not None and not self.max_importance_weight > 0:
      bad("max_importance_weight", "> 0 or None")
    if not (math.isfinite(self.reward_scale) and self.reward_scale > 0):
      bad("reward_scale", "finite and > 0")
    if not (math.isfinite(self.info_weight) and self.info_weight >= 0):
      bad("info_weight", "finite and >= 0")
    if not (math.isfinite(self.info_selection) and self.info_selection >= 0):
      bad("info_selection", "finite and >= 0")
    if self.info_selection > 0 and not (self.info_weight > 0 and self.learn_selection):
      raise ValueError("info_selection > 0 needs info_weight > 0 and learn_selection=True, got "
                       f"info_weight={self.info_weight!r}, learn_selection={self.learn_selection!r}")


@flax.struct.dataclass
class OptionsState:
  """Everything the agent learns or carries between updates (arrays only)."""

  actor: Any  # intra-option policies, option selection, continuation
  reverse: Any  # the reverse model q̃
  value: Any
  policy_opt: Any  # one optax state over (actor, reverse), one learning rate each
  value_opt: Any
  normalizer: normalizer_lib.NormalizerState
  steps: jnp.ndarray
  info: Any = None  # the state-only reverse model q̃(o|s) of the information term


class Heads(NamedTuple):
  """The actor's outputs at one or more states [..., ·]."""

  intra: Any  # discrete: log π_o(·|s) [..., O, A]; continuous: pre-tanh (mean, std) [..., O, D]
  log_selection: jax.Array  # log q(o|s) [..., O]
  continue_prob: jax.Array  # c(s, o) [..., O]


def make_heads(num_options: int, action_size: int, discrete: bool, continue_bias: float,
               learn_selection: bool = True, learn_continuation: bool = True):
  """(output size, split): the actor MLP's output [..., size] -> `Heads`.

  With `learn_selection=False` the option selection is the uniform q(o|s) = 1/O,
  with `learn_continuation=False` c = sigmoid(continue_bias) (the outputs' logits
  are then ignored).
  """
  per_option = action_size if discrete else 2 * action_size
  size = num_options * (per_option + 2)

  def split(out):
    lead = out.shape[:-1]
    intra = jnp.reshape(out[..., :num_options * per_option], lead + (num_options, per_option))
    rest = out[..., num_options * per_option:]
    logits = rest[..., :num_options]
    if not learn_selection:
      logits = jnp.zeros_like(logits)
    log_selection = jax.nn.log_softmax(logits, axis=-1)
    c_logits = rest[..., num_options:]
    if not learn_continuation:
      c_logits = jnp.zeros_like(c_logits)
    continue_prob = jax.nn.sigmoid(c_logits + continue_bias)
    if discrete:
      intra = jax.nn.log_softmax(intra, axis=-1)
    else:
      mean, raw_std = jnp.split(intra, 2, axis=-1)
      intra = (mean, jax.nn.softplus(raw_std) + _MIN_STD)
    return Heads(intra, log_selection, continue_prob)

  return size, split


def _take_option(x, o):
  """x[..., o, :] for per-option arrays x [..., O, P] and options o [...]."""
  return jnp.take_along_axis(x, o[..., None, None], axis=-2)[..., 0, :]


def intra_option_terms(intra, o, action, extras, discrete, action_size):
  """(log π_{o}(a|s), KL(π_o(·|s) ‖ π0(·|s))) of the options `o` [...] taken."""
  if discrete:
    log_p = _take_option(intra, o)  # [..., A]
    log_pi = jnp.take_along_axis(log_p, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
    uniform = jnp.full_like(log_p, -math.log(action_size))
    kl = rlax_inf.kl_divergence(distrax.Categorical(logits=log_p),
                                distrax.Categorical(logits=uniform))
    return log_pi, kl
  mean, std = _take_option(intra[0], o), _take_option(intra[1], o)
  log_pi = tanh_normal.log_prob_pre_tanh(extras["pre_tanh"], mean, std)
  kl = rlax_inf.kl_divergence(rlax_inf.TanhGaussian(mean, std),
                              rlax_inf.TanhGaussian(jnp.zeros_like(mean), jnp.ones_like(std)))
  return log_pi, kl


def option_log_probs(prev_option, continue_prob, log_selection):
  """log π(· | s_t, o_{t−1}) [..., O]; `prev_option` < 0 marks an episode's first step (q)."""
  new = prev_option < 0
  c = jnp.where(new[..., None], 0.0, continue_prob)
  fn = rlax_inf.option_transition_log_probs
  for _ in range(prev_option.ndim):
    fn = jax.vmap(fn)
  return fn(jnp.maximum(prev_option, 0), c, log_selection)


def reverse_log_probs(logits, prev_option, option):
  """log q̃(o_t | o_{t−1}, s_t, a_t) [T] of one rollout [T] (episodes may start inside it).

  logits [T, O + 1, O]: row o_{t−1}, or row O where o_{t−1} < 0 (an episode's first
  step). As the chain of `rlax_inf.option_chain_log_probs`: the first step's row is
  its initial distribution, and at a first step inside the rollout every row of
  that step's transition is the "first step" row.
  """
  num_options = logits.shape[-1]
  new = prev_option < 0
  first_row = logits[:, num_options]  # [T, O]
  log_transition = jnp.where(new[:, None, None], first_row[:, None, :], logits[:, :num_options])
  log_initial = logits[0, jnp.where(new[0], num_options, prev_option[0])]
  return rlax_inf.option_chain_log_probs(option, log_initial, log_transition)


def action_features(action, discrete, action_size):
  return jax.nn.one_hot(action, action_size) if discrete else action


def information_rewards(log_q_state, log_option_probs, option):
  """Per-step information term log q̃(o_t | s_t) − log p̂(o_t) − log O [...].

  p̂(o) = sg(mean over every step of π(o | s_t, o_{t−1})), the batch's marginal
  of the option process. Expectation: a lower bound on I(o; s) minus log O.

  Args:
    log_q_state: log q̃(· | s_t) [..., O], the state-only reverse model.
    log_option_probs: log π(· | s_t, o_{t−1}) [..., O].
    option: o_t [...].

  Returns:
    The term [...] of every step.
  """
  num_options = log_q_state.shape[-1]
  log_marginal = option_marginal_log_probs(log_option_probs)
  take = lambda x: jnp.take_along_axis(x, option[..., None], axis=-1)[..., 0]
  return take(log_q_state) - log_marginal[option] - math.log(num_options)


def option_marginal_log_probs(log_option_probs):
  """log p̂(o) [O] = sg(log mean over every step [...] of π(o | s_t, o_{t−1}))."""
  flat = jnp.reshape(log_option_probs, (-1, log_option_probs.shape[-1]))
  return jax.lax.stop_gradient(jax.nn.logsumexp(flat, axis=0) - math.log(flat.shape[0]))


def selection_target_kl(log_selection, log_q_state, log_marginal, eta):
  """KL(sg(q*(·|s_t)) ‖ q(·|s_t)) [...], q* = softmax((log q̃(o|s_t) − log p̂(o)) / η).

  Args:
    log_selection: log q(·|s_t) [..., O], the option selection (differentiated).
    log_q_state: log q̃(·|s_t) [..., O], the state-only reverse model.
    log_marginal: log p̂ [O].
    eta: η > 0, the temperature of the target.

  Returns:
    The KL of every step [...].
  """
  log_target = jax.lax.stop_gradient(
      jax.nn.log_softmax((log_q_state - log_marginal) / eta, axis=-1))
  return jnp.sum(jnp.exp(log_target) * (log_target - log_selection), axis=-1)


def make_losses(config: OptionsConfig, actor_net, reverse_net, value_net, split,
                discrete: bool, action_size: int, info_net=None):
  """(policy_loss, value_loss, value_inputs) of the options agent.

    policy_loss((actor, reverse, info), obs, batch, v_tm1, v_t) -> (−surrogate, aux)
    value_loss(value, obs, prev_option, y) -> (L_V, V(s_t, o_{t−1}))
  """
  tau = config.temperature
  num_options = config.num_options
  bound = jax.vmap(rlax_inf.options_augmented_rewards, (0, 0, 0, 0, 0, None))
  bound_no_reverse = jax.vmap(
      lambda r, kl, o, lp: rlax_inf.options_augmented_rewards(r, kl, o, lp, None, tau))
  returns = jax.vmap(rlax_inf.soft_lambda_returns)

  def policy_loss(params, obs, batch, v_tm1, v_t):
    actor, reverse, info = params
    heads = split(actor_net.apply(actor, obs))
    o_t = batch.extras["option"]
    prev = batch.extras["prev_option"]
    # info_selection: q(o|s) is learned from the information term only (stopped here).
    log_selection = (jax.lax.stop_gradient(heads.log_selection) if config.info_selection > 0
                     else heads.log_selection)
    log_option_probs = option_log_probs(prev, heads.continue_prob, log_selection)
    log_prob_o = jnp.take_along_axis(log_option_probs, o_t[..., None], axis=-1)[..., 0]
    log_pi_a, kl_t = intra_option_terms(heads.intra, o_t, batch.action, batch.extras,
                                        discrete, action_size)
    r_t = config.reward_scale * batch.reward
    if config.reverse_model:
      x = jnp.concatenate([obs, action_features(batch.action, discrete, action_size)], -1)
      logits = jnp.reshape(reverse_net.apply(reverse, x),
                           obs.shape[:-1] + (num_options + 1, num_options))
      prev_q = prev if config.reverse_previous_option else jnp.full_like(prev, -1)
      log_q = jax.vmap(reverse_log_probs)(logits, prev_q, o_t)
      b_t = bound(r_t, kl_t, o_t, log_option_probs, log_q, tau)
    else:
      log_q = jnp.zeros_like(r_t)
      b_t = bound_no_reverse(r_t, kl_t, o_t, log_option_probs)
    if config.info_weight > 0:
      log_q_state = jax.nn.log_softmax(info_net.apply(info, obs), axis=-1)
      info_t = information_rewards(log_q_state, log_option_probs, o_t)
      b_t = b_t + tau * config.info_weight * info_t
    else:
      info_t = jnp.zeros_like(r_t)
    if config.info_selection > 0:
      selection_kl = jnp.mean(selection_target_kl(
          heads.log_selection, log_q_state, option_marginal_log_probs(log_option_probs),
          config.info_selection))
    else:
      selection_kl = jnp.zeros(())
    b_sg = jax.lax.stop_gradient(b_t)
    gamma_t = config.discount * (1.0 - batch.terminated)
    y = returns(b_sg, gamma_t, v_t, jnp.zeros_like(b_sg),
                config.td_lambda * (1.0 - batch.done))
    adv = y - v_tm1
    log_prob = log_prob_o + log_pi_a
    if config.max_importance_weight is None:
      w = jnp.ones_like(log_prob)
    else:
      rho = jnp.exp(log_prob - batch.extras["log_prob"])
      w = jax.lax.stop_gradient(jnp.minimum(config.max_importance_weight, rho))
    flat = lambda x: jnp.reshape(x, (-1, 1))
    f = jax.lax.stop_gradient(v_tm1 + w * adv) + (b_t - b_sg)
    surrogate = rlax_inf.options_bound_surrogate(
        flat(f), flat(log_prob_o), flat(log_pi_a), jax.lax.stop_gradient(v_tm1).reshape(-1))
    surrogate = surrogate - tau * config.info_weight * selection_kl
    not_first = (prev >= 0).astype(jnp.float32)
    option_entropy = -jnp.sum(jnp.exp(log_option_probs) * log_option_probs, -1)
    c_prev = jnp.take_along_axis(heads.continue_prob, jnp.maximum(prev, 0)[..., None],
                                 axis=-1)[..., 0]
    aux = dict(
        bound=jnp.mean(b_sg), kl=jnp.mean(kl_t), option_entropy=jnp.mean(option_entropy),
        reverse_log_prob=jnp.mean(log_q), info_reward=jnp.mean(info_t),
        selection_kl=selection_kl,
        importance_weight=jnp.mean(w),
        continue_prob=jnp.sum(c_prev * not_first) / jnp.maximum(jnp.sum(not_first), 1.0),
        switch_rate=jnp.sum((o_t != prev) * not_first) / jnp.maximum(jnp.sum(not_first), 1.0),
        value_targets=y)
    return -surrogate, aux

  def value_heads(value, obs, prev_option):
    v = value_net.apply(value, obs)  # [..., O + 1]
    idx = jnp.where(prev_option < 0, num_options, prev_option)
    return jnp.take_along_axis(v, idx[..., None], axis=-1)[..., 0]

  def value_loss(value, obs, prev_option, y):
    v = value_heads(value, obs, prev_option)
    return 0.5 * jnp.mean(jnp.square(v - jax.lax.stop_gradient(y))), v

  return policy_loss, value_loss, value_heads


def build(config: OptionsConfig, env_spec: Any):
  """((actor, reverse, value, info) nets, the actor's `Heads` split, `make_losses`'s three)."""
  discrete = bool(env_spec.discrete)
  action_size = int(env_spec.action_size)
  num_options = config.num_options
  out_size, split = make_heads(num_options, action_size, discrete, config.continue_bias,
                               config.learn_selection, config.learn_continuation)
  nets = (networks.MLP(tuple(config.hidden), out_size),
          networks.MLP(tuple(config.hidden), (num_options + 1) * num_options),
          networks.MLP(tuple(config.hidden), num_options + 1),
          networks.MLP(tuple(config.hidden), num_options))
  losses = make_losses(config, *nets[:3], split, discrete, action_size, info_net=nets[3])
  return nets, split, losses


def make(config: OptionsConfig, env_spec: Any) -> base.Agent:
  """The options agent for `env_spec` (categorical or tanh-Gaussian intra-option policies).

  Args:
    config: the hyper-parameters.
    env_spec: the env's `EnvSpec`.

  Returns:
    The `base.Agent`: on-policy (rollouts of T = `config.unroll_length`), recurrent
    (`initial_carry(n)`: n × −1, no option yet; the carry is the running option).
  """
  space = base.check_action_space("options", env_spec, (base.CONTINUOUS, base.DISCRETE))
  discrete = space == base.DISCRETE
  obs_size, action_size = int(env_spec.observation_size), int(env_spec.action_size)
  nets, split, (policy_loss, value_loss, value_heads) = build(config, env_spec)
  actor_net, reverse_net, value_net, info_net = nets
  policy_tx = optax.multi_transform(
      {"actor": gradients.adam(config.policy_lr, config.max_grad_norm),
       "reverse": gradients.adam(config.reverse_lr, config.max_grad_norm),
       "info": gradients.adam(config.reverse_lr, config.max_grad_norm)},
      ("actor", "reverse", "info"))
  value_tx = gradients.adam(config.value_lr, config.max_grad_norm)
  policy_step = gradients.make_step(policy_loss, policy_tx, has_aux=True)
  value_step = gradients.make_step(value_loss, value_tx, has_aux=True)
  reverse_in = obs_size + action_size  # s and a (one-hot when discrete)

  def init(key):
    k_actor, k_reverse, k_value = jax.random.split(key, 3)
    actor = actor_net.init(k_actor, jnp.zeros((1, obs_size)))
    reverse = reverse_net.init(k_reverse, jnp.zeros((1, reverse_in)))
    value = value_net.init(k_value, jnp.zeros((1, obs_size)))
    # Its own key (folded, so the other nets start as before the term existed).
    info = info_net.init(jax.random.fold_in(key, 3), jnp.zeros((1, obs_size)))
    return OptionsState(actor=actor, reverse=reverse, value=value,
                        policy_opt=policy_tx.init((actor, reverse, info)),
                        value_opt=value_tx.init(value),
                        normalizer=normalizer_lib.init(obs_size),
                        steps=jnp.zeros((), jnp.int32), info=info)

  def initial_carry(n):
    return jnp.full((n,), -1, jnp.int32)

  def act(params, obs, key, deterministic=False, carry=None):
    """o_t ~ π(·|s_t, o_{t−1}), a_t ~ π_{o_t}(·|s_t); the modes where `deterministic`.

    carry: o_{t−1} [N] (−1: an episode's first step; None: all first steps).
    extras: 'option' o_t, 'prev_option' o_{t−1}, 'log_prob' log π(o_t|·) + log π_{o_t}(a_t|s_t),
    'carry' o_t and, continuous, 'pre_tanh' [N, D].
    """
    n = obs.shape[0]
    prev = initial_carry(n) if carry is None else carry
    heads = split(actor_net.apply(params.actor, normalizer_lib.normalize(params.normalizer, obs)))
    k_option, k_action = jax.random.split(key)
    sampled, log_option_probs = jax.vmap(rlax_inf.sample_option)(
        jax.random.split(k_option, n), jnp.maximum(prev, 0), heads.continue_prob,
        heads.log_selection, prev < 0)
    o = base.select(deterministic, jnp.argmax(log_option_probs, -1).astype(jnp.int32),
                    sampled)
    log_prob_o = jnp.take_along_axis(log_option_probs, o[:, None], axis=-1)[:, 0]
    extras = dict(option=o, prev_option=prev, carry=o)
    if discrete:
      log_p = _take_option(heads.intra, o)
      a = base.select(deterministic, jnp.argmax(log_p, -1),
                      jax.random.categorical(k_action, log_p, axis=-1)).astype(jnp.int32)
      log_pi_a = jnp.take_along_axis(log_p, a[:, None], axis=-1)[:, 0]
    else:
      mean, std = _take_option(heads.intra[0], o), _take_option(heads.intra[1], o)
      u = base.select(deterministic, mean, tanh_normal.sample_pre_tanh(k_action, mean, std))
      a = jnp.tanh(u)
      log_pi_a = tanh_normal.log_prob_pre_tanh(u, mean, std)
      extras["pre_tanh"] = u
    extras["log_prob"] = log_prob_o + log_pi_a
    return a, extras

  observe = normalizer_lib.make_observe(config.normalize_observations)

  def update(state, batch, key):
    """One step on a [B, T] rollout batch: actor and reverse model, then the value."""
    del key  # the losses are deterministic given the batch
    obs = normalizer_lib.normalize(state.normalizer, batch.obs)
    next_obs = normalizer_lib.normalize(state.normalizer, batch.next_obs)
    v_tm1 = value_heads(state.value, obs, batch.extras["prev_option"])
    v_t = value_heads(state.value, next_obs, batch.extras["option"])
    (p_loss, aux), (actor, reverse, info), policy_opt = policy_step(
        (state.actor, state.reverse, state.info), state.policy_opt, obs, batch, v_tm1, v_t)
    (v_loss, v), value, value_opt = value_step(
        state.value, state.value_opt, obs, batch.extras["prev_option"],
        aux.pop("value_targets"))
    new_state = OptionsState(actor=actor, reverse=reverse, value=value, policy_opt=policy_opt,
                             value_opt=value_opt, normalizer=state.normalizer,
                             steps=state.steps + 1, info=info)
    metrics = dict(policy_loss=p_loss, value_loss=v_loss, value_mean=jnp.mean(v), **aux)
    return new_state, metrics

  return base.Agent(init=init, act=act, policy_params=base.actor_params, observe=observe,
                    update=update,
                    needs=base.Needs(base.ON_POLICY, config.unroll_length, space),
                    progress_keys=("switch_rate",), initial_carry=initial_carry)
