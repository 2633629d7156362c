"""Exact control as inference on tabular MDPs: Bellman solves and message passing.

Arrays: `rewards[S, A]`, `transitions[S, A, S']` (rows sum to one), `initial[S]`,
`policy[S, A]`, `log_prior[S, A]` or None (the counting measure, as in values).
Everything is `lax.scan` / `lax.fori_loop` based, jittable and vmappable over a
batch of MDPs. Soft expectations over next states are computed with a max shift
over each row's support, so rewards of ±1e6 and τ down to 1e-6 stay exact, and
τ = 0 gives the hard (max) limit.

The graphical model (Levine, 2018, "Reinforcement Learning and Control as
Probabilistic Inference"): p(τ, O) = p(s_1) Π_t π0(a_t|s_t) P(s_{t+1}|s_t, a_t)
exp(r(s_t, a_t)/τ). Optimistic messages are exact inference in it; variational
messages keep the true dynamics (the maximum-entropy RL objective).
"""

from typing import Optional, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rlax_inf import _checks
from rlax_inf import values

Array = chex.Array
Numeric = chex.Numeric


def _check_mdp(rewards, transitions, initial=None, policy=None, log_prior=None):
  chex.assert_rank(rewards, 2, custom_message="`rewards` must be [S, A]")
  chex.assert_rank(transitions, 3, custom_message="`transitions` must be [S, A, S']")
  chex.assert_type([rewards, transitions], float,
                   custom_message="`rewards` and `transitions` must be floating point")
  num_states, num_actions = rewards.shape
  chex.assert_shape(transitions, (num_states, num_actions, num_states),
                    custom_message="`transitions` must be [S, A, S] for `rewards` [S, A]")
  if initial is not None:
    chex.assert_shape(initial, (num_states,), custom_message="`initial` must be [S]")
    chex.assert_type(initial, float, custom_message="`initial` must be floating point")
  if policy is not None:
    chex.assert_shape(policy, rewards.shape, custom_message="`policy` must be [S, A]")
    chex.assert_type(policy, float, custom_message="`policy` must be floating point")
  if log_prior is not None:
    chex.assert_shape(log_prior, rewards.shape, custom_message="`log_prior` must be [S, A]")
    chex.assert_type(log_prior, float, custom_message="`log_prior` must be floating point")


def validate_mdp(rewards, transitions, initial=None, discount=None, atol=1e-5):
  """Checks a tabular MDP on the host and raises a readable ValueError.

  Checks shapes, finite rewards, non-negative transition probabilities whose
  rows sum to one (within `atol`), a normalised `initial` and 0 ≤ discount ≤ 1.

  Args:
    rewards: [S, A].
    transitions: [S, A, S'].
    initial: optional [S].
    discount: optional scalar.
    atol: tolerance on the row sums.

  Returns:
    None. Raises ValueError naming the offending argument and entry.
  """
  rewards = np.asarray(rewards)
  transitions = np.asarray(transitions)
  if rewards.ndim != 2:
    raise ValueError(f"rewards must be [S, A]; got shape {rewards.shape}.")
  s, a = rewards.shape
  if transitions.shape != (s, a, s):
    raise ValueError(
        f"transitions must be [S, A, S] = {(s, a, s)} for rewards {rewards.shape}; "
        f"got shape {transitions.shape}.")
  if not np.all(np.isfinite(rewards)):
    raise ValueError("rewards must be finite.")
  if np.any(transitions < 0) or not np.all(np.isfinite(transitions)):
    raise ValueError("transitions must be finite and non-negative.")
  sums = transitions.sum(-1)
  bad = np.argwhere(np.abs(sums - 1.0) > atol)
  if bad.size:
    i, j = bad[0]
    raise ValueError(
        f"transitions rows must sum to 1: transitions[{i}, {j}, :] sums to "
        f"{sums[i, j]:.6g} ({len(bad)} bad row(s)).")
  if initial is not None:
    initial = np.asarray(initial)
    if initial.shape != (s,):
      raise ValueError(f"initial must be [S] = ({s},); got shape {initial.shape}.")
    negative = np.flatnonzero(~(initial >= 0))  # NaN too.
    if negative.size:
      i = negative[0]
      raise ValueError(
          f"initial must be a distribution: initial[{i}] = {initial[i]:.6g} is "
          f"{'NaN' if np.isnan(initial[i]) else 'negative'} "
          f"({negative.size} bad entr{'y' if negative.size == 1 else 'ies'}).")
    if abs(initial.sum() - 1.0) > atol:
      raise ValueError(
          f"initial must be a distribution; it sums to {initial.sum():.6g}.")
  if discount is not None and not 0.0 <= float(discount) <= 1.0:
    raise ValueError(f"discount must lie in [0, 1]; got {discount}.")


def _state_values(q: Array, tau: Array, log_prior: Optional[Array]) -> Array:
  """soft_value of every row of q[S, A]."""
  if log_prior is None:
    return jax.vmap(lambda x: values.soft_value(x, tau))(q)
  return jax.vmap(lambda x, lp: values.soft_value(x, tau, lp))(q, log_prior)


def _state_log_policies(q, tau, log_prior):
  if log_prior is None:
    return jax.vmap(lambda x: values.boltzmann_log_policy(x, tau))(q)
  return jax.vmap(lambda x, lp: values.boltzmann_log_policy(x, tau, lp))(q, log_prior)


def _soft_contract(weights: Array, x: Array, tau: Array, axis) -> Array:
  """τ log Σ_k w_k exp(x_k / τ) over `axis`, hard limit max_{w_k > 0} x_k at τ = 0.

  `weights` ≥ 0 and `x` broadcast to a common shape. Shifting by the maximum of
  x over each row's support keeps the sum ≥ min positive weight, so no row of
  a large-valued x underflows to log 0.
  """
  support = weights > 0
  m = jnp.max(jnp.where(support, x, -jnp.inf), axis=axis, keepdims=True)
  m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
  safe_tau = values.safe_temperature(tau)
  # Off the support (weight 0) the exponent is replaced by 0: exp could
  # overflow there and turn 0 · inf into NaN. (Not jnp.minimum(·, 0): its
  # gradient at the tie x = m is halved.)
  z = jnp.where(support, (x - m) / safe_tau, 0.0)
  e = jnp.sum(weights * jnp.exp(z), axis=axis)
  m = jnp.squeeze(m, axis)
  hard = jnp.max(jnp.where(support, x, -jnp.inf), axis=axis)
  soft = m + tau * jnp.log(e)
  return jnp.where(tau > 0, soft, hard)


def _as_tau(temperature, dtype):
  _checks.check_temperature(temperature)
  return jnp.asarray(temperature, dtype)


def policy_evaluation(
    rewards: Array, transitions: Array, policy: Array, discount: Numeric
) -> Array:
  """Exact value of a policy: V = (I − γ P_π)⁻¹ r_π (a linear solve).

  Args:
    rewards: [S, A].
    transitions: [S, A, S'].
    policy: π(a|s) [S, A].
    discount: γ < 1.

  Returns:
    V [S].
  """
  _check_mdp(rewards, transitions, policy=policy)
  r_pi = jnp.sum(jnp.where(policy > 0, policy * rewards, 0.0), axis=-1)
  p_pi = jnp.einsum("sa,sat->st", policy, transitions)
  eye = jnp.eye(rewards.shape[0], dtype=rewards.dtype)
  return jnp.linalg.solve(eye - discount * p_pi, r_pi)


def soft_value_iteration(
    rewards: Array,
    transitions: Array,
    discount: Numeric,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    num_iterations: int = 1000,
) -> Tuple[Array, Array]:
  """Soft (variational) value iteration for the discounted regularised MDP.

    Q = r + γ P V,   V(s) = soft_value(Q(s, ·), τ, log π0(·|s)),

  iterated `num_iterations` times from V = 0 (a γ-contraction). At τ = 0 this is
  value iteration.

  Args:
    rewards: [S, A].
    transitions: [S, A, S'].
    discount: γ.
    temperature: τ ≥ 0.
    log_prior: [S, A] or None (counting measure).
    num_iterations: number of backups (static).

  Returns:
    (Q [S, A], V [S]) with V = soft_value(Q).
  """
  _check_mdp(rewards, transitions, log_prior=log_prior)
  tau = _as_tau(temperature, rewards.dtype)

  def backup(v):
    q = rewards + discount * jnp.einsum("sat,t->sa", transitions, v)
    return q, _state_values(q, tau, log_prior)

  v0 = jnp.zeros(rewards.shape[0], rewards.dtype)
  v = jax.lax.fori_loop(0, num_iterations - 1, lambda _, v: backup(v)[1], v0)
  return backup(v)


def value_iteration(
    rewards: Array, transitions: Array, discount: Numeric, num_iterations: int = 1000
) -> Tuple[Array, Array]:
  """Value iteration: Q = r + γ P V, V = max_a Q (soft value iteration at τ = 0).

  Returns:
    (Q [S, A], V [S]).
  """
  return soft_value_iteration(rewards, transitions, discount, 0.0, None, num_iterations)


def backward_messages(
    rewards: Array,
    transitions: Array,
    horizon: int,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    optimistic: bool = False,
) -> Tuple[Array, Array]:
  """Finite-horizon, undiscounted backward messages in value units.

    Q[T−1] = r
    Q[t]   = r + E_{s'~P} V[t+1]                (variational)
    Q[t]   = r + τ log E_{s'~P} exp(V[t+1]/τ)   (optimistic: exact inference)
    V[t]   = soft_value(Q[t], τ, log π0).

  Optimistic messages are τ log β of the graphical model with
  p(O|s, a) = exp(r/τ); they never fall below the variational ones (Jensen).

  Args:
    rewards: [S, A].
    transitions: [S, A, S'].
    horizon: T ≥ 1 (static).
    temperature: τ ≥ 0.
    log_prior: [S, A] or None (counting measure).
    optimistic: exact inference (True) or the variational backup (False).

  Returns:
    (Q [T, S, A], V [T, S]).
  """
  _check_mdp(rewards, transitions, log_prior=log_prior)
  if horizon < 1:
    raise ValueError(f"`horizon` must be >= 1, got {horizon}.")
  tau = _as_tau(temperature, rewards.dtype)

  def step(v_next, _):
    if optimistic:
      cont = _soft_contract(transitions, v_next[None, None, :], tau, axis=-1)
    else:
      cont = jnp.einsum("sat,t->sa", transitions, v_next)
    q = rewards + cont
    v = _state_values(q, tau, log_prior)
    return v, (q, v)

  v_last = _state_values(rewards, tau, log_prior)
  _, (qs, vs) = jax.lax.scan(step, v_last, None, length=horizon - 1, reverse=True)
  qs = jnp.concatenate([qs, rewards[None]], axis=0)
  vs = jnp.concatenate([vs, v_last[None]], axis=0)
  return qs, vs


def _scaled_log(p: Array, tau: Array) -> Array:
  """τ log p, with the τ = 0 limit (0 on the support, −inf off it)."""
  on = p > 0
  log_p = jnp.log(jnp.where(on, p, 1.0))
  return jnp.where(on, jnp.where(tau > 0, tau * log_p, 0.0), -jnp.inf)


def _prior_weights(transitions, log_prior):
  """π0(a|s) P(s'|s, a) [S, A, S'] (P alone for the counting measure)."""
  if log_prior is None:
    return transitions
  return jnp.exp(log_prior)[:, :, None] * transitions


def _scaled_forward(rewards, transitions, initial, horizon, tau, log_prior):
  """τ log α_t(s), α_t(s) = p(s_t = s, O_{1:t−1}); [T, S]."""
  num_states = rewards.shape[0]
  # [S', S·A]: each next state's incoming weights are contiguous, so the
  # reduction over (s, a) runs along the minor axis. Transposed once, not per step.
  weights = _prior_weights(transitions, log_prior).reshape(-1, num_states).T

  def step(alpha, _):
    x = (alpha[:, None] + rewards).reshape(1, -1)
    nxt = _soft_contract(weights, x, tau, axis=-1)
    return nxt, alpha

  alpha0 = _scaled_log(initial, tau)
  _, alphas = jax.lax.scan(step, alpha0, None, length=horizon)
  return alphas


def forward_messages(
    rewards: Array,
    transitions: Array,
    initial: Array,
    horizon: int,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
) -> Array:
  """Forward messages log α_t(s) = log p(s_t = s, O_{1:t−1}) of the graphical model.

    log α_0 = log p(s_1);
    log α_{t+1}(s') = log Σ_{s,a} α_t(s) π0(a|s) exp(r(s,a)/τ) P(s'|s,a).

  Requires τ > 0 (the messages diverge at τ = 0; `state_action_marginals`
  gives the hard limit of their normalised form).

  Args:
    rewards: [S, A].
    transitions: [S, A, S'].
    initial: p(s_1) [S].
    horizon: T (static).
    temperature: τ > 0.
    log_prior: [S, A] or None (counting measure).

  Returns:
    log α [T, S].
  """
  _check_mdp(rewards, transitions, initial=initial, log_prior=log_prior)
  tau = _as_tau(temperature, rewards.dtype)
  scaled = _scaled_forward(rewards, transitions, initial, horizon, tau, log_prior)
  return scaled / tau


def log_partition(
    rewards: Array,
    transitions: Array,
    initial: Array,
    horizon: int,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
) -> Array:
  """log p(O_{1:T}) = log Σ_τ p(s_1) Π_t π0(a_t|s_t) P(s_{t+1}|s_t,a_t) exp(Σ_t r/τ).

  Computed as logsumexp_s (log p(s_1) + V_opt[0](s)/τ) from optimistic backward
  messages. Diverges at τ = 0 (returns ±inf there, by the sign of the best
  return).

  Args:
    rewards: [S, A].
    transitions: [S, A, S'].
    initial: p(s_1) [S].
    horizon: T (static).
    temperature: τ ≥ 0.
    log_prior: [S, A] or None (counting measure).

  Returns:
    The scalar log partition function.
  """
  _check_mdp(rewards, transitions, initial=initial, log_prior=log_prior)
  tau = _as_tau(temperature, rewards.dtype)
  _, v = backward_messages(rewards, transitions, horizon, tau, log_prior, optimistic=True)
  scaled = _soft_contract(initial, v[0], tau, axis=-1)
  safe_tau = values.safe_temperature(tau)
  hard = jnp.where(scaled > 0, jnp.inf, jnp.where(scaled < 0, -jnp.inf, 0.0))
  return jnp.where(tau > 0, scaled / safe_tau, hard)


def state_action_marginals(
    rewards: Array,
    transitions: Array,
    initial: Array,
    horizon: int,
    temperature: Numeric = 1.0,
    log_prior: Optional[Array] = None,
    optimistic: bool = True,
) -> Array:
  """State-action marginals of the optimal trajectory distribution, mu[T, S, A].

  optimistic=True: the exact posterior p(s_t, a_t | O_{1:T}) ∝
  α_t(s) π0(a|s) exp(Q_t(s, a)/τ) (forward × optimistic backward messages).
  optimistic=False: the marginals of the trajectories that the variational
  optimum policy π_t ∝ π0 exp(Q_t/τ) generates under the true dynamics.

  At τ = 0 the variational marginals are those of the greedy policy (ties split
  evenly); the posterior ones put equal mass on every maximising (s, a) at each
  t (the support of the τ → 0 limit; its weights may differ where several
  optimal trajectories tie).

  Args:
    rewards: [S, A].
    transitions: [S, A, S'].
    initial: p(s_1) [S].
    horizon: T (static).
    temperature: τ ≥ 0.
    log_prior: [S, A] or None (counting measure).
    optimistic: posterior (True) or variational-policy (False) marginals.

  Returns:
    mu [T, S, A]; each mu[t] sums to one.
  """
  _check_mdp(rewards, transitions, initial=initial, log_prior=log_prior)
  tau = _as_tau(temperature, rewards.dtype)
  qs, _ = backward_messages(rewards, transitions, horizon, tau, log_prior, optimistic)
  num_states, num_actions = rewards.shape

  if optimistic:
    alphas = _scaled_forward(rewards, transitions, initial, horizon, tau, log_prior)
    joint = (alphas[:, :, None] + qs).reshape(horizon, -1)
    flat_prior = None if log_prior is None else log_prior.reshape(-1)

    def posterior(x):
      mask = x > -jnp.inf
      return jnp.exp(values.boltzmann_log_policy(x, tau, flat_prior, mask))

    return jax.vmap(posterior)(joint).reshape(horizon, num_states, num_actions)

  def step(d, q):
    pi = jnp.exp(_state_log_policies(q, tau, log_prior))
    mu = d[:, None] * pi
    return jnp.einsum("sa,sat->t", mu, transitions), mu

  _, mus = jax.lax.scan(step, initial, qs)
  return mus
