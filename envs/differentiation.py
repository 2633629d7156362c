"""Finite-difference reference gradients for differentiable-simulator studies."""

from typing import Callable

import jax
import numpy as np


def central_differences(value: Callable[[jax.Array], jax.Array], x: jax.Array,
                        eps: float) -> np.ndarray:
  """(value(x + ε e_i) − value(x − ε e_i)) / 2ε for every component i of `x`.

  Args:
    value: scalar function of a JAX array `x` (e.g. a jitted rollout return).
    x: the point (any shape); perturbed one component at a time.
    eps: the step ε.

  Returns:
    float64 numpy array shaped like `x`: the central-difference gradient.
  """
  fd = np.zeros(x.shape)
  for idx in np.ndindex(*x.shape):
    fd[idx] = (float(value(x.at[idx].add(eps))) -
               float(value(x.at[idx].add(-eps)))) / (2 * eps)
  return fd
