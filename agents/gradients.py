"""One gradient step for every optimiser step of every agent (brax.training's shape).

    critic_step = gradients.make_step(critic_loss, optax.adam(3e-4), has_aux=True)
    (loss, aux), critic, critic_opt = critic_step(critic, critic_opt, batch, ...)

An agent's update then reads as orchestration: compute losses, step each
optimiser.
"""

from typing import Any, Callable, Optional

import jax
import optax


def make_step(loss_fn: Callable[..., Any], optimizer: optax.GradientTransformation,
              has_aux: bool = False) -> Callable[..., Any]:
  """`step(params, opt_state, *args) -> (loss or (loss, aux), params, opt_state)`.

  Args:
    loss_fn: `loss_fn(params, *args) -> loss` (or `(loss, aux)` with `has_aux`).
    optimizer: the optax transformation that owns `opt_state`.
    has_aux: whether `loss_fn` returns auxiliary outputs.

  Returns:
    The step function: value and gradient of `loss_fn` w.r.t. `params`, one
    optimiser update, the new parameters.
  """
  value_and_grad = jax.value_and_grad(loss_fn, has_aux=has_aux)

  def step(params, opt_state, *args):
    value, grads = value_and_grad(params, *args)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return value, optax.apply_updates(params, updates), opt_state

  return step


def adam(lr: float, max_grad_norm: Optional[float] = None) -> optax.GradientTransformation:
  """Adam at `lr`, after clipping the global gradient norm to `max_grad_norm` (None: no clip)."""
  if max_grad_norm is None:
    return optax.adam(lr)
  return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr))
