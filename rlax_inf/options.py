"""Options as auxiliary variables: option transitions and the exact likelihood.

An option o_t selects the low-level policy π_o(a|s). At each step the previous
option continues with probability c(s_t, o_{t−1}), else a new one is drawn from
the option policy q(o|s_t). Summing the options out by the forward algorithm
gives the exact action likelihood of the hierarchical policy, the quantity the
augmented lower bounds of the options-as-inference view bound from below.
"""

import chex
import jax
import jax.numpy as jnp

Array = chex.Array


def _safe_log(x: Array) -> Array:
  """log x with log 0 = −inf and a finite (zero) gradient there."""
  pos = x > 0
  return jnp.where(pos, jnp.log(jnp.where(pos, x, 1.0)), -jnp.inf)


def _logaddexp(a: Array, b: Array) -> Array:
  """log(exp a + exp b) with a zero (not NaN) gradient where both are −inf."""
  both = (a == -jnp.inf) & (b == -jnp.inf)
  out = jnp.logaddexp(jnp.where(both, 0.0, a), jnp.where(both, 0.0, b))
  return jnp.where(both, -jnp.inf, out)


def _logsumexp0(x: Array) -> Array:
  """logsumexp over axis 0 with a zero (not NaN) gradient for all −inf columns."""
  empty = jnp.all(x == -jnp.inf, axis=0)
  out = jax.nn.logsumexp(jnp.where(empty[None], 0.0, x), axis=0)
  return jnp.where(empty, -jnp.inf, out)


def option_transition_log_probs(
    o_tm1: Array, continue_prob_t: Array, log_option_policy_t: Array
) -> Array:
  """log π(o_t | s_t, o_{t−1}) for every o_t.

    π(o_t | s_t, o_{t−1}) = c · 1[o_t = o_{t−1}] + (1 − c) q(o_t | s_t),
    c = continue_prob_t[o_{t−1}].

  Args:
    o_tm1: previous option (int scalar).
    continue_prob_t: c(s_t, o) for every option [O], in [0, 1].
    log_option_policy_t: log q(o | s_t) [O], normalised.

  Returns:
    Normalised log-probabilities [O].
  """
  chex.assert_rank([o_tm1, continue_prob_t, log_option_policy_t], [0, 1, 1])
  chex.assert_type([o_tm1, continue_prob_t, log_option_policy_t], [int, float, float])
  chex.assert_equal_shape([continue_prob_t, log_option_policy_t])
  c = continue_prob_t[o_tm1]
  num_options = log_option_policy_t.shape[0]
  stay = jnp.where(jnp.arange(num_options) == o_tm1, _safe_log(c), -jnp.inf)
  switch = _safe_log(1.0 - c) + log_option_policy_t
  return _logaddexp(stay, switch)


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
  chex.assert_rank([log_pi_a_t, log_initial_option, continue_prob_t, log_option_policy_t],
                   [2, 1, 2, 2])
  chex.assert_type([log_pi_a_t, log_initial_option, continue_prob_t, log_option_policy_t],
                   float)
  chex.assert_equal_shape([log_pi_a_t, continue_prob_t, log_option_policy_t])
  chex.assert_equal_shape([log_pi_a_t[0], log_initial_option])
  num_options = log_initial_option.shape[0]
  options = jnp.arange(num_options)

  def step(alpha, xs):
    log_pi_a, c, log_q = xs
    # [O_prev, O] transition matrix in log space.
    log_trans = jax.vmap(option_transition_log_probs, (0, None, None))(options, c, log_q)
    alpha = _logsumexp0(alpha[:, None] + log_trans) + log_pi_a
    return alpha, None

  alpha0 = log_initial_option + log_pi_a_t[0]
  alpha, _ = jax.lax.scan(
      step, alpha0, (log_pi_a_t[1:], continue_prob_t[1:], log_option_policy_t[1:]))
  return jax.nn.logsumexp(alpha)
