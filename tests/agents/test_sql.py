"""Soft Q-learning: the update against a hand-written reference of the equations, rlax at τ = 0."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from rlax_inf.agents import base
from rlax_inf.agents import sql
from reference_nets import mlp as _mlp  # pylint: disable=g-bad-import-order

OBS, A, B, T = 3, 4, 6, 3
SPEC = types.SimpleNamespace(name="toy", observation_size=OBS, action_size=A, discrete=True)


def _log_prior(cfg):
  if cfg.prior_logits is None:
    return np.zeros(A)  # the counting measure: log 1
  logits = np.asarray(cfg.prior_logits, np.float64)
  return logits - np.log(np.sum(np.exp(logits)))


def _soft_v(q, tau, log_prior):
  return tau * np.log(np.sum(np.exp(q / tau + log_prior), -1))


def _log_pi(q, tau, log_prior):
  return q / tau + log_prior - _soft_v(q, tau, log_prior)[..., None] / tau


def _target(cfg, q_bar, tau, b):
  """Soft target of one transition or sequence, written as the explicit sum over the steps."""
  if cfg.n_step == 1:
    return (b.reward + cfg.discount * (1 - b.terminated) *
            _soft_v(_mlp(q_bar, b.next_obs), tau, _log_prior(cfg)))
  g, disc = 0.0, 1.0
  for i in range(cfg.n_step):
    g += disc * b.reward[i]
    q_next = _mlp(q_bar, b.next_obs[i])
    if b.done[i] or i == cfg.n_step - 1:
      return g + disc * cfg.discount * (1 - b.terminated[i]) * _soft_v(
          q_next, tau, _log_prior(cfg))
    disc *= cfg.discount * (1 - b.terminated[i])
    a = b.action[i + 1]  # taken at next_obs[i]; pays τ (log π̄ − log π0)
    g -= disc * tau * (_log_pi(q_next, tau, _log_prior(cfg))[a] - _log_prior(cfg)[a])
  raise AssertionError("unreachable")


def _np(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _sgd_step(params, obs, act, y, lr):
  """One Adam step (fresh state) on ½ mean_b (y_b − Q(s_b, a_b))², backpropagated by hand.

  Adam's first step is −lr · g / (|g| + ε): its bias corrections cancel.
  """
  layers = [params["params"][f"Dense_{i}"] for i in range(len(params["params"]))]
  xs, x = [], obs
  for i, layer in enumerate(layers):
    xs.append(x)
    x = x @ layer["kernel"] + layer["bias"]
    if i < len(layers) - 1:
      x = x * (x > 0)
  q_sa = x[np.arange(len(act)), act]
  loss = 0.5 * np.mean((y - q_sa) ** 2)
  grad = np.zeros_like(x)
  grad[np.arange(len(act)), act] = -(y - q_sa) / len(act)
  new = {}
  for i in reversed(range(len(layers))):
    g_kernel, g_bias = xs[i].T @ grad, grad.sum(0)
    grad = (grad @ layers[i]["kernel"].T) * (xs[i] > 0)
    new[f"Dense_{i}"] = {
        name: layers[i][name] - lr * g / (np.abs(g) + 1e-8)
        for name, g in (("kernel", g_kernel), ("bias", g_bias))}
  return loss, {"params": new}


def _reference_update(cfg, state, batch):
  """The soft Q-learning equations written out directly in float64 numpy (no rlax_inf)."""
  tau = float(np.exp(state.log_alpha))
  q_params, target_params = _np(state.q), _np(state.target_q)
  nb = _np(batch).replace(action=np.asarray(batch.action))
  items = [jax.tree.map(lambda x, i=i: x[i], nb) for i in range(B)]
  y = np.stack([_target(cfg, target_params, tau, b) for b in items])
  obs = nb.obs if cfg.n_step == 1 else nb.obs[:, 0]
  act = nb.action if cfg.n_step == 1 else nb.action[:, 0]
  q_loss, q = _sgd_step(q_params, obs, act, y, cfg.learning_rate)
  log_pi = _log_pi(_mlp(q_params, obs), tau, _log_prior(cfg))
  entropy = np.mean(-np.sum(np.where(np.isinf(log_pi), 0.0, np.exp(log_pi) * log_pi), -1))
  g_alpha = tau * (entropy - cfg.target_entropy_fraction * math.log(A))  # d/dlog τ
  log_alpha = float(state.log_alpha)
  if cfg.learn_temperature:
    log_alpha -= cfg.alpha_lr * g_alpha / (abs(g_alpha) + 1e-8)
  if cfg.target_update_period:
    target_q = q if cfg.target_update_period == 1 else target_params
  else:
    target_q = jax.tree.map(lambda t, o: (1 - cfg.polyak) * t + cfg.polyak * o,
                            target_params, q)
  return q_loss, q, target_q, log_alpha, entropy


def _batch(seed, n_step):
  """[B] transitions or [B, T] sequences with episode ends inside some sequences."""
  rng = np.random.default_rng(seed)
  shape = (B,) if n_step == 1 else (B, n_step)
  terminated = np.zeros(shape, np.float32)
  done = np.zeros(shape, np.float32)
  if n_step == 1:
    terminated[1] = done[1] = 1.0
    done[2] = 1.0  # a truncation: bootstraps
  else:
    done[1, 0] = 1.0  # truncated after the first step
    terminated[2, 1] = done[2, 1] = 1.0  # terminal inside
    terminated[3, -1] = done[3, -1] = 1.0  # terminal at the last step
    terminated[4, 0] = done[4, 0] = 1.0  # terminal at once
    done[5, 1] = 1.0  # truncated inside, new episode after it
  f32 = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
  return base.Transition(
      obs=f32(*shape, OBS), action=jnp.asarray(rng.integers(0, A, shape), jnp.int32),
      reward=f32(*shape), terminated=jnp.asarray(terminated), done=jnp.asarray(done),
      next_obs=f32(*shape, OBS))


def _perturbed_state(agent):
  """A fresh state whose target network differs from the online one (else Polyak is a no-op)."""

  def init(key):
    k_state, k_noise = jax.random.split(key)
    state, noise = agent.init(k_state), agent.init(k_noise).q
    return state.replace(target_q=jax.tree.map(lambda x, n: x + 0.3 * n, state.q, noise))

  return jax.jit(init)(jax.random.PRNGKey(0))


_CONFIGS = {
    "1step-tuned": sql.SQLConfig(hidden=(8,), temperature=0.7, learn_temperature=True,
                                 learning_rate=1e-2, alpha_lr=1e-2),
    "1step-prior-hard": sql.SQLConfig(hidden=(8,), temperature=0.5, discount=0.9,
                                      prior_logits=(0.0, 1.0, -1.0, 0.5),
                                      target_update_period=1),
    "nstep-tuned-prior-hard": sql.SQLConfig(hidden=(8,), temperature=0.3, n_step=T,
                                            discount=0.8, learn_temperature=True,
                                            learning_rate=1e-2,
                                            prior_logits=(0.0, 1.0, -1.0, 0.5),
                                            target_update_period=2),
}


@pytest.mark.parametrize("name", list(_CONFIGS))
def test_update_matches_reference(name):
  cfg = _CONFIGS[name]
  agent = sql.make(cfg, SPEC)
  state = _perturbed_state(agent)
  batch = _batch(2, cfg.n_step)
  new, metrics = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(3))
  q_loss, q, target_q, log_alpha, entropy = _reference_update(cfg, state, batch)
  np.testing.assert_allclose(metrics["q_loss"], q_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics["entropy"], entropy, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new.q, q)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               new.target_q, target_q)
  np.testing.assert_allclose(new.log_alpha, log_alpha, rtol=1e-6, atol=1e-7)
  assert cfg.learn_temperature == bool(new.log_alpha != state.log_alpha)
  assert int(new.steps) == 1
  # The contract: sequences of T = n_step for the loop; the state keeps its shapes and dtypes.
  assert agent.needs == base.Needs(base.OFF_POLICY, cfg.n_step, base.DISCRETE)
  spec = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), t)
  assert jax.tree.structure(new) == jax.tree.structure(state) and spec(new) == spec(state)
  assert {x.dtype for x in jax.tree.leaves(state)} == {jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}
  assert set(metrics) >= {"q_loss", "temperature", "entropy", "q_mean"}
  assert all(m.shape == () and np.isfinite(m) for m in metrics.values())


def test_temperature_zero_is_rlax_q_learning():
  cfg = sql.SQLConfig(hidden=(8,), temperature=0.0, discount=0.9)
  agent = sql.make(cfg, SPEC)
  state = _perturbed_state(agent)
  batch = _batch(4, 1)
  q_loss, _ = sql.make_losses(cfg, sql.networks.MLP(cfg.hidden, A), A)
  _, (td, q_s) = jax.jit(q_loss, static_argnums=2)(state.q, state.target_q, 0.0, batch)
  q_tm1 = _mlp(_np(state.q), np.asarray(batch.obs)).astype(np.float32)
  q_t = _mlp(_np(state.target_q), np.asarray(batch.next_obs)).astype(np.float32)
  expected = jax.jit(jax.vmap(rlax.q_learning))(
      q_tm1, batch.action, batch.reward, cfg.discount * (1 - batch.terminated), q_t)
  np.testing.assert_allclose(td, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(q_s, q_tm1, rtol=1e-5, atol=1e-6)
  new, metrics = jax.jit(agent.update)(state, batch, jax.random.PRNGKey(0))
  assert all(np.isfinite(v) for v in metrics.values())
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(new.q))


@pytest.mark.parametrize("regularizer", ["sampled", "expected"])
def test_n_step_target_by_hand(regularizer):
  """Q̄ a table on one-hot states (hidden=()), τ = 1, γ = 1/2: the returns worked out by hand."""
  table = np.array([[0.0, 0.0], [1.0, 0.0], [math.log(3.0), 0.0]], np.float32)  # Q̄[s, a]
  # V̄ = log Σ exp Q̄: V̄(0) = log 2, V̄(1) = log(e + 1), V̄(2) = log 4.
  spec = types.SimpleNamespace(name="toy", observation_size=3, action_size=2, discrete=True)
  cfg = sql.SQLConfig(hidden=(), temperature=1.0, discount=0.5, n_step=3,
                      n_step_regularizer=regularizer)
  q_loss, _ = sql.make_losses(cfg, sql.networks.MLP((), 2), 2)
  target_q = {"params": {"Dense_0": {"kernel": jnp.asarray(table), "bias": jnp.zeros(2)}}}
  zero_q = jax.tree.map(jnp.zeros_like, target_q)  # Q_θ = 0: δ = G[0]
  one_hot = lambda s: jax.nn.one_hot(jnp.asarray(s), 3)
  # Sequence 1: s0 -a0-> s1 (r=1) -a1-> s2 (r=2, truncated: done, not terminated) | new episode.
  # Sequence 2: s0 -a1-> s2 (r=1) -a0-> s1 (r=−1, terminated).
  # Sequence 3: no episode end: s1 -a1-> s2 (r=0) -a0-> s0 (r=1) -a1-> s1 (r=2).
  batch = base.Transition(
      obs=one_hot([[0, 1, 1], [0, 2, 0], [1, 2, 0]]),
      action=jnp.asarray([[0, 1, 0], [1, 0, 1], [1, 0, 1]], jnp.int32),
      reward=jnp.asarray([[1.0, 2.0, 5.0], [1.0, -1.0, 7.0], [0.0, 1.0, 2.0]]),
      terminated=jnp.asarray([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]),
      done=jnp.asarray([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]),
      next_obs=one_hot([[1, 2, 2], [2, 1, 1], [2, 0, 1]]))
  v = {0: math.log(2.0), 1: math.log(math.e + 1.0), 2: math.log(4.0)}
  if regularizer == "sampled":
    reg = lambda s, a: table[s, a] - v[s]  # τ log π̄(a|s), τ = 1, counting measure
  else:  # its mean under π̄: −H(π̄(·|s)), whatever the action
    p = lambda s: np.exp(table[s] - v[s])
    reg = lambda s, a: float(np.sum(p(s) * np.log(p(s))))
  expected = [
      # r0 + γ (r1 − reg(s1, a1)) + γ² V̄(s2): cut after step 1 (truncated, bootstraps).
      1.0 + 0.5 * (2.0 - reg(1, 1)) + 0.25 * v[2],
      # r0 + γ (r1 − reg(s2, a1)) and no bootstrap after the terminal.
      1.0 + 0.5 * (-1.0 - reg(2, 0)),
      # Three full steps, bootstrapping on V̄(s1).
      0.0 + 0.5 * (1.0 - reg(2, 0)) + 0.25 * (2.0 - reg(0, 1)) + 0.125 * v[1],
  ]
  _, (td, _) = jax.jit(q_loss, static_argnums=2)(zero_q, target_q, 1.0, batch)
  np.testing.assert_allclose(td, expected, rtol=1e-6)


def test_hidden_empty_is_a_table_on_one_hot_observations():
  spec = types.SimpleNamespace(name="toy", observation_size=5, action_size=3, discrete=True)
  agent = sql.make(sql.SQLConfig(hidden=()), spec)
  params = jax.jit(agent.init)(jax.random.PRNGKey(0)).q
  dense = params["params"]["Dense_0"]
  assert list(params["params"]) == ["Dense_0"] and dense["kernel"].shape == (5, 3)
  q = jax.jit(sql.networks.MLP((), 3).apply)(params, jnp.eye(5))
  np.testing.assert_allclose(q, dense["kernel"] + dense["bias"], rtol=1e-6)


def test_act_greedy_and_boltzmann_samples():
  prior_logits = (0.0, 0.0, -jnp.inf, 1.0)
  agent = sql.make(sql.SQLConfig(hidden=(8,), temperature=2.0, prior_logits=prior_logits),
                   SPEC)
  params = agent.policy_params(jax.jit(agent.init)(jax.random.PRNGKey(0)))
  obs = np.random.default_rng(1).normal(size=(2, OBS)).astype(np.float32)
  q = _mlp(_np(params.q), obs)
  act = jax.jit(agent.act)
  greedy, extras = act(params, obs, jax.random.PRNGKey(2), True)
  assert extras == {} and greedy.dtype == jnp.int32 and greedy.shape == (2,)
  np.testing.assert_array_equal(greedy, np.argmax(q, -1))
  n = 20_000
  many = np.repeat(obs, n, 0)
  sampled, _ = act(params, many, jax.random.PRNGKey(3), False)
  assert sampled.dtype == jnp.int32
  freq = np.stack([np.bincount(np.asarray(sampled[i * n:(i + 1) * n]), minlength=A) / n
                   for i in range(2)])
  probs = np.exp(_log_pi(q, 2.0, _log_prior(sql.SQLConfig(prior_logits=prior_logits))))
  assert freq[:, 2].max() == 0.0  # π0(2) = 0: never taken
  np.testing.assert_allclose(freq, probs, atol=4 * math.sqrt(0.25 / n))
  # A per-env mask: greedy where True.
  mask = np.arange(2 * n) % 2 == 0
  mixed, _ = act(params, many, jax.random.PRNGKey(4), mask)
  greedy_many = np.repeat(np.argmax(q, -1), n)
  np.testing.assert_array_equal(mixed[mask], greedy_many[mask])
  assert np.mean(mixed[~mask] != greedy_many[~mask]) > 0.1


def test_act_at_temperature_zero_is_greedy():
  # A linear Q (no dead ReLUs): no ties between actions, so "greedy" is one action.
  agent = sql.make(sql.SQLConfig(hidden=(), temperature=0.0), SPEC)
  params = agent.policy_params(jax.jit(agent.init)(jax.random.PRNGKey(0)))
  obs = np.random.default_rng(1).normal(size=(64, OBS)).astype(np.float32)
  sampled, _ = jax.jit(agent.act)(params, obs, jax.random.PRNGKey(2), False)
  np.testing.assert_array_equal(sampled, np.argmax(_mlp(_np(params.q), obs), -1))


def test_refuses_continuous_actions_and_bad_config():
  cont = types.SimpleNamespace(name="pendulum", observation_size=3, action_size=1,
                               discrete=False)
  with pytest.raises(base.UnsupportedEnv, match="discrete"):
    sql.make(sql.SQLConfig(), cont)
  with pytest.raises(ValueError, match="prior_logits"):
    sql.make(sql.SQLConfig(prior_logits=(0.0, 1.0)), SPEC)
  with pytest.raises(ValueError, match="n_step"):
    sql.SQLConfig(n_step=0)
  with pytest.raises(ValueError, match="n_step_regularizer"):
    sql.SQLConfig(n_step_regularizer="mean")
