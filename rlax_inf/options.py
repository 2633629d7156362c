"""Options as auxiliary variables: sampling, exact inference and bounds.

An option o_t selects the low-level policy π_o(a|s) (Sutton, Precup & Singh,
"Between MDPs and semi-MDPs", 1999). At each step the previous option continues
with probability c(s_t, o_{t−1}) (one minus the termination β of Bacon, Harb &
Precup's option-critic, 2017), else a new one is drawn from the option policy
q(o|s_t):

    π(o_t | s_t, o_{t−1}) = c(s_t, o_{t−1}) 1[o_t = o_{t−1}] + (1 − c(s_t, o_{t−1})) q(o_t | s_t).

Bartunov ("RL through the lenses of variational inference") treats the options
as auxiliary variables of the policy: the hierarchical policy's likelihood of
the actions, p(a_{1:T} | s_{1:T}) = Σ_{o_{1:T}} p(o_{1:T}, a_{1:T} | s_{1:T}), is a
hidden Markov model in the options. This module has

  * sampling of options and actions (`sample_option`, `sample_option_and_action`,
    `sample_options`) and of option chains (`sample_option_chain`);
  * exact inference: the forward algorithm (`options_log_likelihood`), the
    joint (`options_joint_log_prob`), forward–backward smoothing
    (`option_posterior`) and the exact posterior as a Markov chain
    (`option_posterior_chain`), all in log space with `lax.scan`;
  * auxiliary-variable bounds with a reverse model q̃(o_t | o_{<t}, s, a): the
    likelihood bound (`options_elbo`, K samples through `rlax_inf.iwae_bound`)
    and the per-step augmented RL bound (`options_augmented_rewards`);
  * their gradient estimators (`options_bound_surrogate`, `options_iwae_surrogate`).

Conventions: one trajectory per call, time-major [T, ...]; users vmap. In the
trajectory functions the first option comes from `log_initial_option` and row 0
of `continue_prob_t`, `log_option_policy_t` and `log_transition_t` is unused.
−inf log-probabilities are allowed everywhere; outputs and gradients are NaN-free.
The gradient with respect to a continuation probability that is exactly 0 or 1
leaves out the paths through the zero-probability branch (log space cannot
see them); with c = sigmoid(logit) the factor c(1 − c) makes that moot.
"""

from typing import NamedTuple, Optional, Tuple

import chex
import distrax
import jax
import jax.numpy as jnp

from rlax_inf import _checks
from rlax_inf import distributions
from rlax_inf import estimators
from rlax_inf import values

Array = chex.Array
Numeric = chex.Numeric
PRNGKey = chex.PRNGKey


# ------------------------------------------------------------------ helpers


def _safe_log(x: Array) -> Array:
  """log x with log 0 = −inf and a finite (zero) gradient there."""
  pos = x > 0
  return jnp.where(pos, jnp.log(jnp.where(pos, x, 1.0)), -jnp.inf)


def _logaddexp(a: Array, b: Array) -> Array:
  """log(exp a + exp b) with a zero (not NaN) gradient where both are −inf."""
  both = (a == -jnp.inf) & (b == -jnp.inf)
  out = jnp.logaddexp(jnp.where(both, 0.0, a), jnp.where(both, 0.0, b))
  return jnp.where(both, -jnp.inf, out)


def _lse(x: Array, axis: int) -> Array:
  """logsumexp over `axis`: −inf, with a zero (not NaN) gradient, for all −inf slices."""
  empty = jnp.all(x == -jnp.inf, axis=axis, keepdims=True)
  out = jax.nn.logsumexp(jnp.where(empty, 0.0, x), axis=axis, keepdims=True)
  return jnp.squeeze(jnp.where(empty, -jnp.inf, out), axis)


def _check_trajectory(log_pi_a_t, log_initial_option, continue_prob_t, log_option_policy_t):
  _checks.check_args(
      ("log_pi_a_t", log_pi_a_t, 2, float), ("log_initial_option", log_initial_option, 1, float),
      ("continue_prob_t", continue_prob_t, 2, float),
      ("log_option_policy_t", log_option_policy_t, 2, float))
  chex.assert_equal_shape([log_pi_a_t, continue_prob_t, log_option_policy_t],
                          custom_message="`log_pi_a_t`, `continue_prob_t` and "
                          "`log_option_policy_t` must all be [T, O]")
  chex.assert_equal_shape([log_pi_a_t[0], log_initial_option],
                          custom_message="`log_initial_option` must be [O]")


def _check_options(o_t, num_steps):
  chex.assert_rank(o_t, 1, custom_message="`o_t` must be [T]")
  chex.assert_type(o_t, int, custom_message="`o_t` must be integer")
  chex.assert_shape(o_t, (num_steps,), custom_message="`o_t` must be [T]")


def _check_chain(log_initial, log_transition_t):
  _checks.check_args(
      ("log_initial", log_initial, 1, float), ("log_transition_t", log_transition_t, 3, float))
  num_options = log_initial.shape[0]
  chex.assert_shape(log_transition_t, (None, num_options, num_options),
                    custom_message="`log_transition_t` must be [T, O, O] for `log_initial` [O]")


def _log_transition_matrices(continue_prob_t: Array, log_option_policy_t: Array) -> Array:
  """[T, O_prev, O] log π(o_t = j | s_t, o_{t−1} = i) for every step."""
  options = jnp.arange(log_option_policy_t.shape[-1])
  per_step = jax.vmap(option_transition_log_probs, (0, None, None))
  return jax.vmap(per_step, (None, 0, 0))(options, continue_prob_t, log_option_policy_t)


def _forward(log_pi_a_t, log_initial, log_trans_t):
  """Forward messages α_t(o) = log p(a_{1:t}, o_t = o) [T, O]."""

  def step(alpha, xs):
    log_pi_a, log_trans = xs
    alpha = _lse(alpha[:, None] + log_trans, 0) + log_pi_a
    return alpha, alpha

  alpha0 = log_initial + log_pi_a_t[0]
  _, alphas = jax.lax.scan(step, alpha0, (log_pi_a_t[1:], log_trans_t[1:]))
  return jnp.concatenate([alpha0[None], alphas], axis=0)


def _backward(log_pi_a_t, log_trans_t):
  """Backward messages β_t(o) = log p(a_{t+1:T} | o_t = o) [T, O]."""

  def step(beta, xs):
    log_pi_a, log_trans = xs  # of step t + 1
    beta = _lse(log_trans + (log_pi_a + beta)[None, :], 1)
    return beta, beta

  beta_last = jnp.zeros_like(log_pi_a_t[0])
  _, betas = jax.lax.scan(step, beta_last, (log_pi_a_t[1:], log_trans_t[1:]), reverse=True)
  return jnp.concatenate([betas, beta_last[None]], axis=0)


def _chain_log_probs(o_t, log_initial, log_trans_t):
  steps = jnp.arange(1, o_t.shape[0])
  rest = log_trans_t[steps, o_t[:-1], o_t[1:]]
  return jnp.concatenate([log_initial[o_t[0]][None], rest])


def _sample_chain(key, log_initial, log_trans_t):
  keys = jax.random.split(key, log_trans_t.shape[0])
  o0 = jax.random.categorical(keys[0], log_initial)

  def step(o_tm1, xs):
    k, log_trans = xs
    o = jax.random.categorical(k, log_trans[o_tm1])
    return o, o

  _, rest = jax.lax.scan(step, o0, (keys[1:], log_trans_t[1:]))
  o_t = jnp.concatenate([o0[None], rest]).astype(jnp.int32)
  return jax.lax.stop_gradient(o_t), _chain_log_probs(o_t, log_initial, log_trans_t)


# ----------------------------------------------------------- transitions


def option_transition_log_probs(
    o_tm1: Array, continue_prob_t: Array, log_option_policy_t: Array
) -> Array:
  """log π(o_t | s_t, o_{t−1}) for every o_t.

    π(o_t | s_t, o_{t−1}) = c · 1[o_t = o_{t−1}] + (1 − c) q(o_t | s_t),
    c = continue_prob_t[o_{t−1}]

  (call-and-return execution of options, Sutton, Precup & Singh, 1999, with
  the termination probability β = 1 − c of the option-critic).

  Args:
    o_tm1: previous option (int scalar).
    continue_prob_t: c(s_t, o) for every option [O], in [0, 1].
    log_option_policy_t: log q(o | s_t) [O], normalised.

  Returns:
    Normalised log-probabilities [O].
  """
  _checks.check_args(
      ("o_tm1", o_tm1, 0, int), ("continue_prob_t", continue_prob_t, 1, float),
      ("log_option_policy_t", log_option_policy_t, 1, float))
  _checks.check_same_shape(
      ("continue_prob_t", continue_prob_t), ("log_option_policy_t", log_option_policy_t))
  c = continue_prob_t[o_tm1]
  num_options = log_option_policy_t.shape[0]
  stay = jnp.where(jnp.arange(num_options) == o_tm1, _safe_log(c), -jnp.inf)
  switch = _safe_log(1.0 - c) + log_option_policy_t
  return _logaddexp(stay, switch)


# -------------------------------------------------------------- sampling


class OptionStep(NamedTuple):
  """One step of a policy over options (`sample_option_and_action`)."""
  option: Array  # o_t, int [].
  action: Array  # a_t ~ π_{o_t}(·|s_t), reparameterised where the policy is.
  log_option_probs: Array  # log π(· | s_t, o_{t−1}) [O].
  log_action_probs: Array  # log π_o(a_t | s_t) under every option o [O].


def sample_option(
    key: PRNGKey,
    o_tm1: Array,
    continue_prob_t: Array,
    log_option_policy_t: Array,
    new_episode: Array = False,
) -> Tuple[Array, Array]:
  """Draws o_t ~ π(· | s_t, o_{t−1}): continue o_{t−1} w.p. c, else o_t ~ q(·|s_t).

    π(o_t | s_t, o_{t−1}) = c(s_t, o_{t−1}) 1[o_t = o_{t−1}] + (1 − c(s_t, o_{t−1})) q(o_t | s_t)

  (Sutton, Precup & Singh, 1999). At the first step of an episode
  (`new_episode`) there is no option to continue and o_t ~ q(·|s_t).

  Args:
    key: PRNG key.
    o_tm1: previous option (int scalar; ignored when `new_episode`).
    continue_prob_t: c(s_t, o) for every option [O].
    log_option_policy_t: log q(o | s_t) [O].
    new_episode: bool scalar (may be traced), True at an episode's first step.

  Returns:
    (o_t, log π(· | s_t, o_{t−1}) [O]); the log-probs carry gradients to c and q.
  """
  _checks.check_args(
      ("o_tm1", o_tm1, 0, int), ("continue_prob_t", continue_prob_t, 1, float),
      ("log_option_policy_t", log_option_policy_t, 1, float))
  _checks.check_same_shape(
      ("continue_prob_t", continue_prob_t), ("log_option_policy_t", log_option_policy_t))
  c = jnp.where(jnp.asarray(new_episode), jnp.zeros_like(continue_prob_t), continue_prob_t)
  log_probs = option_transition_log_probs(o_tm1, c, log_option_policy_t)
  o_t = jax.random.categorical(key, jax.lax.stop_gradient(log_probs)).astype(jnp.int32)
  return o_t, log_probs


def sample_option_and_action(
    key: PRNGKey,
    o_tm1: Array,
    continue_prob_t: Array,
    log_option_policy_t: Array,
    intra_option_policy: distrax.Distribution,
    new_episode: Array = False,
) -> OptionStep:
  """Draws o_t ~ π(· | s_t, o_{t−1}), then a_t ~ π_{o_t}(· | s_t).

    p(o_t, a_t | s_t, o_{t−1}) = π(o_t | s_t, o_{t−1}) π_{o_t}(a_t | s_t).

  The intra-option policies are one distrax distribution with batch shape [O]:
  `distrax.Categorical(logits[O, A])` for discrete actions,
  `distrax.MultivariateNormalDiag(loc[O, D], scale[O, D])` or
  `rlax_inf.TanhGaussian(loc[O, D], scale[O, D])` for continuous ones. Every
  option's action is drawn and o_t's is kept, so the action is reparameterised
  wherever the distribution's sampler is (tanh-Gaussian log-probs come from the
  pre-tanh sample). `log_action_probs` is the row log_pi_a_t[t] that
  `options_log_likelihood` and `option_posterior` take.

  Args:
    key: PRNG key.
    o_tm1: previous option (int scalar; ignored when `new_episode`).
    continue_prob_t: c(s_t, o) [O].
    log_option_policy_t: log q(o | s_t) [O].
    intra_option_policy: π_o(·|s_t) for every option, batch shape [O].
    new_episode: bool scalar, True at an episode's first step.

  Returns:
    An `OptionStep(option, action, log_option_probs, log_action_probs)`.

  Examples:
    >>> import distrax, jax, jax.numpy as jnp, rlax_inf
    >>> policies = distrax.Categorical(logits=jnp.array([[5.0, -5.0], [-5.0, 5.0]]))
    >>> step = rlax_inf.sample_option_and_action(
    ...     jax.random.PRNGKey(0), jnp.int32(1), jnp.array([1.0, 1.0]),
    ...     jnp.log(jnp.array([0.5, 0.5])), policies)
    >>> int(step.option), step.log_action_probs.shape
    (1, (2,))
  """
  num_options = continue_prob_t.shape[-1]
  if tuple(intra_option_policy.batch_shape) != (num_options,):
    raise ValueError("`intra_option_policy` must have batch shape [O] = "
                     f"({num_options},), got {tuple(intra_option_policy.batch_shape)}")
  option_key, action_key = jax.random.split(key)
  o_t, log_option_probs = sample_option(
      option_key, o_tm1, continue_prob_t, log_option_policy_t, new_episode)
  if isinstance(intra_option_policy, distributions.TanhGaussian):
    u_all = intra_option_policy.pre_tanh.sample(seed=action_key)
    u = u_all[o_t]
    action = jnp.tanh(u)
    log_action_probs = intra_option_policy.log_prob_from_pre_tanh(
        jnp.broadcast_to(u, u_all.shape))
  else:
    a_all = intra_option_policy.sample(seed=action_key)
    action = a_all[o_t]
    log_action_probs = intra_option_policy.log_prob(jnp.broadcast_to(action, a_all.shape))
  return OptionStep(o_t, action, log_option_probs, log_action_probs)


def sample_option_chain(
    key: PRNGKey, log_initial: Array, log_transition_t: Array
) -> Tuple[Array, Array]:
  """Draws o_{1:T} from a Markov chain over options, with its per-step log-probs.

    o_1 ~ p(o_1),   o_t ~ p(o_t | o_{t−1}) = exp(log_transition_t[t, o_{t−1}, o_t]).

  The form of a reverse model q̃(o_t | o_{t−1}, s_{1:T}, a_{1:T}): the logits may
  be any function of the trajectory's features (e.g. of a bidirectional RNN),
  and `option_posterior_chain` gives the exact posterior in this form. Rows are
  normalised here (log-softmax), so logits can be passed as they are.

  Args:
    key: PRNG key.
    log_initial: log p(o_1) [O] (logits).
    log_transition_t: log p(o_t = j | o_{t−1} = i) at [t, i, j], [T, O, O]
      (logits; row 0 unused).

  Returns:
    (o_t [T] int32, log p(o_t | o_{t−1}) [T]); the log-probs carry gradients to
    the logits (the score of a score-function estimator).
  """
  _check_chain(log_initial, log_transition_t)
  return _sample_chain(key, jax.nn.log_softmax(log_initial),
                       jax.nn.log_softmax(log_transition_t, axis=-1))


def option_chain_log_probs(o_t: Array, log_initial: Array, log_transition_t: Array) -> Array:
  """Per-step log-probs of o_{1:T} under a Markov chain over options.

    log q̃(o_1), log q̃(o_t | o_{t−1}) = log_softmax(log_transition_t[t, o_{t−1}])[o_t]  (t > 1).

  Args:
    o_t: options [T] (int).
    log_initial: log q̃(o_1) [O] (logits).
    log_transition_t: [T, O, O] logits as in `sample_option_chain` (row 0 unused).

  Returns:
    The per-step log-probs [T] (the `log_q_o_t` of `options_elbo`).
  """
  _check_chain(log_initial, log_transition_t)
  _check_options(o_t, log_transition_t.shape[0])
  return _chain_log_probs(o_t, jax.nn.log_softmax(log_initial),
                          jax.nn.log_softmax(log_transition_t, axis=-1))


def sample_options(
    key: PRNGKey,
    log_initial_option: Array,
    continue_prob_t: Array,
    log_option_policy_t: Array,
) -> Tuple[Array, Array]:
  """Draws o_{1:T} ~ p(o_{1:T} | s_{1:T}) from the policy over options along given states.

    o_1 ~ p(o_1),   o_t ~ π(o_t | s_t, o_{t−1}) = c 1[o_t = o_{t−1}] + (1 − c) q(o_t | s_t).

  The prior over options, before any action is seen (the proposal that ignores
  the actions; the posterior is `sample_option_chain(key, *option_posterior_chain(...))`).

  Args:
    key: PRNG key.
    log_initial_option: log p(o_1) [O].
    continue_prob_t: c(s_t, o) [T, O] (row 0 unused).
    log_option_policy_t: log q(o|s_t) [T, O] (row 0 unused).

  Returns:
    (o_t [T] int32, log π(o_t | s_t, o_{t−1}) [T], row 0 = log p(o_1)).

  Examples:
    >>> import jax, jax.numpy as jnp, rlax_inf
    >>> o, log_p = rlax_inf.sample_options(
    ...     jax.random.PRNGKey(0), jnp.log(jnp.array([1.0, 0.0])),
    ...     jnp.ones((4, 2)), jnp.log(jnp.full((4, 2), 0.5)))
    >>> o.tolist(), float(log_p.sum())
    ([0, 0, 0, 0], 0.0)
  """
  _checks.check_args(
      ("log_initial_option", log_initial_option, 1, float),
      ("continue_prob_t", continue_prob_t, 2, float),
      ("log_option_policy_t", log_option_policy_t, 2, float))
  _checks.check_same_shape(
      ("continue_prob_t", continue_prob_t), ("log_option_policy_t", log_option_policy_t))
  _checks.check_same_shape(
      ("continue_prob_t[0]", continue_prob_t[0]), ("log_initial_option", log_initial_option))
  return _sample_chain(key, log_initial_option,
                       _log_transition_matrices(continue_prob_t, log_option_policy_t))


# ------------------------------------------------------- exact inference


def options_log_likelihood(
    log_pi_a_t: Array,
    log_initial_option: Array,
    continue_prob_t: Array,
    log_option_policy_t: Array,
) -> Array:
  """Exact log p(a_{1:T} | s_{1:T}) of a policy over options (forward algorithm).

    α_1(o) = log p(o_1 = o) + log π_o(a_1|s_1)
    α_t(o) = logsumexp_{o'} [α_{t−1}(o') + log π(o | s_t, o')] + log π_o(a_t|s_t)
    log p(a_{1:T} | s_{1:T}) = logsumexp_o α_T(o).

  Args:
    log_pi_a_t: log π_o(a_t|s_t) of the taken actions under every option [T, O].
    log_initial_option: log p(o_1) [O] (the first step's option distribution).
    continue_prob_t: c(s_t, o) [T, O] (row 0 is unused).
    log_option_policy_t: log q(o|s_t) [T, O] (row 0 is unused).

  Returns:
    The scalar log-likelihood.
  """
  _check_trajectory(log_pi_a_t, log_initial_option, continue_prob_t, log_option_policy_t)
  log_trans = _log_transition_matrices(continue_prob_t, log_option_policy_t)
  alphas = _forward(log_pi_a_t, log_initial_option, log_trans)
  return _lse(alphas[-1], 0)


def options_joint_log_prob(
    log_pi_a_t: Array,
    log_initial_option: Array,
    continue_prob_t: Array,
    log_option_policy_t: Array,
    o_t: Array,
) -> Array:
  """log p(a_{1:T}, o_{1:T} | s_{1:T}) for one option sequence.

    log p(o_1) + log π_{o_1}(a_1|s_1) + Σ_{t>1} [log π(o_t | s_t, o_{t−1}) + log π_{o_t}(a_t|s_t)].

  Its logsumexp over all O^T sequences is `options_log_likelihood`.

  Args:
    log_pi_a_t: log π_o(a_t|s_t) [T, O].
    log_initial_option: log p(o_1) [O].
    continue_prob_t: c(s_t, o) [T, O] (row 0 unused).
    log_option_policy_t: log q(o|s_t) [T, O] (row 0 unused).
    o_t: the options [T] (int).

  Returns:
    The scalar joint log-probability (−inf for an impossible sequence).

  Examples:
    >>> import itertools, jax, jax.numpy as jnp, rlax_inf
    >>> log_pi_a = jnp.log(jnp.array([[0.9, 0.2], [0.5, 0.5], [0.1, 0.8]]))
    >>> args = (log_pi_a, jnp.log(jnp.array([0.5, 0.5])), jnp.full((3, 2), 0.7),
    ...         jnp.log(jnp.full((3, 2), 0.5)))
    >>> seqs = jnp.array(list(itertools.product(range(2), repeat=3)))
    >>> joint = jax.vmap(rlax_inf.options_joint_log_prob, (None,) * 4 + (0,))(*args, seqs)
    >>> bool(jnp.isclose(jax.nn.logsumexp(joint), rlax_inf.options_log_likelihood(*args)))
    True
  """
  _check_trajectory(log_pi_a_t, log_initial_option, continue_prob_t, log_option_policy_t)
  _check_options(o_t, log_pi_a_t.shape[0])
  log_trans = jax.vmap(option_transition_log_probs)(
      o_t[:-1], continue_prob_t[1:], log_option_policy_t[1:])
  steps = jnp.arange(1, o_t.shape[0])
  log_o = jnp.concatenate([log_initial_option[o_t[0]][None], log_trans[steps - 1, o_t[1:]]])
  log_a = log_pi_a_t[jnp.arange(o_t.shape[0]), o_t]
  return jnp.sum(log_o) + jnp.sum(log_a)


def _smoothing(log_pi_a_t, log_initial_option, continue_prob_t, log_option_policy_t):
  log_trans = _log_transition_matrices(continue_prob_t, log_option_policy_t)
  alphas = _forward(log_pi_a_t, log_initial_option, log_trans)
  betas = _backward(log_pi_a_t, log_trans)
  log_z = _lse(alphas[-1], 0)
  return log_trans, alphas, betas, log_z


def option_posterior(
    log_pi_a_t: Array,
    log_initial_option: Array,
    continue_prob_t: Array,
    log_option_policy_t: Array,
) -> Tuple[Array, Array]:
  """Exact posterior over options given the actions, by forward–backward in log space.

    α_t as in `options_log_likelihood`,   β_T = 0,
    β_t(i) = logsumexp_j [log π(o_{t+1} = j | s_{t+1}, o_t = i)
                          + log π_j(a_{t+1}|s_{t+1}) + β_{t+1}(j)],
    log p(o_t = i | a_{1:T}) = α_t(i) + β_t(i) − log Z,
    log p(o_t = i, o_{t+1} = j | a_{1:T})
        = α_t(i) + log π(j | s_{t+1}, i) + log π_j(a_{t+1}|s_{t+1}) + β_{t+1}(j) − log Z,

  log Z = `options_log_likelihood` (Baum–Welch smoothing; the options as
  auxiliary variables of the policy, Bartunov). Both passes are `lax.scan`s.
  When the actions are impossible (log Z = −inf) every output is −inf.

  Args:
    log_pi_a_t: log π_o(a_t|s_t) [T, O].
    log_initial_option: log p(o_1) [O].
    continue_prob_t: c(s_t, o) [T, O] (row 0 unused).
    log_option_policy_t: log q(o|s_t) [T, O] (row 0 unused).

  Returns:
    (log_marginals [T, O], log_pairwise [T−1, O, O]) with
    log_pairwise[t, i, j] = log p(o_t = i, o_{t+1} = j | a_{1:T}, s_{1:T}).

  Examples:
    >>> import jax, jax.numpy as jnp, rlax_inf
    >>> log_pi_a = jnp.log(jnp.array([[0.9, 0.1], [0.5, 0.5], [0.5, 0.5]]))
    >>> marg, pair = rlax_inf.option_posterior(
    ...     log_pi_a, jnp.log(jnp.array([0.5, 0.5])), jnp.ones((3, 2)),
    ...     jnp.log(jnp.full((3, 2), 0.5)))
    >>> [[round(float(p), 3) for p in row] for row in jnp.exp(marg)]  # no switches: a_1 tells
    [[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]]
    >>> pair.shape
    (2, 2, 2)
  """
  _check_trajectory(log_pi_a_t, log_initial_option, continue_prob_t, log_option_policy_t)
  log_trans, alphas, betas, log_z = _smoothing(
      log_pi_a_t, log_initial_option, continue_prob_t, log_option_policy_t)
  ok = log_z > -jnp.inf
  log_z = jnp.where(ok, log_z, 0.0)
  log_marginals = jnp.where(ok, alphas + betas - log_z, -jnp.inf)
  log_pairwise = (alphas[:-1, :, None] + log_trans[1:]
                  + (log_pi_a_t[1:] + betas[1:])[:, None, :] - log_z)
  log_pairwise = jnp.where(ok, log_pairwise, -jnp.inf)
  return log_marginals, log_pairwise


def option_posterior_chain(
    log_pi_a_t: Array,
    log_initial_option: Array,
    continue_prob_t: Array,
    log_option_policy_t: Array,
) -> Tuple[Array, Array]:
  """The exact posterior p(o_{1:T} | a_{1:T}, s_{1:T}) as a Markov chain (the ideal reverse model).

    p(o_1 = i | a) = exp(α_1(i) + β_1(i) − log Z),
    p(o_{t+1} = j | o_t = i, a) = π(j | s_{t+1}, i) π_j(a_{t+1}|s_{t+1}) exp(β_{t+1}(j) − β_t(i)),

  with the messages of `option_posterior`. The posterior of a hidden Markov
  model is Markov, so a reverse model q̃(o_t | o_{t−1}, s, a) of this form is
  exact: with it `options_elbo` equals `options_log_likelihood` for every
  sample. Rows i the posterior never visits (β_t(i) = −inf) and, when the
  actions are impossible, the whole chain fall back to the prior π(o_t | s_t, o_{t−1}).

  Args:
    log_pi_a_t: log π_o(a_t|s_t) [T, O].
    log_initial_option: log p(o_1) [O].
    continue_prob_t: c(s_t, o) [T, O] (row 0 unused).
    log_option_policy_t: log q(o|s_t) [T, O] (row 0 unused).

  Returns:
    (log_initial [O], log_transition_t [T, O, O]), normalised, in the form
    `sample_option_chain` and `option_chain_log_probs` take (row 0 of
    log_transition_t repeats log_initial).

  Examples:
    >>> import jax, jax.numpy as jnp, rlax_inf
    >>> args = (jnp.log(jnp.array([[0.9, 0.2], [0.3, 0.6]])), jnp.log(jnp.array([0.5, 0.5])),
    ...         jnp.full((2, 2), 0.5), jnp.log(jnp.full((2, 2), 0.5)))
    >>> o, log_q = rlax_inf.sample_option_chain(
    ...     jax.random.PRNGKey(0), *rlax_inf.option_posterior_chain(*args))
    >>> bool(jnp.isclose(rlax_inf.options_elbo(*args, o, log_q),
    ...                  rlax_inf.options_log_likelihood(*args)))
    True
  """
  _check_trajectory(log_pi_a_t, log_initial_option, continue_prob_t, log_option_policy_t)
  log_trans, alphas, betas, log_z = _smoothing(
      log_pi_a_t, log_initial_option, continue_prob_t, log_option_policy_t)
  ok = log_z > -jnp.inf
  log_initial = jnp.where(ok, alphas[0] + betas[0] - jnp.where(ok, log_z, 0.0),
                          log_initial_option)
  visited = (betas[:-1] > -jnp.inf)[:, :, None]  # [T−1, O, 1]
  beta_from = jnp.where(visited, betas[:-1, :, None], 0.0)
  cond = log_trans[1:] + (log_pi_a_t[1:] + betas[1:])[:, None, :] - beta_from
  cond = jnp.where(visited & ok, cond, log_trans[1:])
  log_transition_t = jnp.concatenate(
      [jnp.broadcast_to(log_initial, cond.shape[1:])[None], cond], axis=0)
  return log_initial, log_transition_t


# ---------------------------------------------------------------- bounds


def options_elbo(
    log_pi_a_t: Array,
    log_initial_option: Array,
    continue_prob_t: Array,
    log_option_policy_t: Array,
    o_t: Array,
    log_q_o_t: Array,
) -> Array:
  """One sample of the auxiliary-variable bound on log p(a_{1:T} | s_{1:T}).

    log w = log p(a_{1:T}, o_{1:T} | s_{1:T}) − Σ_t log q̃(o_t | o_{<t}, s, a),   o ~ q̃,
    E_q̃[log w] = log p(a | s) − KL(q̃(o) ‖ p(o | a, s)) ≤ log p(a | s),

  with equality, for every sample, when q̃ is the exact posterior
  (`option_posterior_chain`). K such log-weights give the tighter
  importance-weighted bound `rlax_inf.iwae_bound` (Burda et al., 2016),
  non-decreasing in K. The options as auxiliary variables: Bartunov; Agakov &
  Barber, "An auxiliary variational method", 2004.

  Args:
    log_pi_a_t: log π_o(a_t|s_t) [T, O].
    log_initial_option: log p(o_1) [O].
    continue_prob_t: c(s_t, o) [T, O] (row 0 unused).
    log_option_policy_t: log q(o|s_t) [T, O] (row 0 unused).
    o_t: options [T] (int) drawn from the reverse model q̃.
    log_q_o_t: their per-step log-probs log q̃(o_t | o_{<t}, s, a) [T].

  Returns:
    The scalar log-weight log w.

  Examples:
    >>> import jax, jax.numpy as jnp, rlax_inf
    >>> args = (jnp.log(jnp.array([[0.9, 0.2], [0.3, 0.6]])), jnp.log(jnp.array([0.5, 0.5])),
    ...         jnp.full((2, 2), 0.5), jnp.log(jnp.full((2, 2), 0.5)))
    >>> rev_init, rev_trans = jnp.zeros(2), jnp.zeros((2, 2, 2))  # uniform reverse model
    >>> o, log_q = jax.vmap(rlax_inf.sample_option_chain, (0, None, None))(
    ...     jax.random.split(jax.random.PRNGKey(0), 64), rev_init, rev_trans)
    >>> log_w = jax.vmap(rlax_inf.options_elbo, (None,) * 4 + (0, 0))(*args, o, log_q)
    >>> exact = rlax_inf.options_log_likelihood(*args)
    >>> bool(rlax_inf.elbo(log_w) < rlax_inf.iwae_bound(log_w) <= exact)
    True
  """
  chex.assert_rank(log_q_o_t, 1, custom_message="`log_q_o_t` must be [T]")
  chex.assert_type(log_q_o_t, float, custom_message="`log_q_o_t` must be floating point")
  chex.assert_shape(log_q_o_t, (log_pi_a_t.shape[0],),
                    custom_message="`log_q_o_t` must be [T] like `log_pi_a_t` [T, O]")
  joint = options_joint_log_prob(
      log_pi_a_t, log_initial_option, continue_prob_t, log_option_policy_t, o_t)
  return joint - jnp.sum(log_q_o_t)


def options_augmented_rewards(
    r_t: Array,
    kl_t: Array,
    o_t: Array,
    log_option_probs_t: Array,
    log_q_o_t: Optional[Array] = None,
    temperature: Numeric = 1.0,
) -> Array:
  """Per-step terms of the augmented lower bound on the regularised return of a policy over options.

  With a reverse model q̃ (Bartunov; the auxiliary bound on the entropy of a
  hierarchical policy of Agakov & Barber, 2004, and Ranganath et al., 2016):

    b_t = r_t − τ [KL(π_{o_t}(·|s_t) ‖ π0(·|s_t)) + log π(o_t | s_t, o_{t−1})
                   − log q̃(o_t | o_{<t}, s, a)],

  that is τ times α r_t − KL − log π(o_t|·) + log q̃ with α = 1/τ. For (o, a)
  drawn from the policy over options,

    E Σ_t b_t = J − τ E_a KL(p(o | a, s) ‖ q̃(o | a, s)) ≤ J,
    J = E Σ_t r_t − τ E [log p(a_{1:T} | s_{1:T}) − Σ_t log π0(a_t|s_t)],

  the return regularised by the KL of the marginal action policy (options
  summed out) from the prior; tight when q̃ is `option_posterior_chain`.
  Without a reverse model (`log_q_o_t=None`):

    b_t = r_t − τ [KL(π_{o_t}(·|s_t) ‖ π0(·|s_t)) − H(π(· | s_t, o_{t−1}))],

  whose expected sum is J + τ E H(o_{1:T} | a_{1:T}, s) ≥ J: the entropy of options
  and actions together, the objective of the flat MDP on (s, o).

  Args:
    r_t: rewards [T].
    kl_t: KL(π_{o_t}(·|s_t) ‖ π0(·|s_t)) of the options taken [T], e.g. from
      `rlax_inf.kl_divergence` (−H(π_{o_t}) for the counting measure), or its
      one-sample estimate log π_{o_t}(a_t|s_t) − log π0(a_t|s_t).
    o_t: options taken [T] (int).
    log_option_probs_t: log π(· | s_t, o_{t−1}) [T, O] (row 0: log p(o_1)),
      e.g. `OptionStep.log_option_probs` or `option_transition_log_probs`.
    log_q_o_t: log q̃(o_t | o_{<t}, s, a) [T] of the options taken, or None.
    temperature: τ ≥ 0; at τ = 0 the terms are r_t.

  Returns:
    The per-step bound [T] (sum it, or use it as rewards in returns).

  Examples:
    >>> import jax.numpy as jnp, rlax_inf
    >>> log_o = jnp.log(jnp.array([[0.5, 0.5], [0.9, 0.1]]))
    >>> b = rlax_inf.options_augmented_rewards(
    ...     jnp.array([1.0, 1.0]), jnp.zeros(2), jnp.array([0, 0]), log_o,
    ...     log_q_o_t=jnp.log(jnp.array([0.5, 1.0])), temperature=0.5)
    >>> [round(float(x), 4) for x in b]  # 1 − 0.5 (log 0.9 − log 1)
    [1.0, 1.0527]
  """
  _checks.check_args(
      ("r_t", r_t, 1, float), ("kl_t", kl_t, 1, float), ("o_t", o_t, 1, int),
      ("log_option_probs_t", log_option_probs_t, 2, float))
  chex.assert_equal_shape([r_t, kl_t, o_t, log_option_probs_t[:, 0]],
                          custom_message="`r_t`, `kl_t`, `o_t` must be [T] and "
                          "`log_option_probs_t` [T, O]")
  if log_q_o_t is None:
    option_term = -jax.vmap(values.entropy)(log_option_probs_t)
  else:
    chex.assert_type(log_q_o_t, float, custom_message="`log_q_o_t` must be floating point")
    chex.assert_equal_shape([r_t, log_q_o_t], custom_message="`log_q_o_t` must be [T]")
    log_o = log_option_probs_t[jnp.arange(o_t.shape[0]), o_t]
    option_term = log_o - log_q_o_t
  _checks.check_temperature(temperature)
  tau = jnp.asarray(temperature, r_t.dtype)
  reg = jnp.where(tau > 0, kl_t + option_term, 0.0)
  return r_t - jnp.where(tau > 0, tau * reg, 0.0)


# ---------------------------------------------------- gradient estimators


def options_bound_surrogate(
    bound_t: Array,
    log_prob_o_t: Array,
    log_prob_a_t: Optional[Array] = None,
    baseline: Optional[Array] = None,
) -> Array:
  """Surrogate for the gradient of the augmented bound from K trajectories of the option policy.

    B(θ, φ) = E_{(o, a) ~ p_θ} F,   F = Σ_t b_t (`options_augmented_rewards`),
    ∇B ≈ (1/K) Σ_k [∇F_k + (F_k − b̄_k) ∇ log p_θ(o^k, a^k | s)],
    log p_θ(o, a | s) = Σ_t log π(o_t | s_t, o_{t−1}) + log π_{o_t}(a_t|s_t),

  b̄ the leave-one-out baseline (Kool et al., 2019) unless given. ∇F_k is the
  direct (pathwise) part: through KL(π_{o_t} ‖ π0) and log π(o_t|·) to the
  intra-option, selection and continuation parameters, through log q̃ to the
  reverse model's (whose samples do not depend on it, so it has no score
  term), and through r_t where that is differentiable. The options are
  discrete and always enter by their score (`rlax_inf.score_function_surrogate`,
  Williams, 1992). Actions enter by their score when `log_prob_a_t` is given;
  pass None for reparameterised actions, whose gradient then flows through
  r_t (e.g. a critic), KL and log q̃, which is unbiased when the states do not
  depend on the actions or are differentiable in them.

  Args:
    bound_t: the per-step bound b_t of K trajectories [K, T], gradients attached.
    log_prob_o_t: log π(o_t | s_t, o_{t−1}) of the sampled options [K, T]
      (row 0 log p(o_1)).
    log_prob_a_t: log π_{o_t}(a_t | s_t) of the sampled actions [K, T], or None.
    baseline: b̄ [] or [K] (independent of sample k), or None for leave-one-out.

  Returns:
    The scalar surrogate; its value is mean_k F_k and its gradient the
    estimate of ∇B. Ascend it (or minimise its negative).

  Examples:
    >>> import jax, jax.numpy as jnp, rlax_inf
    >>> def surrogate(logits, o):  # a one-step bandit over two options, r = [1, 0]
    ...   log_o = jnp.broadcast_to(jax.nn.log_softmax(logits), (4, 1, 2))
    ...   b = jax.vmap(rlax_inf.options_augmented_rewards, (0, 0, 0, 0, None, None))(
    ...       jnp.where(o == 0, 1.0, 0.0), jnp.zeros((4, 1)), o, log_o, None, 0.0)
    ...   return rlax_inf.options_bound_surrogate(b, jnp.take_along_axis(log_o[:, 0], o, 1))
    >>> g = jax.grad(surrogate)(jnp.zeros(2), jnp.array([[0], [1], [0], [0]]))
    >>> bool(g[0] > 0 > g[1])
    True
  """
  _checks.check_args(("bound_t", bound_t, 2, float), ("log_prob_o_t", log_prob_o_t, 2, float))
  chex.assert_equal_shape([bound_t, log_prob_o_t],
                          custom_message="`bound_t` and `log_prob_o_t` must both be [K, T]")
  log_prob = jnp.sum(log_prob_o_t, axis=1)
  if log_prob_a_t is not None:
    chex.assert_type(log_prob_a_t, float, custom_message="`log_prob_a_t` must be floating point")
    chex.assert_equal_shape([bound_t, log_prob_a_t],
                            custom_message="`log_prob_a_t` must be [K, T] like `bound_t`")
    log_prob = log_prob + jnp.sum(log_prob_a_t, axis=1)
  total = jnp.sum(bound_t, axis=1)
  finite = jnp.isfinite(total)
  direct = jnp.where(finite, total - jax.lax.stop_gradient(total), 0.0)
  return estimators.score_function_surrogate(log_prob, total, baseline) + jnp.mean(direct)


def options_iwae_surrogate(log_w: Array, log_q: Array) -> Array:
  """Surrogate for the gradient of the K-sample bound with options drawn from a reverse model.

    L = log (1/K) Σ_k w_k,   log w_k = `options_elbo`(o^k, ·),   o^k ~ q̃_φ,
    ∇L ≈ Σ_k w̄_k ∇ log w_k + Σ_k (L − L_{−k}) ∇ log q̃_φ(o^k),
    L_{−k} = log (1/K) [Σ_{j≠k} w_j + exp((1/(K−1)) Σ_{j≠k} log w_j)],

  VIMCO's per-sample leave-one-out signal (Mnih & Rezende, "Variational
  inference for Monte Carlo objectives", 2016); L_{−k} = 0 for K = 1 (plain
  REINFORCE for the ELBO). The first sum, the gradient of
  `rlax_inf.iwae_bound`, is exact for the parameters of the policy over options
  (option selection, continuation, intra-option policies), which enter log w
  only; the reverse model's parameters φ get both sums.

  Args:
    log_w: log-weights of K option sequences [K], gradients attached.
    log_q: Σ_t log q̃(o_t^k | o_{<t}^k, s, a) of the same sequences [K] (the score).

  Returns:
    The scalar surrogate; its value is `iwae_bound(log_w)`. Ascend it.
  """
  _checks.check_args(("log_w", log_w, 1, float), ("log_q", log_q, 1, float))
  chex.assert_equal_shape([log_w, log_q], custom_message="`log_w` and `log_q` must both be [K]")
  k = log_w.shape[0]
  # The value of `rlax_inf.iwae_bound`, with a NaN-free gradient when every log w is −inf.
  bound = _lse(log_w, 0) - jnp.log(jnp.asarray(k, log_w.dtype))
  lw = jax.lax.stop_gradient(log_w)
  full = _lse(lw, 0) - jnp.log(jnp.asarray(k, lw.dtype))
  if k == 1:
    signal = jnp.broadcast_to(full, (1,))
  else:
    finite = jnp.isfinite(lw)
    n_bad_others = jnp.sum(~finite) - (~finite)
    total = jnp.sum(jnp.where(finite, lw, 0.0))
    mean_others = jnp.where(n_bad_others > 0, -jnp.inf,
                            (total - jnp.where(finite, lw, 0.0)) / (k - 1))
    replaced = jnp.where(jnp.eye(k, dtype=bool), mean_others[:, None], lw[None, :])
    signal = full - (_lse(replaced, 1) - jnp.log(jnp.asarray(k, lw.dtype)))
  ok = jnp.isfinite(signal) & (log_q > -jnp.inf)
  signal = jnp.where(ok, signal, 0.0)
  safe_q = jnp.where(log_q > -jnp.inf, log_q, 0.0)
  return bound + jnp.sum(signal * (safe_q - jax.lax.stop_gradient(safe_q)))
