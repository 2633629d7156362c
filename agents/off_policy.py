"""The off-policy loop: replay of one-step transitions or length-T sequences.

A run is two programs: `init` (agent, an empty buffer, fresh envs; no env
step) and one evaluation interval, run again and again. The interval is one
`lax.while_loop` over vector steps, in phases that share one env step:

  prefill (the first interval only): act uniformly at random (`extras` are
    zeros) → step → insert the row of transitions into the ring buffer →
    fold the observations into the agent (`observe`);
  collect + learn, `interval_vector_steps` times: act with the policy → step →
    insert → observe → `grad_updates_per_step` updates, each on `batch_size`
    transitions (`replay.sample`) or length-T sequences
    (`replay.sample_sequences`, T = `agent.needs.sequence_length`);
  evaluate: the same env step on fresh eval envs until each has ended its
    first episode (or `episode_length` steps), the first `num_eval_envs`
    acting deterministically and, with `eval_stochastic`, the next
    `num_eval_envs` sampling (`acting.evaluate`'s scores).

brax.training runs the prefill and the evaluation as programs of their own,
each with its own copy of the env step; XLA compiles every copy (the env step
is most of a program's compile time on a CPU), so one copy makes the run's
start-up shorter (benchmarks/results/time_to_solve.md). The train and eval
envs then step as one batch of `slots` = max(num_envs, E) envs, where E is
2 · num_eval_envs (num_eval_envs without `eval_stochastic`); when those two
differ by more than 2× that would waste more than half of a step, and the
interval evaluates after its loop with `acting.evaluate` instead. The loops'
bounds are the same for every seed (`acting.any_seed`).
Functions here handle one seed; `training.Trainer` vmaps and shards.
"""

import dataclasses
import math
from typing import Any, Dict, Tuple

import flax.struct
import jax
import jax.numpy as jnp

from rlax_inf.agents import acting
from rlax_inf.agents import base
from rlax_inf.agents import replay as replay_lib


@flax.struct.dataclass
class TrainState:
  """Per-seed state of an off-policy run: agent, replay, envs, PRNG key and counters."""

  agent: Any
  replay: replay_lib.ReplayState
  env_state: Any  # envs.State batched over num_envs
  key: jnp.ndarray
  env_steps: jnp.ndarray  # [] int32 transitions collected (this seed)
  evaluations: jnp.ndarray  # [] int32 intervals completed


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Static loop sizes: vector steps of prefill and per interval, intervals, buffer rows."""

  prefill_vector_steps: int
  interval_vector_steps: int
  num_intervals: int
  replay_rows: int


def schedule(config, sequence_length: int = 1) -> Schedule:
  e = config.num_envs
  prefill = max(math.ceil(config.prefill_steps / e), math.ceil(config.batch_size / e),
                sequence_length, 1)
  interval = max(config.eval_every // e, 1)
  remaining = max(config.total_steps - prefill * e, 0)
  num_intervals = max(math.ceil(remaining / (interval * e)), 1)
  total_rows = prefill + num_intervals * interval
  rows = max(min(math.ceil(config.replay_size / e), total_rows), sequence_length)
  return Schedule(prefill, interval, num_intervals, rows)


def _where(flag: jax.Array, a: Any, b: Any) -> Any:
  """`a` where the scalar `flag`, else `b`, leaf by leaf (two pytrees of one structure)."""
  return jax.tree.map(lambda x, y: jnp.where(flag, x, y), a, b)


def _insert_unless(replay: replay_lib.ReplayState, row: Any,
                   skip: jax.Array) -> replay_lib.ReplayState:
  """`replay_lib.insert(replay, row)`, or `replay` unchanged where `skip` (O(row), not O(buffer))."""
  old = jax.tree.map(lambda buf: jax.lax.dynamic_index_in_dim(buf, replay.position, 0, False),
                     replay.data)
  new = replay_lib.insert(replay, _where(skip, old, row))
  return new.replace(position=jnp.where(skip, replay.position, new.position),
                     size=jnp.where(skip, replay.size, new.size))


def _first(tree: Any, n: int) -> Any:
  """The first `n` envs of a batched env state (or any pytree batched on axis 0)."""
  return jax.tree.map(lambda x: x[:n], tree)


class Loop:
  """The off-policy programs of one seed for `agent` on `env` (see the module doc)."""

  def __init__(self, config, env, agent: base.Agent):
    if agent.initial_carry is not None:
      raise ValueError("the off-policy loop does not carry a recurrent agent's state "
                       "(base.Agent.initial_carry); use the on-policy loop")
    # The seed vmap of `training.Trainer` folds into the env batch (acting.SeedFoldedEnv).
    self.config, self.env, self.agent = config, acting.SeedFoldedEnv(env), agent
    self.sequence_length = agent.needs.sequence_length
    self.schedule = schedule(config, self.sequence_length)
    n = config.num_envs
    e = acting.eval_env_count(config.num_eval_envs, config.eval_stochastic)
    #: Whether the interval's loop evaluates too, through its one env step (the module doc).
    self.evaluates_in_loop = max(n, e) <= 2 * min(n, e)
    #: Envs per seed that step in the loop (train and, when it evaluates, eval).
    self.slots = max(n, e) if self.evaluates_in_loop else n
    # The interval needs the updates' metric shapes before it traces the updates
    # in its loop: one trace of the agent's Python serves both (acting.trace_once).
    self._updates_once = acting.trace_once(self._updates)

  def _sample(self, replay, key):
    b = self.config.batch_size
    if self.sequence_length == 1:
      return replay_lib.sample(replay, key, b)
    return replay_lib.sample_sequences(replay, key, b, self.sequence_length)

  def _extras(self, agent_state, obs):
    return acting.extras_like(self.agent, self.agent.policy_params(agent_state), obs)

  def init(self, key: jax.Array) -> TrainState:
    """Agent, an empty buffer and `slots` fresh envs for one seed (the first interval prefills)."""
    cfg, sch, env, agent = self.config, self.schedule, self.env, self.agent
    k_agent, k_env, k_action, k_loop = jax.random.split(key, 4)
    agent_state = agent.init(k_agent)
    env_state = acting.batch_reset(env, jax.random.split(k_env, self.slots))
    first = _first(env_state, cfg.num_envs)
    row = acting.transition(first, base.random_actions(env.spec, k_action, cfg.num_envs),
                            self._extras(agent_state, first.obs), first)
    replay = replay_lib.init(jax.tree.map(lambda x: x[0], row), sch.replay_rows, cfg.num_envs)
    return TrainState(agent=agent_state, replay=replay, env_state=env_state, key=k_loop,
                      env_steps=jnp.zeros((), jnp.int32), evaluations=jnp.zeros((), jnp.int32))

  def _updates(self, agent_state, replay, key):
    """`grad_updates_per_step` updates; the metrics are their means."""
    def grad_step(agent_state, k):
      k_sample, k_update = jax.random.split(k)
      return self.agent.update(agent_state, self._sample(replay, k_sample), k_update)

    agent_state, metrics = jax.lax.scan(
        grad_step, agent_state, jax.random.split(key, self.config.grad_updates_per_step))
    return agent_state, jax.tree.map(jnp.mean, metrics)

  def interval(self, ts: TrainState) -> Tuple[TrainState, Dict[str, jax.Array]]:
    """One evaluation interval for one seed: (prefill +) collect + learn, then evaluate."""
    cfg, sch, agent, env = self.config, self.schedule, self.agent, self.env
    n, slots, num_eval = cfg.num_envs, self.slots, cfg.num_eval_envs
    e = acting.eval_env_count(num_eval, cfg.eval_stochastic)
    key, k_steps, k_eval = jax.random.split(ts.key, 3)
    # Bounds of the phases, in vector steps; the same for every seed (acting.any_seed).
    prefill = jnp.where(acting.any_seed(ts.env_steps == 0), sch.prefill_vector_steps, 0)
    collect = prefill + sch.interval_vector_steps
    in_loop = self.evaluates_in_loop
    # acting.evaluate's keys: with slots == e the evaluation in the loop is
    # acting.evaluate's (tests/agents/test_training.py).
    k_reset, k_act_eval = jax.random.split(k_eval)
    eval_env = eval_keys = None
    if in_loop:
      resets = jax.random.split(k_reset, e)
      eval_env = acting.batch_reset(env, resets[jnp.arange(slots) % e])
      eval_keys = jax.random.split(k_act_eval, env.spec.episode_length)
    deterministic = jnp.arange(slots) < num_eval
    zero_extras = self._extras(ts.agent, _first(ts.env_state, n).obs)
    # The metrics of a vector step without updates, and the start of their sums.
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
        self._updates_once, ts.agent, ts.replay, k_steps)[1])
    # Per slot: return and length of its first eval episode, and whether it has
    # ended (slots past the e eval envs count as ended).
    scores = (jnp.zeros((slots,)), jnp.zeros((slots,)),
              (jnp.arange(slots) >= e).astype(jnp.float32))

    def going(carry):
      t, ended = carry[0], carry[-1][2]
      if not in_loop:
        return t < collect
      evaluating = acting.any_seed(jnp.logical_not(jnp.all(ended > 0)))
      return (t < collect) | ((t < collect + env.spec.episode_length) & evaluating)

    def body(carry):
      t, agent_state, sums, replay, train_env, eval_env, scores = carry
      is_prefill, is_eval = t < prefill, t >= collect  # is_eval: only when in_loop
      k_act, k_random, k_learn = jax.random.split(jax.random.fold_in(k_steps, t), 3)
      states = train_env
      if in_loop:
        states = _where(is_eval, eval_env, train_env)
        k_act = jnp.where(is_eval, eval_keys[jnp.clip(t - collect, 0, len(eval_keys) - 1)],
                          k_act)
      action, extras = agent.act(agent.policy_params(agent_state), states.obs, k_act,
                                 is_eval & deterministic)
      action = jnp.where(is_prefill, base.random_actions(env.spec, k_random, slots), action)
      next_state = env.batch_step(states, action)

      # No `lax.cond` around the buffer: a branch that passes it through makes XLA
      # copy it at every step (intervals ~1.5x slower); the insert is masked
      # instead, at the cost of one row.
      row = acting.transition(_first(states, n), action[:n],
                              _where(is_prefill, zero_extras, _first(extras, n)),
                              _first(next_state, n))
      replay = _insert_unless(replay, row, is_eval)
      observed = agent.observe(agent_state, states.obs[:n])
      agent_state = observed if not in_loop else _where(is_eval, agent_state, observed)
      # The same flag for every seed (acting.any_seed), so a branch, not a select.
      agent_state, metrics = jax.lax.cond(
          is_prefill | is_eval, lambda st: (st, zeros),
          lambda st: self._updates_once(st, replay, k_learn), agent_state)
      sums = jax.tree.map(jnp.add, sums, metrics)
      if not in_loop:
        return t + 1, agent_state, sums, replay, next_state, eval_env, scores
      scores = _where(is_eval, acting.score(next_state, scores), scores)
      return (t + 1, agent_state, sums, replay, _where(is_eval, train_env, next_state),
              _where(is_eval, next_state, eval_env), scores)

    _, agent_state, sums, replay, env_state, _, (ret, length, _) = jax.lax.while_loop(
        going, body, (jnp.zeros((), jnp.int32), ts.agent, zeros, ts.replay, ts.env_state,
                      eval_env, scores))
    metrics = jax.tree.map(lambda s: s / sch.interval_vector_steps, sums)
    metrics["train_return"] = acting.train_return(_first(env_state, n))
    if in_loop:
      metrics.update(acting.eval_metrics(ret, length, num_eval, cfg.eval_stochastic))
    else:
      metrics.update(acting.evaluate(env, agent, agent_state, k_eval, num_eval,
                                     cfg.eval_stochastic))
    ts = ts.replace(agent=agent_state, replay=replay, env_state=env_state, key=key,
                    env_steps=ts.env_steps + collect * n, evaluations=ts.evaluations + 1)
    return ts, metrics
