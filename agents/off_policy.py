"""The off-policy loop: replay of one-step transitions or length-T sequences.

Per evaluation interval, one compiled program does for each of
`interval_vector_steps` vector steps (brax.training's layout):

  act on `num_envs` envs → step them → insert the row of transitions into the
  ring buffer → fold the observations into the agent (`observe`) →
  `grad_updates_per_step` updates, each on `batch_size` transitions
  (`replay.sample`) or length-T sequences (`replay.sample_sequences`,
  T = `agent.needs.sequence_length`), in an inner `lax.scan`

and then the shared evaluation (`acting.evaluate`). The buffer is prefilled
with uniformly random actions from the env's action space (their `extras` are
zeros). Functions here handle one seed; `training.Trainer` vmaps and shards.
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

  def _collect(self, agent_state, replay, env_state, action, extras):
    next_state = self.env.batch_step(env_state, action)
    replay = replay_lib.insert(replay, acting.transition(env_state, action, extras, next_state))
    return self.agent.observe(agent_state, env_state.obs), replay, next_state

  def _sample(self, replay, key):
    b = self.config.batch_size
    if self.sequence_length == 1:
      return replay_lib.sample(replay, key, b)
    return replay_lib.sample_sequences(replay, key, b, self.sequence_length)

  def init(self, key: jax.Array) -> TrainState:
    """Agent, replay and envs for one seed, the buffer prefilled with random actions."""
    cfg, sch, env, agent = self.config, self.schedule, self.env, self.agent
    k_agent, k_env, k_prefill, k_loop = jax.random.split(key, 4)
    agent_state = agent.init(k_agent)
    env_state = acting.batch_reset(env, jax.random.split(k_env, cfg.num_envs))
    extras = acting.extras_like(agent, agent.policy_params(agent_state), env_state.obs)
    actions = base.random_actions(env.spec, k_prefill, cfg.num_envs)
    example = jax.tree.map(lambda x: x[0], acting.transition(
        env_state, actions, extras, env_state))
    replay = replay_lib.init(example, sch.replay_rows, cfg.num_envs)

    def prefill(carry, k):
      agent_state, replay, env_state = carry
      action = base.random_actions(env.spec, k, cfg.num_envs)
      return self._collect(agent_state, replay, env_state, action, extras), None

    (agent_state, replay, env_state), _ = jax.lax.scan(
        prefill, (agent_state, replay, env_state),
        jax.random.split(k_prefill, sch.prefill_vector_steps))
    return TrainState(agent=agent_state, replay=replay, env_state=env_state, key=k_loop,
                      env_steps=jnp.asarray(sch.prefill_vector_steps * cfg.num_envs, jnp.int32),
                      evaluations=jnp.zeros((), jnp.int32))

  def interval(self, ts: TrainState) -> Tuple[TrainState, Dict[str, jax.Array]]:
    """One evaluation interval for one seed: collect + learn, then evaluate."""
    cfg, sch, agent = self.config, self.schedule, self.agent
    key, k_steps, k_eval = jax.random.split(ts.key, 3)

    def vector_step(carry, k):
      agent_state, replay, env_state = carry
      k_act, k_updates = jax.random.split(k)
      action, extras = agent.act(agent.policy_params(agent_state), env_state.obs, k_act, False)
      agent_state, replay, env_state = self._collect(agent_state, replay, env_state, action,
                                                     extras)

      def grad_step(agent_state, k):
        k_sample, k_update = jax.random.split(k)
        return agent.update(agent_state, self._sample(replay, k_sample), k_update)

      agent_state, metrics = jax.lax.scan(
          grad_step, agent_state, jax.random.split(k_updates, cfg.grad_updates_per_step))
      return (agent_state, replay, env_state), jax.tree.map(jnp.mean, metrics)

    (agent_state, replay, env_state), metrics = jax.lax.scan(
        vector_step, (ts.agent, ts.replay, ts.env_state),
        jax.random.split(k_steps, sch.interval_vector_steps))
    metrics = jax.tree.map(jnp.mean, metrics)
    metrics["train_return"] = acting.train_return(env_state)
    metrics.update(acting.evaluate(self.env, agent, agent_state, k_eval, cfg.num_eval_envs))
    ts = ts.replace(agent=agent_state, replay=replay, env_state=env_state, key=key,
                    env_steps=ts.env_steps + sch.interval_vector_steps * cfg.num_envs,
                    evaluations=ts.evaluations + 1)
    return ts, metrics
