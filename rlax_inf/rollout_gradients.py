"""Gradients of an H-step rollout return through a simulator: zeroth, first and α order.

The objective is the Gaussian-smoothed return of a deterministic policy
π_θ(o) acting for H steps from a start state s_0 of an `rlax_inf.envs`
environment, with exploration noise on the actions:

    F(θ) = E_ε[R(θ, ε)],   R(θ, ε) = Σ_{t<H} r_t,   a_t = π_θ(o_t) + σ ε_t,
    ε_t ~ N(0, I),

the rewards counted up to and including the step that ends an episode (the
auto-reset episode after it is not part of the rollout). Three estimators of
∇F from the same N samples ε_1..ε_N (Suh, Simchowitz, Zhang, Tedrake, "Do
Differentiable Simulators Give Better Policy Gradients?", ICML 2022):

* zeroth order (score function, their ZoBG): ĝ⁰_i = (R_i − b_i) ∇_θ log p_θ(a|o)
  = (R_i − b_i) Σ_t J_π(o_t)ᵀ ε_t / σ with the states held fixed and b_i the
  leave-one-out mean return; needs no simulator gradient;
* first order (pathwise, their FoBG): ĝ¹_i = ∇_θ R(θ, ε_i), back-propagated
  through the simulator (`env.step` must be differentiable w.r.t. the action;
  `rlax_inf.envs.GRADIENT_NOTES` lists where that agrees with finite
  differences);
* α-mixed (their AoBG): ĝ^α = α ĝ¹ + (1 − α) ĝ⁰ with α = σ̂₀² / (σ̂₀² + σ̂₁²)
  from the per-sample variances, reduced where the bias check fails.

Non-finite samples (a return, state or gradient that overflowed) are screened
out and counted, never averaged in. Every function is pure and jittable with
static shapes (H and N are Python ints; `num_steps` lets one compiled program
serve every horizon up to H), vmaps over the samples, and works in float32 and
in float64 (build and run the env inside `with jax.enable_x64(True):`).

The rlax_inf package imports nothing from envs: `env` is any object with
`step(state, action) -> state` and `spec.action_size` (an
`rlax_inf.envs.Environment`).
"""

from typing import Any, Callable, NamedTuple, Optional, Tuple

import chex
import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import numpy as np

from rlax_inf import _checks

Array = chex.Array
Numeric = chex.Numeric
Policy = Callable[[Any, Array], Array]
RewardFn = Callable[[Any, Array], Array]


class RolloutGradient(NamedTuple):
  """One gradient estimate from N rollouts.

  Attributes:
    grad: the estimate ḡ = (1/M) Σ_{i finite} ĝ_i, a pytree shaped like params
      (zeros when no sample is finite).
    value: the mean return (1/M) Σ_{i finite} R_i (0 when none is finite).
    variance: σ̂² = (1/(M − 1)) Σ_{i finite} ‖ĝ_i − ḡ‖², the trace of the
      per-sample covariance (0 when M < 2).
    num_nonfinite: int32, the N − M samples screened out.
  """

  grad: Any
  value: Array
  variance: Array
  num_nonfinite: Array


class MixedGradient(NamedTuple):
  """The α-mixed estimate and its two parts (same samples).

  Attributes:
    grad: α ḡ¹ + (1 − α) ḡ⁰ (ḡ⁰ alone when α = 0).
    value: the mean return of the samples used.
    alpha: the α used, in [0, 1].
    bias_gap: ε̂ = ‖ḡ¹ − ḡ⁰‖ (inf when a first-order sample is non-finite).
    confidence: ε = z sqrt(σ̂₀² / M), the half-width of ḡ⁰'s confidence ball.
    zeroth: the zeroth-order `RolloutGradient`.
    first: the first-order `RolloutGradient`.
    num_nonfinite: samples screened out of `grad` (those of `zeroth`).
  """

  grad: Any
  value: Array
  alpha: Array
  bias_gap: Array
  confidence: Array
  zeroth: RolloutGradient
  first: RolloutGradient
  num_nonfinite: Array


# ------------------------------------------------------------------ checks


def _check_positive(value, name):
  v = _checks.host_value(value)
  if v is not None and not (np.all(np.isfinite(v)) and np.all(v > 0)):
    raise ValueError(f'`{name}` must be a finite number > 0; got {v}.')


def _check_non_negative(value, name):
  v = _checks.host_value(value)
  if v is not None and not np.all(v >= 0):  # NaN fails too; inf passes.
    raise ValueError(f'`{name}` must be >= 0; got {v}.')


def _check_mixing(bias_threshold, z):
  _checks.check_args(("bias_threshold", bias_threshold, 0, None), ("z", z, 0, None))
  _check_non_negative(bias_threshold, 'bias_threshold')
  _check_non_negative(z, 'z')


def _check_int(value, name, low):
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise ValueError(f'`{name}` must be an int >= {low}; got {value!r}.')


def _check_sampling(sigma, horizon, num_samples):
  chex.assert_rank(sigma, 0, custom_message='`sigma` must be a scalar')
  _check_positive(sigma, 'sigma')
  _check_int(horizon, 'horizon', 1)
  _check_int(num_samples, 'num_samples', 2)


def _float_dtype(state):
  dtype = jnp.asarray(state.obs).dtype
  return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def _default_reward(next_state, action):
  del action
  return next_state.reward


# ----------------------------------------------------------------- rollouts


def _rollout(env, policy, params, state, noise, num_steps, reward_fn):
  """R, the observations acted on [H, O] and the alive mask [H] of one rollout."""
  dtype = _float_dtype(state)
  reward_fn = _default_reward if reward_fn is None else reward_fn

  def step(carry, inputs):
    s, alive, total = carry
    t, eps = inputs
    obs = s.obs

    def advance(operand):
      s, alive, total = operand
      action = policy(params, s.obs) + eps
      nxt = env.step(s, action.astype(dtype))
      r = jnp.asarray(reward_fn(nxt, action), dtype)
      total = total + alive * r
      alive = alive * (1.0 - jnp.asarray(nxt.done, dtype))
      return nxt, alive, total

    if num_steps is None:
      active = jnp.ones((), dtype)
      carry = advance(carry)
    else:
      active = (t < num_steps).astype(dtype)
      carry = jax.lax.cond(t < num_steps, advance, lambda c: c, carry)
    return carry, (obs, alive * active)

  horizon = noise.shape[0]
  init = (state, jnp.ones((), dtype), jnp.zeros((), dtype))
  (_, _, total), (obs_t, mask_t) = jax.lax.scan(
      step, init, (jnp.arange(horizon), noise))
  return total, obs_t, mask_t


def rollout_return(
    env: Any,
    policy: Policy,
    params: Any,
    state: Any,
    noise: Array,
    num_steps: Optional[Array] = None,
    reward_fn: Optional[RewardFn] = None,
) -> Array:
  """The return R = Σ_{t<H} r_t of one rollout with action noise, differentiable.

    a_t = π_θ(o_t) + noise_t,   s_{t+1} = env.step(s_t, a_t),

  rewards counted while alive: up to and including the step whose `done` is 1.
  Differentiable w.r.t. `params` (and `noise`) where `env.step` is.

  Args:
    env: an `rlax_inf.envs` environment (`step`, `spec.action_size`).
    policy: (params, obs) -> action [action_size], deterministic.
    params: θ, a pytree.
    state: the start `State` (unbatched; from `env.reset`).
    noise: [H, action_size] additive action noise (σ ε, or zeros).
    num_steps: None (all H steps) or a traced int ≤ H: steps t ≥ num_steps are
      skipped (`lax.cond`), so one compiled program serves every horizon ≤ H.
    reward_fn: (next_state, action) -> reward [] of each transition; default
      `next_state.reward`. `Environment` stores rewards as float32: in float64
      pass one computed from `next_state.final_obs` or the physics state.

  Returns:
    The scalar return, in the dtype of `state.obs`.

  Examples:
    >>> import jax, jax.numpy as jnp, rlax_inf
    >>> from rlax_inf import envs
    >>> env = envs.make('pendulum', fresh_resets=False)
    >>> s0 = env.reset(jax.random.PRNGKey(0))
    >>> policy = lambda w, obs: jnp.tanh(obs @ w)
    >>> g = jax.grad(rlax_inf.rollout_return, argnums=2)(
    ...     env, policy, jnp.zeros((3, 1)), s0, jnp.zeros((5, 1)))
    >>> g.shape
    (3, 1)
  """
  chex.assert_rank(noise, 2, custom_message='`noise` must be [H, action_size]')
  if noise.shape[1] != env.spec.action_size:
    raise ValueError(f'`noise` must be [H, {env.spec.action_size}]; got {noise.shape}.')
  return _rollout(env, policy, params, state, noise, num_steps, reward_fn)[0]


def _draw_noise(key, state, env, num_samples, horizon, sigma):
  dtype = _float_dtype(state)
  eps = jax.random.normal(key, (num_samples, horizon, env.spec.action_size), dtype)
  return eps, jnp.asarray(sigma, dtype)


def _state_axis(state, num_samples):
  """0 if `state` holds one start state per sample, None if it is shared."""
  rank = jnp.ndim(state.obs)
  if rank == 1:
    return None
  if rank == 2 and state.obs.shape[0] == num_samples:
    return 0
  raise ValueError('`state` must be one unbatched State or a batch of '
                   f'num_samples = {num_samples}; got obs of shape {state.obs.shape}.')


# ---------------------------------------------------------- per-sample terms


def _score(policy, params, obs_t, eps_t, mask_t, sigma):
  """∇_θ Σ_t log N(a_t; π_θ(o_t), σ²I) = Σ_t J_π(o_t)ᵀ ε_t / σ, states held fixed."""
  obs_t, eps_t, mask_t = jax.lax.stop_gradient((obs_t, eps_t, mask_t))

  def surrogate(p):
    mean_t = jax.vmap(policy, in_axes=(None, 0))(p, obs_t)
    return jnp.sum(mask_t[:, None] * mean_t * eps_t) / sigma

  return jax.grad(surrogate)(params)


def _flat(tree_batch):
  """[N, P] from a pytree of per-sample leaves [N, ...]."""
  return jax.vmap(lambda g: ravel_pytree(g)[0])(tree_batch)


def _summarise(per_sample, returns, finite, unravel):
  """`RolloutGradient` from per-sample gradients [N, P] and returns [N]."""
  dtype = per_sample.dtype
  m = jnp.sum(finite)
  w = finite.astype(dtype)
  safe = jnp.where(finite[:, None], per_sample, 0.0)
  mean = jnp.sum(safe, axis=0) / jnp.maximum(m, 1)
  dev = jnp.where(finite[:, None], per_sample - mean, 0.0)
  variance = jnp.sum(dev**2) / jnp.maximum(m - 1, 1)
  value = jnp.sum(jnp.where(finite, returns, 0.0)) / jnp.maximum(m, 1)
  return RolloutGradient(
      grad=unravel(mean), value=value.astype(dtype),
      variance=jnp.where(m >= 2, variance, 0.0).astype(dtype),
      num_nonfinite=(finite.shape[0] - m).astype(jnp.int32)), w


def _zeroth_from(returns, scores, finite, use_baseline):
  """Per-sample (R_i − b_i) s_i with b_i the leave-one-out mean of the finite returns."""
  dtype = scores.dtype
  r = jnp.where(finite, returns, 0.0).astype(dtype)
  m = jnp.sum(finite)
  if use_baseline:
    others = jnp.where(finite, m - 1, m).astype(dtype)
    baseline = (jnp.sum(r) - r) / jnp.maximum(others, 1)
    baseline = jnp.where(others >= 1, baseline, 0.0)
  else:
    baseline = jnp.zeros_like(r)
  return (r - baseline)[:, None] * jnp.where(finite[:, None], scores, 0.0)


def _all_finite(x):
  return jnp.all(jnp.isfinite(x), axis=tuple(range(1, jnp.ndim(x))))


def _samples(env, policy, params, state, key, num_samples, sigma, horizon,
             num_steps, reward_fn, first_order):
  """Per-sample returns, flat scores, flat pathwise gradients (or None)."""
  _check_sampling(sigma, horizon, num_samples)
  axis = _state_axis(state, num_samples)
  eps, sigma = _draw_noise(key, state, env, num_samples, horizon, sigma)

  def one(p, s, e):
    ret, obs_t, mask_t = _rollout(env, policy, p, s, sigma * e, num_steps, reward_fn)
    return ret, (obs_t, mask_t)

  if first_order:
    (ret, (obs_t, mask_t)), grads = jax.vmap(
        jax.value_and_grad(one, has_aux=True), in_axes=(None, axis, 0))(
            params, state, eps)
    grads = _flat(grads)
  else:
    params_sg = jax.lax.stop_gradient(params)
    ret, (obs_t, mask_t) = jax.vmap(one, in_axes=(None, axis, 0))(
        params_sg, state, eps)
    grads = None
  scores = _flat(jax.vmap(_score, in_axes=(None, None, 0, 0, 0, None))(
      policy, params, obs_t, eps, mask_t, sigma))
  return ret, scores, grads


# ------------------------------------------------------------- estimators


def zeroth_order_gradient(
    env: Any,
    policy: Policy,
    params: Any,
    state: Any,
    key: Array,
    sigma: Numeric,
    horizon: int,
    num_samples: int,
    num_steps: Optional[Array] = None,
    reward_fn: Optional[RewardFn] = None,
    use_baseline: bool = True,
) -> RolloutGradient:
  """Score-function (Gaussian-smoothing) estimate of ∇_θ E_ε[R(θ, ε)].

    ĝ⁰ = (1/M) Σ_{i finite} (R_i − b_i) Σ_t J_π(o_t^i)ᵀ ε_t^i / σ,
    b_i = mean of the other finite returns (leave-one-out; Kool et al., 2019),

  Suh et al. (2022)'s ZoBG with a baseline: the score of the Gaussian action
  a_t ~ N(π_θ(o_t), σ²I) at the visited observations (Williams, 1992). Uses
  returns only: no gradient through the simulator. A sample whose return or
  observations are non-finite is screened out (and out of the baselines).

  Args:
    env: an `rlax_inf.envs` environment with continuous actions.
    policy: (params, obs) -> action [action_size], deterministic.
    params: θ, a pytree.
    state: the start `State`: one shared by all samples, or N (leading axis N).
    key: PRNG key for the noise ε = jax.random.normal(key, (N, H, action_size)),
      drawn in the dtype of `state.obs`.
    sigma: σ > 0, the action-noise scale.
    horizon: H ≥ 1 steps (a Python int).
    num_samples: N ≥ 2 rollouts (a Python int).
    num_steps: None, or a traced int ≤ H of steps actually taken.
    reward_fn: see `rollout_return`.
    use_baseline: leave-one-out baseline (True) or none (False).

  Returns:
    A `RolloutGradient`.

  Raises:
    ValueError: naming `sigma`, `horizon`, `num_samples` or `state` on bad input.
  """
  ret, scores, _ = _samples(env, policy, params, state, key, num_samples, sigma,
                            horizon, num_steps, reward_fn, first_order=False)
  unravel = ravel_pytree(params)[1]
  finite = jnp.isfinite(ret) & _all_finite(scores)
  per_sample = _zeroth_from(ret, scores, finite, use_baseline)
  return _summarise(per_sample, ret, finite, unravel)[0]


def first_order_gradient(
    env: Any,
    policy: Policy,
    params: Any,
    state: Any,
    key: Array,
    sigma: Numeric,
    horizon: int,
    num_samples: int,
    num_steps: Optional[Array] = None,
    reward_fn: Optional[RewardFn] = None,
) -> RolloutGradient:
  """Pathwise estimate of ∇_θ E_ε[R(θ, ε)] through the simulator.

    ĝ¹ = (1/M) Σ_{i finite} ∇_θ R(θ, ε_i),

  reverse mode through H calls of `env.step` per sample, samples vmapped
  (Suh et al., 2022's FoBG; the analytic policy gradient of Brax's APG with
  exploration noise). Unbiased for ∇F only where R is differentiable in θ
  almost everywhere and its derivative is integrable (no jumps: contacts and
  stiff dynamics can break this, which is what the α-mixed estimator guards
  against). A sample whose return or gradient is non-finite is screened out.

  Args:
    env: an `rlax_inf.envs` environment, differentiable w.r.t. the action.
    policy: (params, obs) -> action [action_size], deterministic.
    params: θ, a pytree.
    state: the start `State`: one shared by all samples, or N (leading axis N).
    key: PRNG key for the noise ε = jax.random.normal(key, (N, H, action_size)),
      drawn in the dtype of `state.obs`.
    sigma: σ > 0, the action-noise scale.
    horizon: H ≥ 1 steps (a Python int).
    num_samples: N ≥ 2 rollouts (a Python int).
    num_steps: None, or a traced int ≤ H of steps actually taken.
    reward_fn: see `rollout_return`.

  Returns:
    A `RolloutGradient`.

  Raises:
    ValueError: naming `sigma`, `horizon`, `num_samples` or `state` on bad input.
  """
  ret, _, grads = _samples(env, policy, params, state, key, num_samples, sigma,
                           horizon, num_steps, reward_fn, first_order=True)
  unravel = ravel_pytree(params)[1]
  finite = jnp.isfinite(ret) & _all_finite(grads)
  return _summarise(grads, ret, finite, unravel)[0]


def mix_alpha(
    zeroth: RolloutGradient,
    first: RolloutGradient,
    num_samples: Numeric,
    bias_threshold: Numeric,
    z: Numeric = 1.96,
) -> Tuple[Array, Array, Array]:
  """Suh et al. (2022)'s α: least variance subject to their bias check.

    α* = σ̂₀² / (σ̂₀² + σ̂₁²)      minimises α² σ̂₁² + (1 − α)² σ̂₀²,
    α  = max(0, min(α*, (γ − ε) / ε̂))   the solution subject to α ε̂ ≤ γ − ε,

  with ε̂ = ‖ḡ¹ − ḡ⁰‖ (how far the first-order mean is from the unbiased
  zeroth-order one) and ε = z sqrt(σ̂₀² / M) the half-width of ḡ⁰'s confidence
  ball: if the two disagree by more than the tolerance γ allows, α shrinks
  towards 0 and falls back to zeroth order (α = 0 when γ ≤ ε). α = 0 also when
  any first-order sample was non-finite, and α = 1 when both variances are 0.

  Args:
    zeroth: the zeroth-order `RolloutGradient`.
    first: the first-order one, from the same samples.
    num_samples: M, the finite samples behind the variances.
    bias_threshold: γ ≥ 0, the bias tolerated in the α-mixed estimate
      (inf: α = α*, no check).
    z: the confidence multiplier of ε (1.96: 95% under a normal approximation).

  Returns:
    (α, ε̂, ε).
  """
  _check_mixing(bias_threshold, z)
  v0, v1 = zeroth.variance, first.variance
  dtype = v0.dtype
  total = v0 + v1
  alpha_star = jnp.where(total > 0, v0 / jnp.where(total > 0, total, 1.0), 1.0)
  diff = ravel_pytree(first.grad)[0] - ravel_pytree(zeroth.grad)[0]
  gap = jnp.sqrt(jnp.sum(diff**2))
  first_ok = first.num_nonfinite == 0
  gap = jnp.where(first_ok, gap, jnp.inf)
  conf = jnp.asarray(z, dtype) * jnp.sqrt(v0 / jnp.maximum(num_samples, 1))
  slack = jnp.asarray(bias_threshold, dtype) - conf
  bound = jnp.where(gap > 0, slack / jnp.where(gap > 0, gap, 1.0), jnp.inf)
  alpha = jnp.where(gap > 0, jnp.clip(jnp.minimum(alpha_star, bound), 0.0, 1.0),
                    jnp.where(slack >= 0, alpha_star, 0.0))
  alpha = jnp.where(first_ok, alpha, 0.0)
  return alpha.astype(dtype), gap.astype(dtype), conf.astype(dtype)


def alpha_order_gradient(
    env: Any,
    policy: Policy,
    params: Any,
    state: Any,
    key: Array,
    sigma: Numeric,
    horizon: int,
    num_samples: int,
    bias_threshold: Numeric,
    z: Numeric = 1.96,
    num_steps: Optional[Array] = None,
    reward_fn: Optional[RewardFn] = None,
) -> MixedGradient:
  """Suh et al. (2022)'s α-order estimate: ĝ^α = α ĝ¹ + (1 − α) ĝ⁰.

  Both parts from the same N rollouts (one forward and one backward pass each),
  α from `mix_alpha`: α = σ̂₀² / (σ̂₀² + σ̂₁²) from the per-sample variances,
  reduced so that α ‖ḡ¹ − ḡ⁰‖ ≤ γ − ε (the bias check), 0 (zeroth order) when
  the check cannot be met or a first-order sample is non-finite. The mix of two
  estimates with a data-dependent α is not exactly unbiased; Suh et al.
  bound its error by γ with high probability.

  Args:
    env: an `rlax_inf.envs` environment, differentiable w.r.t. the action.
    policy: (params, obs) -> action [action_size], deterministic.
    params: θ, a pytree.
    state: the start `State`: one shared by all samples, or N (leading axis N).
    key: PRNG key for the noise ε = jax.random.normal(key, (N, H, action_size)),
      drawn in the dtype of `state.obs`.
    sigma: σ > 0, the action-noise scale.
    horizon: H ≥ 1 steps (a Python int).
    num_samples: N ≥ 2 rollouts (a Python int).
    bias_threshold: γ ≥ 0 (see `mix_alpha`; inf disables the check).
    z: confidence multiplier of ε.
    num_steps: None, or a traced int ≤ H of steps actually taken.
    reward_fn: see `rollout_return`.

  Returns:
    A `MixedGradient`.

  Raises:
    ValueError: naming `sigma`, `horizon`, `num_samples` or `state` on bad input.
  """
  _check_mixing(bias_threshold, z)
  ret, scores, grads = _samples(env, policy, params, state, key, num_samples, sigma,
                                horizon, num_steps, reward_fn, first_order=True)
  unravel = ravel_pytree(params)[1]
  finite0 = jnp.isfinite(ret) & _all_finite(scores)
  zeroth, _ = _summarise(_zeroth_from(ret, scores, finite0, True), ret, finite0, unravel)
  finite1 = jnp.isfinite(ret) & _all_finite(grads)
  first, _ = _summarise(grads, ret, finite1, unravel)
  m = num_samples - zeroth.num_nonfinite
  alpha, gap, conf = mix_alpha(zeroth, first, m, bias_threshold, z)
  g0, g1 = ravel_pytree(zeroth.grad)[0], ravel_pytree(first.grad)[0]
  mixed = jnp.where(alpha > 0, alpha * g1 + (1 - alpha) * g0, g0)
  return MixedGradient(
      grad=unravel(mixed), value=zeroth.value, alpha=alpha, bias_gap=gap,
      confidence=conf, zeroth=zeroth, first=first,
      num_nonfinite=zeroth.num_nonfinite)
