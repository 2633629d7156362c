"""Policy distributions: only what distrax lacks or gets wrong.

Categorical and diagonal Gaussian policies are `distrax.Categorical` and
`distrax.MultivariateNormalDiag`, used as they are. This module adds

  * `TanhGaussian`: a diagonal Gaussian squashed by tanh (SAC's policy) whose
    log-probabilities come from the pre-tanh sample u with the stable correction
        log |d tanh(u)/du| = 2 (log 2 − u − softplus(−2u)),
    a deterministic action tanh(mean) and an entropy estimate (distrax has
    neither: `Transformed.mode/entropy` raise for non-constant Jacobians, and its
    `log_prob(y)` goes through arctanh(y), which is ±inf at |y| = 1 in float32);
  * `kl_divergence`: closed form where one exists, Monte Carlo otherwise;
  * `decoupled_gaussian_kl`: MPO's separate KLs for the mean and the scale.
"""

from typing import Optional, Tuple

import chex
import distrax
import jax
import jax.numpy as jnp

from rlax_inf import _checks
from rlax_inf import values

Array = chex.Array
PRNGKey = chex.PRNGKey


def tanh_log_det_jacobian(u: Array) -> Array:
  """Elementwise log |d tanh(u)/du| = log(1 − tanh²u), computed stably.

    log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u)),

  finite for every finite u (the naive form is log 0 = −inf once tanh(u) rounds
  to ±1, from |u| ≈ 9 in float32: rlax issues #11, #54).

  Args:
    u: pre-tanh values, any shape.

  Returns:
    The log-derivative, of the shape of `u`.
  """
  chex.assert_type(u, float, custom_message="`u` must be floating point")
  return 2.0 * (jnp.log(2.0).astype(u.dtype) - u - jax.nn.softplus(-2.0 * u))


class TanhGaussian(distrax.Transformed):
  """a = tanh(u), u ~ N(loc, diag(scale²)): SAC's squashed Gaussian policy.

    log π(a) = log N(u; loc, scale) − Σ_d 2 (log 2 − u_d − softplus(−2 u_d)).

  Event shape [D] (the last axis of `loc`); leading axes are batch axes. Sample
  with `sample_and_log_prob(seed=key)` (inherited from distrax; it uses the
  pre-tanh sample and the stable correction above) or
  `sample_and_log_prob_with_pre_tanh(key)` to keep u for later log-probs.
  Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018, app. C.
  """

  def __init__(self, loc: Array, scale: Array):
    """Builds the distribution.

    Args:
      loc: mean of the pre-tanh Gaussian [..., D].
      scale: standard deviation of the pre-tanh Gaussian [..., D], > 0.
    """
    chex.assert_rank(loc, {1, 2, 3}, custom_message="`loc` must be [..., D]")
    chex.assert_equal_shape([loc, scale],
                            custom_message="`scale` must have the shape of `loc`")
    chex.assert_type([loc, scale], float,
                     custom_message="`loc` and `scale` must be floating point")
    super().__init__(distrax.MultivariateNormalDiag(loc, scale),
                     distrax.Block(distrax.Tanh(), 1))

  @property
  def pre_tanh(self) -> distrax.MultivariateNormalDiag:
    """The Gaussian over u."""
    return self.distribution

  @property
  def loc(self) -> Array:
    return self.distribution.loc

  @property
  def scale(self) -> Array:
    return self.distribution.scale_diag

  def log_prob_from_pre_tanh(self, u: Array) -> Array:
    """log π(tanh u) from the pre-tanh value u (stable for any finite u).

    Args:
      u: pre-tanh values [..., D].

    Returns:
      Log-densities of a = tanh(u), the event axis reduced.
    """
    return (self.distribution.log_prob(u)
            - jnp.sum(tanh_log_det_jacobian(u), axis=-1))

  def sample_and_log_prob_with_pre_tanh(
      self, key: PRNGKey, sample_shape=()) -> Tuple[Array, Array, Array]:
    """Reparameterised sample: returns (a = tanh(u), u, log π(a)).

    Args:
      key: PRNG key.
      sample_shape: leading sample shape.

    Returns:
      The action, its pre-tanh value and its log-density.
    """
    u = self.distribution.sample(seed=key, sample_shape=sample_shape)
    return jnp.tanh(u), u, self.log_prob_from_pre_tanh(u)

  def log_prob(self, value: Array) -> Array:
    """log π(a) of squashed actions a, via u = arctanh(a) with a clipped to (−1, 1).

    The clip (|a| ≤ 1 − 1e-6 in float32) keeps replayed actions that rounded
    to ±1 finite; it is exact for |u| ≲ 7. Prefer `log_prob_from_pre_tanh`
    whenever u is at hand.

    Args:
      value: actions [..., D] in [−1, 1].

    Returns:
      Log-densities, the event axis reduced.
    """
    eps = 1e-6 if value.dtype == jnp.float32 else 1e-12
    u = jnp.arctanh(jnp.clip(value, -1.0 + eps, 1.0 - eps))
    return self.log_prob_from_pre_tanh(u)

  def mode(self) -> Array:
    """The deterministic action tanh(loc) (SAC's evaluation action).

    This is the squashed mode of the pre-tanh Gaussian, the convention of
    every SAC implementation; the density's own argmax moves towards ±1 when
    scale is large.
    """
    return jnp.tanh(self.loc)

  def entropy_estimate(self, key: PRNGKey, num_samples: int = 1) -> Array:
    """Unbiased estimate of the entropy H[tanh(u)] = H[u] + E_u Σ_d log(1 − tanh² u_d).

    The Gaussian part is exact; only the Jacobian term is Monte Carlo, which
    has lower variance than −mean log π(a). Differentiable (pathwise in u).

    Args:
      key: PRNG key.
      num_samples: number of samples of u.

    Returns:
      The estimate, with the batch shape.
    """
    u = self.distribution.sample(seed=key, sample_shape=num_samples)
    jac = jnp.sum(tanh_log_det_jacobian(u), axis=-1)
    return self.distribution.entropy() + jnp.mean(jac, axis=0)


def kl_divergence(
    p: distrax.Distribution,
    q: distrax.Distribution,
    key: Optional[PRNGKey] = None,
    num_samples: int = 1,
) -> Array:
  """KL(p ‖ q): closed form where one exists, else Monte Carlo with samples of p.

    KL(p ‖ q) = E_{x~p}[log p(x) − log q(x)] ≈ (1/M) Σ_m [log p(x_m) − log q(x_m)].

  Closed forms: two tanh-Gaussians (KL is invariant under the shared tanh, so
  it is the KL of the pre-tanh Gaussians), two categoricals (`rlax_inf.kl`, 0 log 0 = 0 and −inf logits
  allowed) and any pair distrax knows (e.g. two diagonal Gaussians). The Monte
  Carlo estimate (tanh-Gaussians, mixtures, hierarchical policies) is
  unbiased and reparameterised where p's sampler is.

  Args:
    p: the first distribution (unbatched or batched).
    q: the second distribution, same event and batch shape.
    key: PRNG key, needed only when there is no closed form.
    num_samples: M, the number of Monte Carlo samples.

  Returns:
    The KL divergence, with p's batch shape.
  """
  if isinstance(p, TanhGaussian) and isinstance(q, TanhGaussian):
    # KL is invariant under a shared bijection: that of the pre-tanh Gaussians.
    return p.pre_tanh.kl_divergence(q.pre_tanh)
  if isinstance(p, distrax.Categorical) and isinstance(q, distrax.Categorical):
    log_p = jax.nn.log_softmax(p.logits, axis=-1)
    log_q = jax.nn.log_softmax(q.logits, axis=-1)
    kl_fn = values.kl
    for _ in range(log_p.ndim - 1):
      kl_fn = jax.vmap(kl_fn)
    return kl_fn(log_p, log_q)
  if not isinstance(p, TanhGaussian):
    try:
      return p.kl_divergence(q)
    except NotImplementedError:
      pass
  if key is None:
    raise ValueError("`key` is required: no closed-form KL between "
                     f"{type(p).__name__} and {type(q).__name__}")
  if isinstance(p, TanhGaussian):
    x, _, log_p = p.sample_and_log_prob_with_pre_tanh(key, num_samples)
  else:
    x, log_p = p.sample_and_log_prob(seed=key, sample_shape=num_samples)
  log_q = q.log_prob(x)
  return jnp.mean(log_p - log_q, axis=0)


def decoupled_gaussian_kl(
    loc_old: Array, scale_old: Array, loc: Array, scale: Array
) -> Tuple[Array, Array]:
  """MPO's decoupled KLs of a diagonal Gaussian from the previous one.

    KL_μ = KL(N(μ_old, σ_old) ‖ N(μ, σ_old)) = Σ_d (μ_d − μ_old,d)² / (2 σ_old,d²)
    KL_σ = KL(N(μ_old, σ_old) ‖ N(μ_old, σ)) = Σ_d [σ_old,d²/σ_d² − 1 + 2 log(σ_d/σ_old,d)] / 2

  KL_μ depends only on the new mean and KL_σ only on the new scale, so each
  can get its own bound (Abdolmaleki et al., "Relative Entropy Regularized
  Policy Iteration", 2018, sec. 4.2). The old parameters are stop-gradient.

  Args:
    loc_old: previous mean [D].
    scale_old: previous standard deviation [D].
    loc: new mean [D].
    scale: new standard deviation [D].

  Returns:
    (KL_μ, KL_σ), two scalars.
  """
  _checks.check_args(
      ("loc_old", loc_old, 1, None), ("scale_old", scale_old, 1, None), ("loc", loc, 1, None),
      ("scale", scale, 1, None))
  _checks.check_same_shape(
      ("loc_old", loc_old), ("scale_old", scale_old), ("loc", loc), ("scale", scale))
  _checks.check_args(
      ("loc_old", loc_old, None, float), ("scale_old", scale_old, None, float),
      ("loc", loc, None, float), ("scale", scale, None, float))
  loc_old = jax.lax.stop_gradient(loc_old)
  scale_old = jax.lax.stop_gradient(scale_old)
  kl_mean = 0.5 * jnp.sum(jnp.square((loc - loc_old) / scale_old))
  log_ratio = jnp.log(scale) - jnp.log(scale_old)
  kl_scale = 0.5 * jnp.sum(jnp.exp(-2.0 * log_ratio) - 1.0 + 2.0 * log_ratio)
  return kl_mean, kl_scale


def decoupled_gaussian_log_prob(
    actions: Array, loc_old: Array, scale_old: Array, loc: Array, scale: Array
) -> Array:
  """MPO's decoupled log-likelihood of actions under a diagonal Gaussian.

    log π_μ(a) + log π_σ(a) = log N(a; μ, σ_old) + log N(a; μ_old, σ),

  so that the weighted maximum likelihood step fits the mean with the old
  scale and the scale with the old mean (Abdolmaleki et al., 2018, sec. 4.2).
  Pair with `decoupled_gaussian_kl` for the two KL bounds.

  Args:
    actions: sampled actions [N, D].
    loc_old: previous mean [D] (stop-gradient).
    scale_old: previous standard deviation [D] (stop-gradient).
    loc: new mean [D].
    scale: new standard deviation [D].

  Returns:
    The decoupled log-likelihoods [N].
  """
  chex.assert_rank(actions, 2, custom_message="`actions` must be [N, D]")
  _checks.check_args(
      ("loc_old", loc_old, 1, None), ("scale_old", scale_old, 1, None), ("loc", loc, 1, None),
      ("scale", scale, 1, None))
  _checks.check_args(
      ("actions", actions, None, float), ("loc_old", loc_old, None, float),
      ("scale_old", scale_old, None, float), ("loc", loc, None, float),
      ("scale", scale, None, float))
  loc_old = jax.lax.stop_gradient(loc_old)
  scale_old = jax.lax.stop_gradient(scale_old)
  fit_mean = distrax.MultivariateNormalDiag(loc, scale_old).log_prob(actions)
  fit_scale = distrax.MultivariateNormalDiag(loc_old, scale).log_prob(actions)
  return fit_mean + fit_scale
