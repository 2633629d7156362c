"""Acting in a batch of environments: one vector step, and the shared evaluation.

Every loop collects experience through `env_step` and evaluates through
`evaluate`, so what a transition holds and how a policy is scored is the same
for every agent.
"""

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp

from rlax_inf.agents import base


def transition(env_state, action, extras, next_state) -> base.Transition:
  """The transition (obs, action → reward, next_obs) one vector step produced."""
  return base.Transition(obs=env_state.obs, action=action, reward=next_state.reward,
                         terminated=next_state.terminated, done=next_state.done,
                         next_obs=next_state.final_obs, extras=extras)


def env_step(env: Any, agent: base.Agent, params: Any, env_state: Any, key: jax.Array,
             deterministic: Any = False) -> Tuple[Any, base.Transition]:
  """Act on every env of the batch, step them (auto-reset) and return the transitions."""
  action, extras = agent.act(params, env_state.obs, key, deterministic)
  next_state = env.batch_step(env_state, action)
  return next_state, transition(env_state, action, extras, next_state)


def extras_like(agent: base.Agent, params: Any, obs: jax.Array) -> Dict[str, jax.Array]:
  """Zeros shaped like the extras `agent.act` returns for `obs` (e.g. for random prefill)."""
  shapes = jax.eval_shape(lambda p, o: agent.act(p, o, jax.random.PRNGKey(0), False)[1],
                          params, obs)
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def train_return(env_state: Any) -> jax.Array:
  """Mean return of the last completed episode over the envs that completed one (else 0)."""
  m = env_state.metrics
  finished = m["episodes_completed"] > 0
  return jnp.sum(jnp.where(finished, m["episode_return"], 0.0)) / jnp.maximum(
      jnp.sum(finished), 1)


#: Keys of `evaluate`'s metrics.
EVAL_KEYS = ("eval_return", "eval_length", "eval_return_stochastic", "eval_length_stochastic")


def evaluate(env: Any, agent: base.Agent, agent_state: Any, key: jax.Array,
             num_envs: int) -> Dict[str, jax.Array]:
  """First-episode return and length on `num_envs` fresh envs, deterministic and stochastic.

  One batch of 2 × num_envs envs: the first half acts deterministically
  (greedy / the mean action), the second samples from the policy.
  """
  k_reset, k_act = jax.random.split(key)
  states = jax.vmap(env.reset)(jax.random.split(k_reset, 2 * num_envs))
  deterministic = jnp.arange(2 * num_envs) < num_envs  # a [2n] mask (`base.select`)
  params = agent.policy_params(agent_state)
  zeros = jnp.zeros((2 * num_envs,), jnp.float32)

  def body(carry, k):
    states, ret, length, finished = carry
    action, _ = agent.act(params, states.obs, k, deterministic)
    states = env.batch_step(states, action)
    alive = 1.0 - finished
    return (states, ret + alive * states.reward, length + alive,
            jnp.maximum(finished, states.done)), None

  (_, ret, length, _), _ = jax.lax.scan(
      body, (states, zeros, zeros, zeros), jax.random.split(k_act, env.spec.episode_length))
  n = num_envs
  return dict(eval_return=jnp.mean(ret[:n]), eval_length=jnp.mean(length[:n]),
              eval_return_stochastic=jnp.mean(ret[n:]),
              eval_length_stochastic=jnp.mean(length[n:]))
