"""VIREL: the temperature of the Boltzmann target set by the critic's error.

Fellows, Mahajan, Rudner, Whiteson, "VIREL: A Variational Inference Framework
for Reinforcement Learning", 2019. The actor's E-step is a reverse KL to
π_ω ∝ exp(Q/ε_ω) with ε_ω the critic's mean squared Bellman error; the critic's
M-step is policy evaluation. Named `virel_ops` so that it is not confused with
the agent, `rlax_inf.agents.virel`.
"""

import chex
import jax
import jax.numpy as jnp

from rlax_inf import _checks
from rlax_inf import divergences
from rlax_inf._checks import check_samples as _check_samples
from rlax_inf._checks import check_temperature as _check_temperature

Array = chex.Array
Numeric = chex.Numeric


def virel_temperature(td_error: Array, scale: Numeric = 1.0) -> Array:
  """VIREL's adaptive temperature: the critic's mean squared Bellman error.

    ε_ω = c · mean_i δ_i²   (stop-gradient),

  over a batch of TD errors δ_i = r + γ Q(s', a') − Q(s, a) of the critic; it
  shrinks to 0 as the critic becomes exact, so the Boltzmann target
  π_ω ∝ exp(Q/ε_ω) becomes greedy (Fellows, Mahajan, Rudner, Whiteson,
  "VIREL: A Variational Inference Framework for Reinforcement Learning", 2019).

  Args:
    td_error: TD errors of a batch [B].
    scale: c > 0.

  Returns:
    ε_ω [].
  """
  chex.assert_rank(td_error, 1, custom_message="`td_error` must be [B]")
  chex.assert_type(td_error, float, custom_message="`td_error` must be floating point")
  return jax.lax.stop_gradient(scale * jnp.mean(jnp.square(td_error)))


def virel_actor_loss(log_pi: Array, q: Array, bellman_error: Numeric) -> Array:
  """VIREL's E-step: the reverse KL from π to π_ω ∝ exp(Q/ε_ω), times ε_ω.

    L = mean_k [ε_ω log π(a_k|s) − Q(s, a_k)],   ε_ω stop-gradient,

  i.e. `reverse_kl_loss` at τ = ε_ω (`virel_temperature`); exact for
  categorical policies with `categorical_reverse_kl_loss`. At ε_ω = 0 it is
  the greedy loss −mean Q (Fellows et al., 2019).

  Args:
    log_pi: log π(a_k|s) of N samples [N].
    q: Q(s, a_k) [N].
    bellman_error: ε_ω ≥ 0 [].

  Returns:
    The scalar loss.
  """
  _check_samples(log_pi, q, None)
  _check_temperature(bellman_error, "bellman_error")
  return divergences.reverse_kl_loss(log_pi, q, jax.lax.stop_gradient(bellman_error))


def virel_critic_loss(q_tm1: Array, r_t: Array, discount_t: Array, q_t: Array) -> Array:
  """VIREL's M-step: policy evaluation of the current actor, ½ δ².

    δ = r_t + γ_t Q(s_t, a_t) − Q(s_{t−1}, a_{t−1}),   a_t ~ π,  target stop-gradient,

  an unbiased semi-gradient of the mean squared Bellman error ε_ω under π (no
  entropy term: VIREL's critic evaluates, the temperature lives in the actor).

  Args:
    q_tm1: Q(s_{t−1}, a_{t−1}) [].
    r_t: reward [].
    discount_t: γ_t [].
    q_t: Q(s_t, a_t) [] with a_t ~ π(·|s_t) (or E_π Q(s_t, ·)).

  Returns:
    The scalar loss.
  """
  _checks.check_args(
      ("q_tm1", q_tm1, 0, float), ("r_t", r_t, 0, float), ("discount_t", discount_t, 0, float),
      ("q_t", q_t, 0, float))
  target = jax.lax.stop_gradient(r_t + discount_t * q_t)
  return 0.5 * jnp.square(target - q_tm1)
