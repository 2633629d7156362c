"""Rank, dtype and shape errors name the argument, not its position ("input 1")."""

import jax.numpy as jnp
import pytest

import rlax_inf


@pytest.mark.parametrize("call, name", [
    (lambda: rlax_inf.kl(jnp.zeros(3), jnp.zeros((3, 2))), "`log_q` must have rank 1"),
    (lambda: rlax_inf.kl(jnp.zeros(3), jnp.zeros(3, jnp.int32)), "`log_q` must be float"),
    (lambda: rlax_inf.virel_critic_loss(0.0, jnp.zeros(2), 0.9, 1.0), "`r_t` must have rank 0"),
    (lambda: rlax_inf.trajectory_log_weights(jnp.zeros(4), jnp.zeros(4), jnp.zeros(5)),
     "`log_prior_t` has shape (5,) but `r_t` has shape (4,)"),
])
def test_errors_name_the_argument(call, name):
  with pytest.raises(AssertionError) as err:
    call()
  assert name in str(err.value)
  assert "input " not in str(err.value)
