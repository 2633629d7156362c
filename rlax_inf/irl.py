"""Inverse RL as inference on tabular MDPs: the same messages, run backwards.

Given demonstrations, infer the reward under which they are soft-optimal
(Ziebart et al., 2008, "Maximum Entropy Inverse Reinforcement Learning";
Ziebart, 2010, "Modeling Purposeful Adaptive Behavior with the Principle of
Maximum Causal Entropy"; Levine, 2018, section 6).

Demonstrations enter as `demo_counts[T, S, A]`: the average over episodes of
1[s_t = s, a_t = a] (each `demo_counts[t]` sums to one). Infinite data from a
soft-optimal expert is `state_action_marginals(r*, ..., optimistic=not causal)`;
finite data comes from `rlax_inf.envs.demonstrations.tabular_counts`.

Two likelihoods of the same graphical model p(τ, O) = p(s_1) Π_t π0(a_t|s_t)
P(s_{t+1}|s_t, a_t) exp(r(s_t, a_t)/τ):

* maximum entropy (causal=False): the trajectory posterior p(τ | O) itself,
  whose marginals come from the optimistic messages. Under stochastic dynamics
  it models an expert who also chooses the next state (the optimism bias);
* maximum causal entropy (causal=True): the soft-optimal policy
  π_t ∝ π0 exp(Q_t/τ) of the variational backward messages, acting under the
  true dynamics. Equal to the first on deterministic dynamics.

Both are convex in the reward table (and in ψ for linear rewards ψᵀf) and
their gradient is feature matching: (expected counts − expert counts)/τ.
"""

from typing import Any, Callable, NamedTuple, Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import optax

from rlax_inf import messages
from rlax_inf import values

Array = chex.Array
Numeric = chex.Numeric


def _check_irl(rewards, transitions, initial, horizon, demo_counts, log_prior):
  messages._check_mdp(rewards, transitions, initial=initial, log_prior=log_prior)  # pylint: disable=protected-access
  if horizon < 1:
    raise ValueError(f"`horizon` must be >= 1, got {horizon}.")
  chex.assert_rank(demo_counts, 3, custom_message="`demo_counts` must be [T, S, A]")
  chex.assert_shape(demo_counts, (horizon,) + rewards.shape,
                    custom_message="`demo_counts` must be [horizon, S, A] for `rewards` [S, A]")
  chex.assert_type(demo_counts, float, custom_message="`demo_counts` must be floating point")


def _weighted_log_sum(weights: Array, log_p: Array) -> Array:
  """Σ w · log p with 0 · (−inf) = 0 (and a NaN-free gradient there)."""
  on = weights > 0
  return jnp.sum(jnp.where(on, weights * jnp.where(on, log_p, 0.0), 0.0))


def _hard_log_partition(rewards, transitions, initial, horizon, log_prior):
  """The τ → 0 asymptotics of log p(O): log Z = R*/τ + log W* + o(1).

  R* is the best return over trajectories of positive prior probability and
  W* = Σ_{optimal τ} p(s_1) Π π0 P their total prior weight: a max-plus
  backward pass that carries the log-weight of the maximisers along (ties by
  exact equality, as the τ = 0 messages).
  """
  lp = jnp.zeros_like(rewards) if log_prior is None else log_prior
  valid_a = lp > -jnp.inf
  on_p = transitions > 0
  log_p = jnp.where(on_p, jnp.log(jnp.where(on_p, transitions, 1.0)), -jnp.inf)
  safe_lp = jnp.where(valid_a, lp, -jnp.inf)

  def best(x, log_w, support, log_weights, axis):
    x = jnp.where(support, x, -jnp.inf)
    m = jnp.max(x, axis=axis)
    tie = support & (x == jnp.expand_dims(m, axis))
    total = jax.nn.logsumexp(jnp.where(tie, log_weights + log_w, -jnp.inf), axis=axis)
    return m, total

  v, log_w = best(rewards, 0.0, valid_a, safe_lp, -1)

  def step(carry, _):
    v, log_w = carry
    cont, log_wq = best(v[None, None, :], log_w[None, None, :], on_p, log_p, -1)
    return best(rewards + cont, log_wq, valid_a, safe_lp, -1), None

  (v, log_w), _ = jax.lax.scan(step, (v, log_w), None, length=horizon - 1)
  on_i = initial > 0
  log_i = jnp.where(on_i, jnp.log(jnp.where(on_i, initial, 1.0)), -jnp.inf)
  return best(v, log_w, on_i, log_i, -1)


def maxent_irl_loss(
    rewards: Array,
    transitions: Array,
    initial: Array,
    horizon: int,
    demo_counts: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    causal: bool = True,
) -> Array:
  """Negative log-likelihood of demonstrations under the soft-optimal model of `rewards`.

    causal=True  (Ziebart 2010):       L = − Σ_{t,s,a} D_t(s,a) log π_t(a|s),
                                       π_t ∝ π0 exp(Q_t/τ), Q from
                                       backward_messages(optimistic=False);
    causal=False (Ziebart et al. 2008): L = log Z − Σ_{t,s,a} D_t(s,a) r(s,a)/τ,
                                       Z = p(O_{1:T}) (`log_partition`);

  up to terms that do not depend on `rewards`. Both are convex in `rewards`,
  with gradient (Σ_t μ_t − Σ_t D_t)/τ (`maxent_irl_gradient`); for causal=True
  this holds when D is consistent with `initial` and `transitions` (e.g. the
  expected counts of any policy), and on finite samples the loss is the exact
  likelihood of the sampled actions.

  τ = 0 gives the hard limit, never NaN: causal, −Σ D log π_greedy (ties split
  evenly, +inf where a demonstrated action is not greedy); maximum entropy,
  +inf if the demonstrations' return Σ D·r falls below the best return R*
  (by more than rounding), else log W*, the log prior weight of the optimal
  trajectories (log Z = R*/τ + log W* + o(1)).

  Args:
    rewards: r(s, a) [S, A] (what the gradient is taken with respect to).
    transitions: P(s'|s, a) [S, A, S'].
    initial: p(s_1) [S].
    horizon: T ≥ 1 (static).
    demo_counts: D[T, S, A], the demonstrations' average of 1[s_t = s, a_t = a].
    temperature: τ ≥ 0.
    log_prior: log π0(a|s) [S, A] or None (counting measure).
    causal: maximum causal entropy (True) or maximum entropy (False); static.

  Returns:
    The scalar loss.

  Examples:
    >>> import jax, jax.numpy as jnp, rlax_inf
    >>> p = jnp.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    >>> r_true = jnp.array([[0.0, 1.0], [0.0, 2.0]])
    >>> init = jnp.array([1.0, 0.0])
    >>> demo = rlax_inf.state_action_marginals(r_true, p, init, 3, optimistic=False)
    >>> g = jax.grad(rlax_inf.maxent_irl_loss)(jnp.zeros((2, 2)), p, init, 3, demo)
    >>> bool(jnp.allclose(g, rlax_inf.maxent_irl_gradient(jnp.zeros((2, 2)), p, init, 3, demo), atol=1e-6))
    True
  """
  _check_irl(rewards, transitions, initial, horizon, demo_counts, log_prior)
  tau = messages._as_tau(temperature, rewards.dtype)  # pylint: disable=protected-access
  if causal:
    q, _ = messages.backward_messages(rewards, transitions, horizon, tau, log_prior,
                                      optimistic=False)
    log_pi = jax.vmap(lambda q_t: messages._state_log_policies(q_t, tau, log_prior))(q)  # pylint: disable=protected-access
    return -_weighted_log_sum(demo_counts, log_pi)

  demo_return = jnp.sum(demo_counts * rewards)

  def soft():
    log_z = messages.log_partition(rewards, transitions, initial, horizon, tau, log_prior)
    return log_z - demo_return / values.safe_temperature(tau)

  def hard():
    best, log_w = _hard_log_partition(rewards, transitions, initial, horizon, log_prior)
    gap = jax.lax.stop_gradient(best - demo_return)
    scale = jax.lax.stop_gradient(jnp.max(jnp.abs(jnp.where(demo_counts > 0, rewards, 0.0))))
    rounding = 16 * jnp.finfo(rewards.dtype).eps * horizon * scale
    return jnp.where(gap > rounding, jnp.inf, jnp.where(gap < -rounding, -jnp.inf, log_w))

  return values.select_by_temperature(temperature, soft, hard)


def maxent_irl_gradient(
    rewards: Array,
    transitions: Array,
    initial: Array,
    horizon: int,
    demo_counts: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    causal: bool = True,
) -> Array:
  """The feature-matching gradient of `maxent_irl_loss` with respect to `rewards`.

    ∇_r L = (Σ_t μ_t − Σ_t D_t) / τ,   μ = state_action_marginals(optimistic=not causal).

  Exact for causal=False. For causal=True it is the gradient of the dual
  (1/τ)(E_{s_1}[V_1(s_1)] − Σ D·r), which equals the loss's own gradient
  whenever D is consistent with `initial` and `transitions`. The expert counts
  are matched exactly where it vanishes. At τ = 0 the limit ±inf where the
  hard marginals and the counts differ, 0 where they agree.

  Args:
    rewards, transitions, initial, horizon, demo_counts, temperature,
    log_prior, causal: as `maxent_irl_loss`.

  Returns:
    The gradient [S, A].
  """
  _check_irl(rewards, transitions, initial, horizon, demo_counts, log_prior)
  tau = messages._as_tau(temperature, rewards.dtype)  # pylint: disable=protected-access
  mu = messages.state_action_marginals(rewards, transitions, initial, horizon, tau, log_prior,
                                       optimistic=not causal)
  diff = jnp.sum(mu, axis=0) - jnp.sum(demo_counts, axis=0)
  return values.select_by_temperature(
      temperature,
      lambda: diff / values.safe_temperature(tau),
      lambda: jnp.where(diff > 0, jnp.inf, jnp.where(diff < 0, -jnp.inf, 0.0)))


def linear_rewards(weights: Array, features: Array) -> Array:
  """Linear rewards r(s, a) = ψᵀ f(s, a).

  With them ∇_ψ L = Σ_{s,a} f(s, a) ∇_r L(s, a): the gradient of
  `maxent_irl_loss` is the gap between expected and demonstrated feature
  counts, and the loss stays convex in ψ.

  Args:
    weights: ψ [F].
    features: f [S, A, F].

  Returns:
    rewards [S, A].
  """
  chex.assert_rank(weights, 1, custom_message="`weights` must be [F]")
  chex.assert_rank(features, 3, custom_message="`features` must be [S, A, F]")
  chex.assert_type([weights, features], float,
                   custom_message="`weights` and `features` must be floating point")
  chex.assert_equal_shape_suffix([weights, features], 1,
                                 custom_message="`features` [S, A, F] must match `weights` [F]")
  return jnp.einsum("saf,f->sa", features, weights)


class IRLFit(NamedTuple):
  """Result of `maxent_irl_fit`: final parameters, optimiser state, loss per step."""
  params: Any
  opt_state: Any
  loss: Array


def maxent_irl_fit(
    reward_fn: Callable[[Any], Any],
    params: Any,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    transitions: Array,
    initial: Array,
    horizon: int,
    demo_counts: Array,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    causal: bool = True,
    opt_state: Any = None,
) -> IRLFit:
  """Fits a reward by minimising `maxent_irl_loss` with an optax optimiser.

    ψ ← ψ + optimizer(∇_ψ maxent_irl_loss(reward_fn(ψ), ...))   for num_steps steps,

  one `lax.scan`, jittable (with `reward_fn`, `optimizer`, `num_steps`,
  `horizon` and `causal` static). Any differentiable `reward_fn`: a table
  (`lambda r: r`), `linear_rewards`, a network. Returning a pair
  (rewards, log_prior) from `reward_fn` learns the log-prior over actions as
  well (pass a normalised one, e.g. `jax.nn.log_softmax(logits)`, and leave
  `log_prior` None). Optimisers that need the objective (`optax.lbfgs`) get
  it through optax's extra arguments. Pass a returned `opt_state` back in to
  continue a run.

  Args:
    reward_fn: params -> rewards [S, A] or (rewards [S, A], log_prior [S, A]).
    params: initial parameters (a pytree).
    optimizer: an optax `GradientTransformation`.
    num_steps: number of optimiser steps (static).
    transitions, initial, horizon, demo_counts, temperature, log_prior,
    causal: as `maxent_irl_loss`.
    opt_state: optimiser state to continue from (default: `optimizer.init`).

  Returns:
    IRLFit(params, opt_state, loss [num_steps]), `loss[k]` before step k.
  """
  optimizer = optax.with_extra_args_support(optimizer)

  def objective(p):
    out = reward_fn(p)
    if isinstance(out, tuple):
      if log_prior is not None:
        raise ValueError("`reward_fn` returns a log-prior: pass `log_prior=None`.")
      rewards, lp = out
    else:
      rewards, lp = out, log_prior
    return maxent_irl_loss(rewards, transitions, initial, horizon, demo_counts, temperature,
                           lp, causal)

  if opt_state is None:
    opt_state = optimizer.init(params)

  def step(carry, _):
    p, s = carry
    loss, grad = jax.value_and_grad(objective)(p)
    updates, s = optimizer.update(grad, s, p, value=loss, grad=grad, value_fn=objective)
    return (optax.apply_updates(p, updates), s), loss

  (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), None, length=num_steps)
  return IRLFit(params, opt_state, losses)


def soft_optimal_log_policy(
    rewards: Array,
    transitions: Array,
    horizon: int,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    causal: bool = True,
) -> Array:
  """The time-varying policy a reward induces under either likelihood, log π_t(a|s) [T, S, A].

    causal=True:  π_t ∝ π0 exp(Q_t/τ), Q from backward_messages(optimistic=False);
    causal=False: p(a_t|s_t, O) ∝ π0 exp(Q_t/τ), Q from backward_messages(optimistic=True).

  What an IRL fit is judged by: the reward is identified only up to
  transformations that leave this policy unchanged. At τ = 0 the greedy policy
  (ties split evenly).

  Args:
    rewards, transitions, horizon, temperature, log_prior, causal: as `maxent_irl_loss`.

  Returns:
    log π [T, S, A].
  """
  messages._check_mdp(rewards, transitions, log_prior=log_prior)  # pylint: disable=protected-access
  tau = messages._as_tau(temperature, rewards.dtype)  # pylint: disable=protected-access
  q, _ = messages.backward_messages(rewards, transitions, horizon, tau, log_prior,
                                    optimistic=not causal)
  return jax.vmap(lambda q_t: messages._state_log_policies(q_t, tau, log_prior))(q)  # pylint: disable=protected-access
