"""Argument checks shared by the modules: shapes, ranks, temperatures, discounts.

Every check runs at trace time (chex, like rlax) and names the argument. Values
are checked only where they are known at trace time (Python and NumPy numbers);
traced arrays pass through, so no check ever breaks `jit` or `vmap`.

Temperatures follow one rule everywhere: τ is a scalar (rank 0), never a vector
broadcast against the actions; users `jax.vmap` for one temperature per state.
"""

import numbers
from typing import Optional

import chex
import jax.numpy as jnp
import numpy as np

Array = chex.Array


def host_value(x) -> Optional[np.ndarray]:
  """`x` as a NumPy array when it is known at trace time (Python or NumPy), else None."""
  if isinstance(x, (numbers.Number, np.ndarray, np.generic)) and not isinstance(x, bool):
    return np.asarray(x)
  return None


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


def check_temperature(temperature, name="temperature", non_negative=True):
  """A temperature is a scalar, and ≥ 0 (not NaN) where its value is known."""
  chex.assert_rank(temperature, 0, custom_message=(
      f"`{name}` must be a scalar (jax.vmap for one per state)"))
  value = host_value(temperature)
  if non_negative and value is not None and not value >= 0:  # NaN fails too.
    raise AssertionError(f"`{name}` must be >= 0; got {value}.")


def check_discount(discount, name="discount_t"):
  """A discount lies in [0, 1] where its value is known at trace time."""
  value = host_value(discount)
  if value is not None and not np.all((value >= 0) & (value <= 1)):
    raise AssertionError(f"`{name}` must lie in [0, 1]; got {value}.")


def check_args(*specs) -> None:
  """Rank and dtype of each `(name, x, rank, dtype)`; the error names the argument.

  `rank` is an int, a set of ints or None (any); `dtype` is `float`, `int` or None (any).
  Python numbers count as rank 0 (weakly typed: a float is float, an int int).
  """
  for name, x, rank, dtype in specs:
    ranks = {rank} if isinstance(rank, int) else set(rank or ())
    if rank is not None and jnp.ndim(x) not in ranks:
      want = rank if isinstance(rank, int) else " or ".join(map(str, sorted(ranks)))
      raise AssertionError(f"`{name}` must have rank {want}; got shape {jnp.shape(x)}.")
    if dtype is not None:
      kind = jnp.floating if dtype is float else jnp.integer
      got = jnp.result_type(x)
      if not jnp.issubdtype(got, kind):
        raise AssertionError(f"`{name}` must be {dtype.__name__}; got {got}.")


def check_same_shape(*named) -> None:
  """All `(name, x)` pairs have the first one's shape; the error names the one that differs."""
  (first, ref), rest = named[0], named[1:]
  for name, x in rest:
    if np.shape(x) != np.shape(ref):
      raise AssertionError(f"`{name}` has shape {np.shape(x)} but `{first}` has shape "
                           f"{np.shape(ref)}; they must match.")
