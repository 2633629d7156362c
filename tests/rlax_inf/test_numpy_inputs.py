"""Every public function of `rlax_inf` takes NumPy arrays and gives the result of jnp arrays.

One case per public function: its arguments built as NumPy arrays (float32 and
int32, as a user's replay buffer or data loader hands them over). The function is
called eagerly with the NumPy arguments and with the same arguments as jnp arrays;
the outputs must agree exactly (same dtype and shape, values to 1e-6). A public
function without a case fails `test_every_public_function_has_a_case`, so a new
function cannot skip the check.
"""
import inspect

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rlax_inf

_RNG = np.random.default_rng(0)
T, A, S, O, N, D, K = 3, 4, 5, 2, 6, 2, 4


def _f(*shape):
  return _RNG.normal(size=shape).astype(np.float32)


def _logp(*shape):
  x = _f(*shape)
  return (x - np.log(np.exp(x).sum(-1, keepdims=True))).astype(np.float32)


def _probs(*shape):
  return np.exp(_logp(*shape)).astype(np.float32)


def _mdp():
  return dict(rewards=_f(S, A), transitions=_probs(S, A, S), initial=_probs(S))


def _options():
  return (_logp(T, O), _logp(O), _RNG.uniform(0.1, 0.9, (T, O)).astype(np.float32),
          _logp(T, O))


def _key():
  return np.asarray(jax.random.PRNGKey(0))  # a raw uint32 key as NumPy


def _demo_counts():
  return _probs(T, S * A).reshape(T, S, A)


def _cases():
  """name -> (args, kwargs) with NumPy arrays (built once, deterministically)."""
  m = _mdp()
  opts = _options()
  o_t = np.array([0, 1, 1], np.int32)
  c = {
      # values
      "soft_value": ((_f(A), np.float32(0.5), _logp(A), np.array([1, 1, 0, 1], bool)), {}),
      "boltzmann_log_policy": ((_f(A), np.float32(0.5), _logp(A),
                                np.array([1, 0, 1, 1], bool)), {}),
      "regularized_value": ((_f(A), _logp(A), np.float32(0.5), _logp(A)), {}),
      "entropy": ((_logp(A),), {}),
      "kl": ((_logp(A), _logp(A)), {}),
      # bellman
      "soft_q_learning": ((_f(A), np.int32(1), np.float32(0.5), np.float32(0.9), _f(A),
                           np.float32(0.3), _logp(A)), {}),
      "regularized_expected_sarsa": ((_f(A), np.int32(2), np.float32(1.0), np.float32(0.9),
                                      _f(A), _logp(A), np.float32(0.3), _logp(A)), {}),
      "soft_td_target": ((_f(T), np.full(T, 0.9, np.float32), _f(T), _f(T), np.float32(0.2),
                          _f(T)), {}),
      "soft_lambda_returns": ((_f(T), np.full(T, 0.9, np.float32), _f(T), _f(T),
                               np.float32(0.7)), {}),
      "soft_n_step_returns": ((_f(T), np.full(T, 0.9, np.float32), _f(T), _f(T), 2), {}),
      "soft_retrace": ((_f(T, A), _f(T, A), np.array([0, 1, 2], np.int32),
                        np.array([1, 2, 3], np.int32), _f(T), np.full(T, 0.9, np.float32),
                        _logp(T, A), _logp(T, A)[:, 0], np.float32(0.3), _logp(T, A),
                        np.float32(0.9)), {}),
      "soft_retrace_targets": ((_f(T, A), np.array([1, 2, 3], np.int32), _f(T),
                                np.full(T, 0.9, np.float32), _logp(T, A), _logp(T, A)[:, 0],
                                np.float32(0.3), _logp(T, A), np.float32(0.9)), {}),
      # messages
      "policy_evaluation": ((m["rewards"], m["transitions"], _probs(S, A), np.float32(0.9)), {}),
      "value_iteration": ((m["rewards"], m["transitions"], np.float32(0.9)),
                          dict(num_iterations=50)),
      "soft_value_iteration": ((m["rewards"], m["transitions"], np.float32(0.9),
                                np.float32(0.5), _logp(S, A)), dict(num_iterations=50)),
      "backward_messages": ((m["rewards"], m["transitions"], T, np.float32(0.5), _logp(S, A)),
                            dict(optimistic=True)),
      "forward_messages": ((m["rewards"], m["transitions"], m["initial"], T, np.float32(0.5),
                            _logp(S, A)), {}),
      "log_partition": ((m["rewards"], m["transitions"], m["initial"], T, np.float32(0.5),
                         _logp(S, A)), {}),
      "state_action_marginals": ((m["rewards"], m["transitions"], m["initial"], T,
                                  np.float32(0.5), _logp(S, A)), dict(optimistic=False)),
      # estimators
      "snis_weights": ((_f(K, N),), dict(axis=-1)),
      "effective_sample_size": ((_f(K, N),), {}),
      "iwae_bound": ((_f(N),), {}),
      "elbo": ((_f(N),), {}),
      "trajectory_log_weights": ((_f(T), _f(T), _f(T), np.float32(0.5)), {}),
      "leave_one_out_baseline": ((_f(N),), {}),
      "score_function_surrogate": ((_f(N), _f(N)), {}),
      # divergences
      "reverse_kl_loss": ((_f(N), _f(N), np.float32(0.5), _f(N)), {}),
      "forward_kl_loss": ((_f(N), _f(N), np.float32(0.5), _f(N), _f(N)), {}),
      "reverse_kl_score_loss": ((_f(N), _f(N), np.float32(0.5), _f(N)), {}),
      "categorical_reverse_kl_loss": ((_logp(A), _f(A), np.float32(0.5), _logp(A)), {}),
      "categorical_forward_kl_loss": ((_logp(A), _f(A), np.float32(0.5), _logp(A)), {}),
      "trajectory_forward_kl_loss": ((_f(N, T), _f(N, T), np.float32(0.5), _f(N, T)), {}),
      "marginal_forward_kl_loss": ((_f(S, N), _f(S, N), np.float32(0.5), _f(S, N), _f(S, N),
                                    _logp(S)), {}),
      "entropy_temperature_loss": ((np.float32(0.1), _f(N), np.float32(-1.0)), {}),
      "kl_temperature_loss": ((np.float32(0.1), _f(N), _f(N), np.float32(0.05)), {}),
      # kl_regularized
      "kl_regularized_pg_loss": ((_f(T), np.abs(_f(T)), _f(T), np.full(T, 0.9, np.float32),
                                  np.float32(0.1)), dict(baseline_t=_f(T))),
      "stable_em_loss": ((_f(N), _f(N), _f(N), np.float32(0.5)), {}),
      "swap_prior": (({"w": _f(2, 3)}, {"w": _f(2, 3)}, np.int32(4)), dict(period=2)),
      # mpo_ops
      "mpo_e_step": ((_f(N), np.float32(1.5), np.float32(0.1)), {}),
      "mpo_m_step_loss": ((_f(N), _probs(N)), {}),
      "lagrange_penalty": ((np.abs(_f(D)), np.abs(_f(D)), np.float32(0.01)), {}),
      "project_multiplier": ((_f(D),), {}),
      "mpo_loss": ((_f(N), _f(N), np.float32(1.5), np.float32(0.1)),
                   dict(kl_constraints=((np.float32(0.02), np.float32(1.0), np.float32(0.01)),))),
      # virel_ops
      "virel_temperature": ((_f(N), np.float32(0.1)), {}),
      "virel_actor_loss": ((_f(N), _f(N), np.float32(0.3)), {}),
      "virel_critic_loss": ((np.float32(0.5), np.float32(1.0), np.float32(0.9), np.float32(0.2)), {}),
      # distributions
      "tanh_log_det_jacobian": ((_f(D),), {}),
      "decoupled_gaussian_kl": ((_f(D), np.abs(_f(D)) + 0.1, _f(D), np.abs(_f(D)) + 0.1), {}),
      "decoupled_gaussian_log_prob": ((_f(N, D), _f(D), np.abs(_f(D)) + 0.1, _f(D),
                                       np.abs(_f(D)) + 0.1), {}),
      # options
      "option_transition_log_probs": ((np.int32(1), opts[2][1], opts[3][1]), {}),
      "options_log_likelihood": (opts, {}),
      "options_joint_log_prob": (opts + (o_t,), {}),
      "option_posterior": (opts, {}),
      "option_posterior_chain": (opts, {}),
      "options_elbo": (opts + (o_t, _logp(T, O)[:, 0]), {}),
      "option_chain_log_probs": ((o_t, _f(O), _f(T, O, O)), {}),
      "sample_option": ((_key(), np.int32(1), opts[2][1], opts[3][1]), {}),
      "sample_options": ((_key(),) + opts[1:], {}),
      "sample_option_chain": ((_key(), _f(O), _f(T, O, O)), {}),
      "options_augmented_rewards": ((_f(T), np.abs(_f(T)), o_t, _logp(T, O), _logp(T, O)[:, 0],
                                     np.float32(0.5)), {}),
      "options_bound_surrogate": ((_f(K, T), _f(K, T), _f(K, T)), {}),
      "options_iwae_surrogate": ((_f(K), _f(K)), {}),
      # irl
      "linear_rewards": ((_f(D), _f(S, A, D)), {}),
      "maxent_irl_loss": ((m["rewards"], m["transitions"], m["initial"], T, _demo_counts(),
                           np.float32(0.5)), {}),
      "maxent_irl_gradient": ((m["rewards"], m["transitions"], m["initial"], T, _demo_counts(),
                               np.float32(0.5)), dict(causal=False)),
      "soft_optimal_log_policy": ((m["rewards"], m["transitions"], T, np.float32(0.5)), {}),
  }
  return c


CASES = _cases()

# Public names that are not functions of arrays, and where their NumPy inputs are tested.
NOT_ARRAY_FUNCTIONS = {
    "validate_mdp": "host-side NumPy check by design (tests/rlax_inf/test_messages.py)",
    "IRLFit": "a NamedTuple of results",
    "MPOExtra": "a NamedTuple of results",
    "OptionStep": "a NamedTuple of results",
}
# Higher-order functions: their array inputs are NumPy in the cases below.
HIGHER_ORDER = ("pathwise_gradient", "score_function_gradient", "gradient_variance",
                "maxent_irl_fit", "kl_divergence", "sample_option_and_action", "TanhGaussian")


# Modules whose functions take an environment and a policy, not arrays alone; their
# own tests build env states. Not covered here.
ENV_ROLLOUT_MODULES = ("rlax_inf.rollout_gradients",)


def _public_names():
  names = []
  for n in dir(rlax_inf):
    obj = getattr(rlax_inf, n)
    if n.startswith("_") or not callable(obj) or inspect.ismodule(obj):
      continue
    if getattr(inspect.getmodule(obj), "__name__", "") not in ENV_ROLLOUT_MODULES:
      names.append(n)
  return sorted(names)


def _to_jnp(tree):
  return jax.tree_util.tree_map(
      lambda x: jnp.asarray(x) if isinstance(x, (np.ndarray, np.generic)) else x, tree)


def _assert_same(got, want):
  got_leaves, got_def = jax.tree_util.tree_flatten(got)
  want_leaves, want_def = jax.tree_util.tree_flatten(want)
  assert got_def == want_def
  for g, w in zip(got_leaves, want_leaves):
    assert jnp.shape(g) == jnp.shape(w) and jnp.result_type(g) == jnp.result_type(w)
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6, atol=1e-6)


def test_every_public_function_has_a_case():
  covered = set(CASES) | set(NOT_ARRAY_FUNCTIONS) | set(HIGHER_ORDER)
  assert set(_public_names()) - covered == set(), "public functions without a NumPy case"
  assert set(CASES) - set(_public_names()) == set(), "cases of names that are not public"


@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_inputs_give_the_jnp_result(name):
  fn = getattr(rlax_inf, name)
  args, kwargs = CASES[name]
  got = fn(*args, **kwargs)
  want = fn(*_to_jnp(args), **_to_jnp(kwargs))
  _assert_same(got, want)
  # A meaningful case: no NaN (masked actions may be -inf).
  assert not any(np.any(np.isnan(np.asarray(x))) for x in jax.tree_util.tree_leaves(want)
                 if jnp.issubdtype(jnp.result_type(x), jnp.floating))


@pytest.mark.slow  # ~40 CPU s eagerly (scans and vmaps op by op); under `make test-slow`
def test_higher_order_functions_take_numpy_arrays():
  key = _key()
  params = {"loc": _f(D)}

  def cost_fn(p, k):
    return jnp.sum((p["loc"] + jax.random.normal(k, (D,))) ** 2)

  for p in (params, _to_jnp(params)):
    _assert_same(rlax_inf.pathwise_gradient(cost_fn, p, key, 4),
                 rlax_inf.pathwise_gradient(cost_fn, _to_jnp(params), jnp.asarray(key), 4))

  def sample_fn(p, k, n):
    return p["loc"] + jax.random.normal(k, (n, D))

  def log_prob_fn(p, x):
    return -0.5 * jnp.sum((x - p["loc"]) ** 2, -1)

  def cost(x):
    return jnp.sum(x ** 2, -1)

  _assert_same(rlax_inf.score_function_gradient(sample_fn, log_prob_fn, cost, params, key, 4),
               rlax_inf.score_function_gradient(sample_fn, log_prob_fn, cost, _to_jnp(params),
                                                jnp.asarray(key), 4))
  keys = np.asarray(jax.random.split(jax.random.PRNGKey(1), 3))
  grad_fn = lambda p, k: rlax_inf.pathwise_gradient(cost_fn, p, k, 2)[1]
  _assert_same(rlax_inf.gradient_variance(grad_fn, params, keys),
               rlax_inf.gradient_variance(grad_fn, _to_jnp(params), jnp.asarray(keys)))

  m = _mdp()
  counts = _demo_counts()
  fit_args = (lambda r: r, m["rewards"], optax.sgd(0.1), 3, m["transitions"], m["initial"], T,
              counts)
  _assert_same(rlax_inf.maxent_irl_fit(*fit_args), rlax_inf.maxent_irl_fit(*_to_jnp(fit_args)))

  loc, scale = _f(O, D), np.abs(_f(O, D)) + 0.1
  dist_np = rlax_inf.TanhGaussian(loc, scale)
  dist_j = rlax_inf.TanhGaussian(jnp.asarray(loc), jnp.asarray(scale))
  x = np.tanh(_f(O, D)) * 0.9
  _assert_same(dist_np.log_prob(x), dist_j.log_prob(jnp.asarray(x)))
  other = rlax_inf.TanhGaussian(loc + 0.5, scale)
  _assert_same(rlax_inf.kl_divergence(dist_np, other),
               rlax_inf.kl_divergence(dist_j, rlax_inf.TanhGaussian(jnp.asarray(loc) + 0.5,
                                                                   jnp.asarray(scale))))
  cat_np = distrax.Categorical(logits=_f(O, A))
  cat_j = distrax.Categorical(logits=jnp.asarray(cat_np.logits))
  o_args = (np.int32(1), _probs(O), _logp(O))
  _assert_same(rlax_inf.sample_option_and_action(key, *o_args, cat_np),
               rlax_inf.sample_option_and_action(jnp.asarray(key), *_to_jnp(o_args), cat_j))
