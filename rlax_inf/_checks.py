"""Argument checks shared by the loss modules: shapes, ranks and temperatures.

Every check runs at trace time (chex, like rlax) and names the argument.
"""

import chex

Array = chex.Array


def check_samples(log_pi, q, log_prior, name="log_pi", rank=1):
  """N sampled actions of one state: `log_pi` and `q` [N] (or rank `rank`), floats."""
  chex.assert_rank(log_pi, rank, custom_message=f"`{name}` has the wrong rank")
  chex.assert_rank(q, rank, custom_message="`q` has the wrong rank")
  chex.assert_type(log_pi, float, custom_message=f"`{name}` must be floating point")
  chex.assert_type(q, float, custom_message="`q` must be floating point")
  chex.assert_equal_shape([log_pi, q], custom_message=f"`{name}` and `q` must match")
  if log_prior is not None:
    chex.assert_equal_shape(
        [log_pi, log_prior], custom_message=f"`log_prior` must match `{name}`")
    chex.assert_type(log_prior, float,
                     custom_message="`log_prior` must be floating point")


def check_temperature(temperature, name="temperature"):
  """A temperature is a scalar."""
  chex.assert_rank(temperature, 0, custom_message=f"`{name}` must be a scalar")
