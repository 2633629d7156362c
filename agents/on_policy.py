"""The on-policy loop: T-step rollouts, then epochs of minibatch updates.

Per iteration, for one seed (brax.training's PPO layout):

  roll out T = `agent.needs.sequence_length` steps on `num_envs` envs with the
  current policy → a `Transition` batch [num_envs, T, ...] (batch-major;
  `next_obs[t]` is the true next observation, so an agent bootstraps at the cut
  t = T − 1 and at time-limit truncations, and `terminated` / `done` say where
  episodes end) → `observe` the rollout's observations → `num_epochs` epochs,
  each a fresh shuffle of the rollouts into `num_minibatches` minibatches of
  num_envs / num_minibatches whole rollouts, one `update` per minibatch.

A recurrent agent's per-env carry (`base.Agent.initial_carry`, e.g. the option
being executed) goes from step to step and from rollout to rollout in
`TrainState.carry`, reset where an episode ends (`acting.next_carry`).

An evaluation interval is `interval_iterations` iterations in one compiled
program, then the shared evaluation (`acting.evaluate`).
"""

import dataclasses
import math
from typing import Any, Dict, Tuple

import flax.struct
import jax
import jax.numpy as jnp

from rlax_inf.agents import acting
from rlax_inf.agents import base


@flax.struct.dataclass
class TrainState:
  """Per-seed state of an on-policy run: agent, envs, PRNG key and counters."""

  agent: Any
  env_state: Any  # envs.State batched over num_envs
  key: jnp.ndarray
  env_steps: jnp.ndarray  # [] int32 transitions collected (this seed)
  evaluations: jnp.ndarray  # [] int32 intervals completed
  carry: Any = None  # a recurrent agent's per-env carry (`base.Agent.initial_carry`), else None


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Static loop sizes: rollouts per interval (of T vector steps each) and intervals."""

  interval_iterations: int
  rollout_length: int
  num_intervals: int
  prefill_vector_steps: int = 0

  @property
  def interval_vector_steps(self) -> int:
    return self.interval_iterations * self.rollout_length


def schedule(config, rollout_length: int) -> Schedule:
  if config.num_envs % config.num_minibatches:
    raise ValueError(f"num_envs={config.num_envs} must be divisible by "
                     f"num_minibatches={config.num_minibatches}")
  per_rollout = config.num_envs * rollout_length
  iterations = max(config.eval_every // per_rollout, 1)
  num_intervals = max(math.ceil(config.total_steps / (iterations * per_rollout)), 1)
  return Schedule(iterations, rollout_length, num_intervals)


class Loop:
  """The on-policy programs of one seed for `agent` on `env` (see the module doc)."""

  def __init__(self, config, env, agent: base.Agent):
    # The seed vmap of `training.Trainer` folds into the env batch (acting.SeedFoldedEnv).
    self.config, self.env, self.agent = config, acting.SeedFoldedEnv(env), agent
    self.schedule = schedule(config, agent.needs.sequence_length)

  def init(self, key: jax.Array) -> TrainState:
    k_agent, k_env, k_loop = jax.random.split(key, 3)
    env_state = acting.batch_reset(self.env, jax.random.split(k_env, self.config.num_envs))
    carry = (None if self.agent.initial_carry is None
             else self.agent.initial_carry(self.config.num_envs))
    return TrainState(agent=self.agent.init(k_agent), env_state=env_state, key=k_loop,
                      env_steps=jnp.zeros((), jnp.int32), evaluations=jnp.zeros((), jnp.int32),
                      carry=carry)

  def _rollout(self, agent_state, env_state, carry, key):
    params = self.agent.policy_params(agent_state)

    def step(state_and_carry, k):
      env_state, carry = state_and_carry
      env_state, t = acting.env_step(self.env, self.agent, params, env_state, k, carry=carry)
      return (env_state, acting.next_carry(self.agent, t.extras, t.done)), t

    (env_state, carry), rollout = jax.lax.scan(
        step, (env_state, carry), jax.random.split(key, self.schedule.rollout_length))
    return env_state, carry, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), rollout)  # [N, T]

  def _epochs(self, agent_state, rollout, key):
    cfg = self.config
    m = cfg.num_minibatches

    def epoch(agent_state, k):
      k_perm, k_updates = jax.random.split(k)
      perm = jax.random.permutation(k_perm, cfg.num_envs)
      minibatches = jax.tree.map(
          lambda x: jnp.reshape(x[perm], (m, cfg.num_envs // m) + x.shape[1:]), rollout)
      return jax.lax.scan(lambda s, xs: self.agent.update(s, *xs), agent_state,
                          (minibatches, jax.random.split(k_updates, m)))

    agent_state, metrics = jax.lax.scan(epoch, agent_state,
                                        jax.random.split(key, cfg.num_epochs))
    return agent_state, jax.tree.map(jnp.mean, metrics)

  def interval(self, ts: TrainState) -> Tuple[TrainState, Dict[str, jax.Array]]:
    """One evaluation interval for one seed: rollouts + updates, then evaluate."""
    cfg, sch = self.config, self.schedule
    key, k_iters, k_eval = jax.random.split(ts.key, 3)

    def iteration(carry, k):
      agent_state, env_state, agent_carry = carry
      k_roll, k_epochs = jax.random.split(k)
      env_state, agent_carry, rollout = self._rollout(agent_state, env_state, agent_carry,
                                                      k_roll)
      agent_state = self.agent.observe(
          agent_state, jnp.reshape(rollout.obs, (-1,) + rollout.obs.shape[2:]))
      agent_state, metrics = self._epochs(agent_state, rollout, k_epochs)
      return (agent_state, env_state, agent_carry), metrics

    (agent_state, env_state, agent_carry), metrics = jax.lax.scan(
        iteration, (ts.agent, ts.env_state, ts.carry),
        jax.random.split(k_iters, sch.interval_iterations))
    metrics = jax.tree.map(jnp.mean, metrics)
    metrics["train_return"] = acting.train_return(env_state)
    metrics.update(acting.evaluate(self.env, self.agent, agent_state, k_eval,
                                   cfg.num_eval_envs, cfg.eval_stochastic))
    ts = ts.replace(agent=agent_state, env_state=env_state, key=key,
                    env_steps=ts.env_steps + sch.interval_vector_steps * cfg.num_envs,
                    evaluations=ts.evaluations + 1, carry=agent_carry)
    return ts, metrics
