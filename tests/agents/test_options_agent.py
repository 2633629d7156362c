"""The options agent: its update against the equations written out, the option carry."""

import dataclasses
import functools
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlax_inf import envs
from rlax_inf.agents import acting
from rlax_inf.agents import base
from rlax_inf.agents import on_policy
from rlax_inf.agents import options
from rlax_inf.agents import training
from reference_nets import mlp as _mlp  # pylint: disable=g-bad-import-order

OBS, B, T, O = 3, 3, 5, 3
DISCRETE = types.SimpleNamespace(name="d", observation_size=OBS, action_size=3, discrete=True)
CONTINUOUS = types.SimpleNamespace(name="c", observation_size=OBS, action_size=2,
                                   discrete=False)
# A truncation after t = 1 and a termination after t = 3 (rollout 0), a termination at
# the cut (rollout 1), nothing inside (rollout 2).
TERMINATED = np.array([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], np.float32)
DONE = np.array([[0, 1, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], np.float32)
CONFIGS = {  # (discrete?, config): one compilation each
    "discrete": (True, options.OptionsConfig(
        num_options=O, hidden=(8,), temperature=0.3, reward_scale=2.0, max_grad_norm=None,
        continue_bias=0.5, policy_lr=1e-2, reverse_lr=3e-2, value_lr=2e-2)),
    "continuous, +H": (False, options.OptionsConfig(
        num_options=O, hidden=(8,), temperature=0.2, max_grad_norm=None, reverse_model=False,
        discount=0.9, td_lambda=0.7, max_importance_weight=1.5)),
    "continuous, mean-field q, uniform selection": (False, options.OptionsConfig(
        num_options=O, hidden=(8,), temperature=0.5, max_grad_norm=None,
        reverse_previous_option=False, learn_selection=False, learn_continuation=False,
        reverse_lr=1e-2)),
}
# The information term (β > 0) on the discrete agent; q(o|s) learned from it alone or not.
INFO_CONFIGS = {
    "info term": options.OptionsConfig(
        num_options=O, hidden=(8,), temperature=0.3, max_grad_norm=None, continue_bias=0.5,
        info_weight=2.5, normalize_observations=False),
    "info term, selection from it alone": options.OptionsConfig(
        num_options=O, hidden=(8,), temperature=0.3, max_grad_norm=None, continue_bias=0.5,
        info_weight=2.5, info_selection=0.4, learn_continuation=False,
        normalize_observations=False),
}


@functools.lru_cache(maxsize=None)
def _agent(cfg, discrete):
  agent = options.make(cfg, DISCRETE if discrete else CONTINUOUS)
  return (agent, jax.jit(agent.init), jax.jit(agent.update),
          jax.jit(functools.partial(_rollout, agent)))


def _rollout(agent, state, key):
  """A [B, T] batch acted by the agent with its carry (reset after DONE), behaviour perturbed."""
  ks = jax.random.split(key, 5)
  obs = jax.random.normal(ks[0], (B, T + 1, OBS))
  params = agent.policy_params(state)

  def step(carry, xs):
    o, k, done = xs
    action, extras = agent.act(params, o, k, False, carry)
    return acting.next_carry(agent, extras, done), (action, extras)

  # Rollout 2 starts inside an episode (option 1 running), the others at a first step.
  carry0 = jnp.array([-1, -1, 1], jnp.int32)
  _, (action, extras) = jax.lax.scan(
      step, carry0, (jnp.swapaxes(obs[:, :T], 0, 1), jax.random.split(ks[1], T),
                     jnp.asarray(DONE.T)))
  swap = lambda x: jnp.swapaxes(x, 0, 1)
  action, extras = swap(action), jax.tree.map(swap, extras)
  extras["log_prob"] = extras["log_prob"] + 0.3 * jax.random.normal(ks[2], (B, T))
  next_obs = obs[:, 1:].at[0, 1].set(jax.random.normal(ks[3], (OBS,)))  # truncation
  return base.Transition(obs=obs[:, :T], action=action, reward=jax.random.normal(ks[4], (B, T)),
                         terminated=jnp.asarray(TERMINATED), done=jnp.asarray(DONE),
                         next_obs=next_obs, extras=extras)


def _reference_loss(cfg, spec, state, batch):
  """The module docstring's policy loss with hand-written nets (no rlax_inf calls).

  Returns (loss(actor, reverse, info) -> (−surrogate, (y, info term [B, T])), V(s_t, o_{t−1})).
  """
  n_a = spec.action_size
  per = n_a if spec.discrete else 2 * n_a
  tau, g, lam = cfg.temperature, cfg.discount, cfg.td_lambda
  obs, nobs = batch.obs, batch.next_obs  # fresh normaliser: the identity
  o, prev = batch.extras["option"], batch.extras["prev_option"]
  first = prev < 0
  one_hot = lambda i, n: (i[..., None] == jnp.arange(n)).astype(jnp.float32)
  v_idx = jnp.where(first, O, prev)
  v = jnp.sum(_mlp(state.value, obs) * one_hot(v_idx, O + 1), -1)
  vn = jnp.sum(_mlp(state.value, nobs) * one_hot(o, O + 1), -1)
  r = cfg.reward_scale * batch.reward

  def terms(actor, reverse, info):
    out = _mlp(actor, obs)
    intra = out[..., :O * per].reshape(B, T, O, per)
    sel = out[..., O * per:O * per + O] * (1.0 if cfg.learn_selection else 0.0)
    q_sel = jnp.exp(sel) / jnp.sum(jnp.exp(sel), -1, keepdims=True)
    q = jax.lax.stop_gradient(q_sel) if cfg.info_selection > 0 else q_sel
    c_logit = out[..., O * per + O:] * (1.0 if cfg.learn_continuation else 0.0)
    c = 1.0 / (1.0 + jnp.exp(-(c_logit + cfg.continue_bias)))
    c_prev = jnp.where(first, 0.0, jnp.sum(c * one_hot(jnp.maximum(prev, 0), O), -1))
    p_opt = c_prev[..., None] * one_hot(prev, O) + (1 - c_prev[..., None]) * q  # [B, T, O]
    lp_o = jnp.log(jnp.sum(p_opt * one_hot(o, O), -1))
    opt_term_none = jnp.sum(p_opt * jnp.log(p_opt), -1)  # −H(π(·|s, o_{t−1}))
    mine = jnp.sum(intra * one_hot(o, O)[..., None], -2)  # [B, T, per]
    if spec.discrete:
      log_p = mine - jnp.log(jnp.sum(jnp.exp(mine), -1, keepdims=True))
      lp_a = jnp.sum(log_p * one_hot(batch.action, n_a), -1)
      kl = jnp.sum(jnp.exp(log_p) * (log_p + math.log(n_a)), -1)
      a_feat = one_hot(batch.action, n_a)
    else:
      m, s = mine[..., :n_a], jnp.log1p(jnp.exp(mine[..., n_a:])) + 1e-3
      u = batch.extras["pre_tanh"]
      log_n = -0.5 * ((u - m) / s) ** 2 - jnp.log(s) - 0.5 * math.log(2 * math.pi)
      lp_a = jnp.sum(log_n - jnp.log(1.0 - jnp.tanh(u) ** 2), -1)
      kl = jnp.sum(-jnp.log(s) + (s ** 2 + m ** 2) / 2 - 0.5, -1)
      a_feat = batch.action
    if cfg.reverse_model:
      logits = _mlp(reverse, jnp.concatenate([obs, a_feat], -1)).reshape(B, T, O + 1, O)
      q_idx = v_idx if cfg.reverse_previous_option else jnp.full_like(v_idx, O)
      row = jnp.sum(logits * one_hot(q_idx, O + 1)[..., None], -2)
      log_q = jnp.sum((row - jnp.log(jnp.sum(jnp.exp(row), -1, keepdims=True)))
                      * one_hot(o, O), -1)
      opt_term = lp_o - log_q
    else:
      opt_term = opt_term_none
    b = r - tau * (kl + opt_term)
    # Information term: log q̃(o|s) − log p̂(o) − log O, p̂ the batch mean of π(o|s, o_prev).
    ls = _mlp(info, obs)
    log_qs = ls - jnp.log(jnp.sum(jnp.exp(ls), -1, keepdims=True))
    p_hat = jax.lax.stop_gradient(jnp.mean(p_opt, (0, 1)))
    info_t = jnp.sum((log_qs - jnp.log(p_hat)) * one_hot(o, O), -1) - math.log(O)
    if cfg.info_weight > 0:
      b = b + tau * cfg.info_weight * info_t
    # info_selection η: KL(q* ‖ q), q* ∝ (q̃(o|s) / p̂(o))^(1/η), the only gradient of q.
    eta = cfg.info_selection if cfg.info_selection > 0 else 1.0
    target = jax.lax.stop_gradient((jnp.exp(log_qs) / p_hat) ** (1.0 / eta))
    target = target / jnp.sum(target, -1, keepdims=True)
    sel_kl = jnp.mean(jnp.sum(target * (jnp.log(target) - jnp.log(q_sel)), -1))
    return lp_o + lp_a, b, info_t, sel_kl

  def loss(params):
    lp, b, info_t, sel_kl = terms(*params)
    bs = jax.lax.stop_gradient(b)
    ys, y_next = [], jnp.zeros(B)
    for t in reversed(range(T)):
      lam_t = 0.0 if t == T - 1 else lam * (1 - batch.done[:, t])  # the cut bootstraps
      y_next = bs[:, t] + g * (1 - batch.terminated[:, t]) * (
          (1 - lam_t) * vn[:, t] + lam_t * y_next)
      ys.insert(0, y_next)
    y = jnp.stack(ys, 1)
    adv = y - v
    rho = jnp.exp(jax.lax.stop_gradient(lp) - batch.extras["log_prob"])
    w = jnp.minimum(cfg.max_importance_weight, rho)
    sg = jax.lax.stop_gradient
    extra = tau * cfg.info_weight * sel_kl if cfg.info_selection > 0 else 0.0
    return -jnp.mean(sg(v + w * adv) + sg(w * adv) * (lp - sg(lp)) + (b - bs)) + extra, (y, info_t)

  return loss, v, v_idx


def _reference_update(cfg, spec, state, batch):
  """One Adam step of each optimiser on the reference losses."""
  loss, _, v_idx = _reference_loss(cfg, spec, state, batch)
  obs = batch.obs
  one_hot = lambda i, n: (i[..., None] == jnp.arange(n)).astype(jnp.float32)
  params = (state.actor, state.reverse, state.info)
  (p_loss, (y, _)), grads = jax.value_and_grad(loss, has_aux=True)(params)
  new = []
  for p, gr, lr in zip(params, grads, (cfg.policy_lr, cfg.reverse_lr, cfg.reverse_lr)):
    tx = optax.adam(lr)
    new.append(optax.apply_updates(p, tx.update(gr, tx.init(p))[0]))
  v_loss, gv = jax.value_and_grad(lambda p: 0.5 * jnp.mean(
      (jnp.sum(_mlp(p, obs) * one_hot(v_idx, O + 1), -1) - y) ** 2))(state.value)
  tx = optax.adam(cfg.value_lr)
  value = optax.apply_updates(state.value, tx.update(gv, tx.init(state.value))[0])
  return new[0], new[1], new[2], value, p_loss, v_loss


@pytest.mark.parametrize("case", list(CONFIGS))
def test_update_matches_reference(case):
  discrete, cfg = CONFIGS[case]
  spec = DISCRETE if discrete else CONTINUOUS
  _, init, update, rollout = _agent(cfg, discrete)
  state = init(jax.random.PRNGKey(0))
  batch = rollout(state, jax.random.PRNGKey(1))
  prev = np.asarray(batch.extras["prev_option"])
  assert (prev[:, 0] == [-1, -1, 1]).all() and (prev[0, 2] == -1) and (prev[0, 4] == -1)
  assert (prev[2] >= 0).all()  # rollout 2 runs on inside one episode
  new, metrics = update(state, batch, jax.random.PRNGKey(2))
  actor, reverse, info, value, p_loss, v_loss = jax.jit(
      functools.partial(_reference_update, cfg, spec))(state, batch)
  tol = dict(rtol=2e-4, atol=2e-6)
  np.testing.assert_allclose(metrics["policy_loss"], p_loss, **tol)
  np.testing.assert_allclose(metrics["value_loss"], v_loss, **tol)
  for got, want in ((new.actor, actor), (new.value, value)) + (
      ((new.reverse, reverse),) if cfg.reverse_model else ()) + (
      ((new.info, info),) if cfg.info_weight > 0 else ()):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, **tol), got, want)
  if not cfg.reverse_model:  # no gradient reaches an unused reverse model
    jax.tree.map(np.testing.assert_array_equal, new.reverse, state.reverse)
  if cfg.info_weight == 0:  # nor the unused q̃(o|s)
    jax.tree.map(np.testing.assert_array_equal, new.info, state.info)
  assert 0.0 < float(metrics["importance_weight"]) < cfg.max_importance_weight


# --- the option carry ---------------------------------------------------------


def _fixed_heads_agent(continue_logit, spec=DISCRETE):
  """An agent whose heads ignore the state: q = softmax([1, 0, −1]), c = sigmoid(logit)."""
  cfg = options.OptionsConfig(num_options=O, hidden=(4,), continue_bias=continue_logit,
                              normalize_observations=False)
  agent = options.make(cfg, spec)
  state = agent.init(jax.random.PRNGKey(0))
  last = state.actor["params"]["Dense_1"]
  bias = jnp.zeros_like(last["bias"]).at[-2 * O:-O].set(jnp.array([1.0, 0.0, -1.0]))
  actor = {"params": dict(state.actor["params"], Dense_1=dict(
      kernel=jnp.zeros_like(last["kernel"]), bias=bias))}
  return agent, state.replace(actor=actor)


@pytest.mark.parametrize("continue_logit", [-40.0, 0.0, 40.0])
def test_option_carry_continues_or_reselects(continue_logit):
  """P(o_t = j | o_{t−1} = i) = c 1[j = i] + (1 − c) q_j, and o_1 ~ q at a first step."""
  agent, state = _fixed_heads_agent(continue_logit)
  n = 6000
  q = np.exp([1.0, 0.0, -1.0]) / np.exp([1.0, 0.0, -1.0]).sum()
  c = 1.0 / (1.0 + math.exp(-continue_logit))
  prev = jnp.asarray(np.repeat([-1, 0, 1, 2], n // 4), jnp.int32)
  obs = jax.random.normal(jax.random.PRNGKey(1), (n, OBS))
  _, extras = jax.jit(agent.act)(agent.policy_params(state), obs, jax.random.PRNGKey(2),
                                 False, prev)
  o = np.asarray(extras["option"])
  np.testing.assert_array_equal(extras["carry"], o)
  np.testing.assert_array_equal(extras["prev_option"], prev)
  for i in (-1, 0, 1, 2):
    want = q if i < 0 else c * (np.arange(O) == i) + (1 - c) * q
    got = np.bincount(o[np.asarray(prev) == i], minlength=O) / (n // 4)
    se = np.sqrt(want * (1 - want) / (n // 4))
    assert np.all(np.abs(got - want) <= 5 * se + 1e-12), (i, got, want)
  if c == 1.0:  # continuation 1 keeps every running option, always
    np.testing.assert_array_equal(o[np.asarray(prev) >= 0], np.asarray(prev)[np.asarray(prev) >= 0])


def test_the_loop_carries_the_option_and_resets_it_at_episode_ends():
  """On-policy rollouts on four rooms with c = 1: the option changes only at episode starts."""
  cfg = training.TrainConfig(env="four_rooms", num_envs=4, episode_length=6, num_eval_envs=2,
                             num_minibatches=1, num_epochs=1)
  env = training.make_env(cfg)
  agent, state = _fixed_heads_agent(40.0, env.spec)
  loop = on_policy.Loop(cfg, env, agent)
  ts = loop.init(jax.random.PRNGKey(3))
  np.testing.assert_array_equal(ts.carry, -1)
  rollout_fn = jax.jit(loop._rollout)  # pylint: disable=protected-access
  env_state, carry, r1 = rollout_fn(state, ts.env_state, ts.carry, jax.random.PRNGKey(4))
  _, _, r2 = rollout_fn(state, env_state, carry, jax.random.PRNGKey(5))
  np.testing.assert_array_equal(carry, r1.extras["option"][:, -1] * (1 - r1.done[:, -1])
                                - r1.done[:, -1].astype(jnp.int32))
  o = np.concatenate([r1.extras["option"], r2.extras["option"]], 1)
  prev = np.concatenate([r1.extras["prev_option"], r2.extras["prev_option"]], 1)
  done = np.concatenate([r1.done, r2.done], 1)
  first = np.concatenate([np.ones((4, 1), bool), done[:, :-1] > 0], 1)
  np.testing.assert_array_equal(prev < 0, first)  # the carry resets exactly after `done`
  np.testing.assert_array_equal(prev[:, 1:][~first[:, 1:]], o[:, :-1][~first[:, 1:]])
  np.testing.assert_array_equal(o[~first], prev[~first])  # c = 1: never switches
  assert first[:, 1:].any() and len(np.unique(o)) > 1  # episodes ended; options re-drawn


def test_the_off_policy_loop_refuses_a_recurrent_agent():
  agent, _ = _fixed_heads_agent(0.0)
  from rlax_inf.agents import off_policy  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="recurrent"):
    off_policy.Loop(training.TrainConfig(env="four_rooms"), envs.make("four_rooms"), agent)


@pytest.mark.parametrize("setting, field", [
    ("num_options=0", "num_options"), ("temperature=-1", "temperature"),
    ("reverse_lr=0", "reverse_lr"), ("discount=1.5", "discount"),
    ("info_weight=-0.5", "info_weight"), ("info_selection=0.5", "info_selection"),
    ("info_selection=-1", "info_selection"),
])
def test_cli_exits_2_with_one_line_on_a_bad_config(capsys, tmp_path, setting, field):
  from rlax_inf.agents import cli  # pylint: disable=g-import-not-at-top
  code = cli.main(["train", "--agent", "options", "--env", "four_rooms", "--out",
                   str(tmp_path / "run"), "--set", setting])
  err = [l for l in capsys.readouterr().err.strip().splitlines()
         if l.startswith("rlax-inf: error:")]
  assert code == 2 and len(err) == 1 and field in err[0], err


# --- the information term -----------------------------------------------------


@pytest.mark.parametrize("case", list(INFO_CONFIGS))
def test_information_term_value_and_gradient_match_the_reference(case):
  """β > 0: per-step term, loss and every parameter's gradient equal the hand-written ones."""
  cfg = INFO_CONFIGS[case]
  _, init, _, rollout = _agent(cfg, True)
  state = init(jax.random.PRNGKey(0))
  batch = rollout(state, jax.random.PRNGKey(1))
  _, _, (policy_loss, _, value_heads) = options.build(cfg, DISCRETE)
  v_tm1 = value_heads(state.value, batch.obs, batch.extras["prev_option"])
  v_t = value_heads(state.value, batch.next_obs, batch.extras["option"])
  params = (state.actor, state.reverse, state.info)
  (got_loss, aux), got = jax.jit(jax.value_and_grad(policy_loss, has_aux=True))(
      params, batch.obs, batch, v_tm1, v_t)
  loss, _, _ = _reference_loss(cfg, DISCRETE, state, batch)
  (want_loss, (_, info_t)), want = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(aux["info_reward"], jnp.mean(info_t), rtol=1e-5, atol=1e-6)
  for g, w in zip(got, want):  # actor, reverse model and q̃(o|s)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), g, w)
  info_grad = np.concatenate([np.ravel(x) for x in jax.tree.leaves(got[2])])
  assert np.abs(info_grad).max() > 1e-4  # q̃(o|s) learns (maximum likelihood of o_t)
  # Without the term the loss differs and q̃(o|s) gets no gradient.
  _, _, (plain_loss, _, _) = options.build(
      dataclasses.replace(cfg, info_weight=0.0, info_selection=0.0), DISCRETE)
  (base_loss, _), base_grads = jax.value_and_grad(plain_loss, has_aux=True)(
      params, batch.obs, batch, v_tm1, v_t)
  assert abs(float(base_loss) - float(got_loss)) > 1e-4
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(base_grads[2]))


def test_information_rewards_by_hand():
  """log q̃(o|s) − log p̂(o) − log O with p̂ the mean of π(o|·) over every step."""
  p_opt = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.25, 0.25], [0.2, 0.7, 0.1]])
  q = np.array([[0.9, 0.05, 0.05], [0.2, 0.2, 0.6], [0.6, 0.3, 0.1], [0.0, 1.0, 0.0]])
  o = np.array([0, 2, 1, 1])
  p_hat = p_opt.mean(0)
  want = np.log(q[np.arange(4), o]) - np.log(p_hat[o]) - np.log(3)
  with np.errstate(divide="ignore"):
    got = options.information_rewards(jnp.log(q.reshape(2, 2, 3)),
                                      jnp.log(p_opt.reshape(2, 2, 3)), jnp.asarray(o.reshape(2, 2)))
  np.testing.assert_allclose(np.ravel(got), want, rtol=1e-5)
  # One option used everywhere and identified by q̃: log 1 − log 1 − log O.
  one = jnp.log(jnp.array([[1.0, 0.0, 0.0]] * 4))
  np.testing.assert_allclose(options.information_rewards(one, one, jnp.zeros(4, jnp.int32)),
                             -np.log(3) * np.ones(4), rtol=1e-6)
