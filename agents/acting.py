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


def act(agent: base.Agent, params: Any, obs: jax.Array, key: jax.Array,
        deterministic: Any = False, carry: Any = None) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """`agent.act`, given the per-env `carry` when the agent is recurrent (`initial_carry`)."""
  if agent.initial_carry is None:
    return agent.act(params, obs, key, deterministic)
  return agent.act(params, obs, key, deterministic, carry)


def next_carry(agent: base.Agent, extras: Dict[str, jax.Array], done: jax.Array) -> Any:
  """A recurrent agent's carry for the next step: `extras['carry']`, reset where `done`.

  Args:
    agent: the agent (None is returned for a feed-forward one).
    extras: what `act` returned for the [N] envs.
    done: [N] 1 where the step ended an episode (the next observation starts a new one).

  Returns:
    The carry, the initial one (`agent.initial_carry`) for the envs whose episode ended.
  """
  if agent.initial_carry is None:
    return None
  fresh = agent.initial_carry(done.shape[0])

  def reset(init, carried):
    d = jnp.reshape(done > 0, done.shape + (1,) * (carried.ndim - 1))
    return jnp.where(d, init, carried)

  return jax.tree.map(reset, fresh, extras["carry"])


def env_step(env: Any, agent: base.Agent, params: Any, env_state: Any, key: jax.Array,
             deterministic: Any = False, carry: Any = None) -> Tuple[Any, base.Transition]:
  """Act on every env of the batch, step them (auto-reset) and return the transitions.

  `carry` is a recurrent agent's per-env carry (see `base.Agent.initial_carry`);
  the next one is `next_carry(agent, transition.extras, transition.done)`.
  """
  action, extras = act(agent, params, env_state.obs, key, deterministic, carry)
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
  agent_carry = None if agent.initial_carry is None else agent.initial_carry(2 * num_envs)

  def body(carry, k):
    states, agent_carry, ret, length, finished = carry
    action, extras = act(agent, params, states.obs, k, deterministic, agent_carry)
    states = env.batch_step(states, action)
    agent_carry = next_carry(agent, extras, states.done)
    alive = 1.0 - finished
    return (states, agent_carry, ret + alive * states.reward, length + alive,
            jnp.maximum(finished, states.done)), None

  (_, _, ret, length, _), _ = jax.lax.scan(
      body, (states, agent_carry, zeros, zeros, zeros),
      jax.random.split(k_act, env.spec.episode_length))
  n = num_envs
  return dict(eval_return=jnp.mean(ret[:n]), eval_length=jnp.mean(length[:n]),
              eval_return_stochastic=jnp.mean(ret[n:]),
              eval_length_stochastic=jnp.mean(length[n:]))
