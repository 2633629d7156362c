"""Acting in a batch of environments: one vector step, and the shared evaluation.

Every loop collects experience through `env_step` and evaluates through
`evaluate`, so what a transition holds and how a policy is scored is the same
for every agent.
"""

import weakref
from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp

from rlax_inf.agents import base


def trace_once(fn: Callable[..., Any]) -> Callable[..., Any]:
  """`fn`, traced to a jaxpr once per argument signature and inlined at every call.

  The loops' scans and while_loops re-batch their bodies while they find which
  carries are batched, and each time they re-run `_fold_outer_vmap`'s rule: a
  Brax positional hopper step (~3 s of Python tracing) was traced 5 times for
  one evaluation. Replaying the cached jaxpr binds the same primitives without
  re-running the env's Python, so the program is the same as traced afresh
  (a nested `jax.jit` traced once too, but its run compiled slower: hopper
  Trainer.compile() 178 s against 159 s without, one run each). Hopper, 4 seeds:
  Trainer.compile() 159 s -> 140 s (benchmarks/results/time_to_solve.md).
  """
  cache: Dict[Any, Any] = {}

  def call(*args):
    leaves, in_tree = jax.tree.flatten(args)
    key = (in_tree, tuple(jax.typeof(x) for x in leaves))
    if key not in cache:
      closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
      if any(isinstance(c, jax.core.Tracer) for c in closed.consts):
        return fn(*args)  # closes over an outer trace's values: nothing to reuse
      cache[key] = (closed, jax.tree.structure(out_shape))
    closed, out_tree = cache[key]
    out = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *leaves)
    return jax.tree.unflatten(out_tree, out)

  return call


def _fold_outer_vmap(fn: Callable[..., Any]) -> Callable[..., Any]:
  """`fn` over a leading batch axis; under an outer `jax.vmap`, one call on the merged batch.

  `fn` must map pytrees whose every leaf has the same leading batch axis [B] to
  such pytrees (an env's `batch_step` or vmapped `reset`). Vmapped over S (the
  seed axis), the plain function becomes a doubly batched program; this one
  reshapes [S, B, ...] to [S·B, ...], calls `fn` once and splits the result
  back. Same values; on a 2-core CPU a Brax generalized step vmapped over 4
  seeds × 16 envs compiled in 21 s this way against 31 s doubly vmapped, and
  ran 200 steps in 0.79 s against 1.00 s (benchmarks/results/time_to_solve.md).
  Not differentiable (`jax.custom_batching.custom_vmap`): the loops never
  differentiate through the env.
  """
  folded = jax.custom_batching.custom_vmap(trace_once(fn))

  @folded.def_vmap
  def _rule(axis_size, in_batched, *args):
    args = [jax.tree.map(lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + x.shape),
                         a, batched) for a, batched in zip(args, in_batched)]
    merged = jax.tree.map(lambda x: jnp.reshape(x, (-1,) + x.shape[2:]), args)
    out = folded(*merged)
    out = jax.tree.map(lambda x: jnp.reshape(x, (axis_size, -1) + x.shape[1:]), out)
    return out, jax.tree.map(lambda _: True, out)

  return folded


@jax.custom_batching.custom_vmap
def any_seed(flag: jax.Array) -> jax.Array:
  """`flag` (a [] bool) of one seed; under the seed `vmap`, whether it holds for any seed.

  The loops bound their `while_loop`s with it. A bound that differs per seed
  makes `vmap` turn the loop into one with a batched predicate: every body runs
  for every seed under a select, and XLA:CPU then gave NaN update metrics at
  LLVM O0 (benchmarks/results/time_to_solve.md, "one env step per run"). With one
  unbatched bound per program the loops stay plain loops; the loops make the
  steps a seed runs past its own bound leave it unchanged, so each seed's
  results are those of its own run.
  """
  return flag


@any_seed.def_vmap
def _any_seed_rule(axis_size, in_batched, flag):
  del axis_size
  return (jnp.any(flag) if in_batched[0] else flag), False


#: env -> its one-env (step, reset), each traced once per argument signature.
_ONE_ENV_TRACED: "weakref.WeakKeyDictionary[Any, Tuple[Callable, Callable]]" = (
    weakref.WeakKeyDictionary())


def _one_env_traced_once(env: Any) -> Tuple[Callable[..., Any], Callable[..., Any]]:
  """`env.step` and `env.reset` of one env, traced once per process and reused.

  `_fold_outer_vmap` calls a batched function at two batch sizes (per seed when
  the seed `vmap` first traces it, seeds × envs in its rule), and the init,
  interval and evaluation programs each call it again: keyed on the batched
  shapes, `trace_once` ran the env's Python once per size and program. Inside
  `jax.vmap` the avals are one env's, so one trace of the one-env function
  serves every batch size and every program of the process (the same env object).
  """
  try:
    return _ONE_ENV_TRACED[env]
  except KeyError:
    pass
  except TypeError:  # not weakly referenceable: trace per SeedFoldedEnv
    return trace_once(env.step), trace_once(env.reset)
  traced = (trace_once(env.step), trace_once(env.reset))
  _ONE_ENV_TRACED[env] = traced
  return traced


def _steps_as_vmapped_step(env: Any) -> bool:
  """Whether `env.batch_step` is exactly `jax.vmap(env.step)` (`core.Environment`'s with
  cached resets; with fresh resets it resets only the ended envs, in its own loop)."""
  from rlax_inf.envs import core  # pylint: disable=g-import-not-at-top
  return (isinstance(env, core.Environment) and not env.fresh_resets
          and type(env).batch_step is core.Environment.batch_step)


class SeedFoldedEnv:
  """An env whose batched step and reset fold an outer seed `vmap` into the env batch.

  The loops act on `num_envs` envs per seed and `training.Trainer` vmaps them
  over seeds; through this wrapper the env runs as one batch of seeds × envs
  (`_fold_outer_vmap`). Everything else is the wrapped env's.
  """

  def __init__(self, env: Any):
    self.wrapped = env
    step, reset = _one_env_traced_once(env)
    if _steps_as_vmapped_step(env):
      self.batch_step = _fold_outer_vmap(jax.vmap(step))
    else:
      self.batch_step = _fold_outer_vmap(lambda state, action: env.batch_step(state, action))
    self.batch_reset = _fold_outer_vmap(jax.vmap(reset))

  def __getattr__(self, name: str) -> Any:
    return getattr(self.wrapped, name)


def batch_reset(env: Any, keys: jax.Array) -> Any:
  """Fresh states of len(keys) envs: `jax.vmap(env.reset)`, seed-folded when `env` is."""
  if isinstance(env, SeedFoldedEnv):
    return env.batch_reset(keys)
  return jax.vmap(env.reset)(keys)


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


#: Keys of `evaluate`'s metrics (the last two only with `stochastic`).
EVAL_KEYS = ("eval_return", "eval_length", "eval_return_stochastic", "eval_length_stochastic")


def eval_keys(stochastic: bool = True) -> Tuple[str, ...]:
  """The keys of `evaluate(..., stochastic=stochastic)`'s metrics."""
  return EVAL_KEYS if stochastic else EVAL_KEYS[:2]


def eval_env_count(num_envs: int, stochastic: bool = True) -> int:
  """Envs `evaluate(..., num_envs, stochastic)` steps: `num_envs` deterministic, and with
  `stochastic` as many sampling."""
  return (2 if stochastic else 1) * num_envs


def evaluate(env: Any, agent: base.Agent, agent_state: Any, key: jax.Array,
             num_envs: int, stochastic: bool = True) -> Dict[str, jax.Array]:
  """First-episode return and length on `num_envs` fresh envs, deterministic and stochastic.

  Steps until every env has ended its first episode or `episode_length` steps.

  One batch of 2 × num_envs envs: the first half acts deterministically
  (greedy / the mean action), the second samples from the policy. With
  `stochastic=False`, only the `num_envs` deterministic ones (as
  brax.training's evaluator): half the env steps, no `*_stochastic` metrics.
  """
  total = eval_env_count(num_envs, stochastic)
  k_reset, k_act = jax.random.split(key)
  states = batch_reset(env, jax.random.split(k_reset, total))
  deterministic = jnp.arange(total) < num_envs  # a mask (`base.select`)
  params = agent.policy_params(agent_state)
  zeros = jnp.zeros((total,), jnp.float32)
  agent_carry = None if agent.initial_carry is None else agent.initial_carry(total)

  keys = jax.random.split(k_act, env.spec.episode_length)

  # A while loop, not a scan over the whole episode length: it stops once every
  # env has finished its first episode, so the evaluations of policies that
  # still fail early cost a few steps instead of `episode_length`. Results are
  # those of the full-length scan (finished envs add nothing; same keys). The
  # bound is the same for every seed (`any_seed`): a seed whose envs have all
  # finished steps on unchanged until the last seed's have.
  def unfinished(carry):
    t, finished = carry[0], carry[-1]
    return any_seed((t < env.spec.episode_length) & jnp.logical_not(jnp.all(finished > 0)))

  def body(carry):
    t, states, agent_carry, ret, length, finished = carry
    action, extras = act(agent, params, states.obs, keys[t], deterministic, agent_carry)
    states = env.batch_step(states, action)
    agent_carry = next_carry(agent, extras, states.done)
    return (t + 1, states, agent_carry) + score(states, (ret, length, finished))

  _, _, _, ret, length, _ = jax.lax.while_loop(
      unfinished, body, (jnp.zeros((), jnp.int32), states, agent_carry, zeros, zeros, zeros))
  return eval_metrics(ret, length, num_envs, stochastic)


def score(states: Any, scores: Tuple[jax.Array, jax.Array, jax.Array]
          ) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """`evaluate`'s per-env (return, length, ended) of the first episode after one more step.

  `states` are the envs after the step; an env that has ended adds nothing.
  """
  ret, length, ended = scores
  alive = 1.0 - ended
  return ret + alive * states.reward, length + alive, jnp.maximum(ended, states.done)


def eval_metrics(ret: jax.Array, length: jax.Array, num_envs: int,
                 stochastic: bool = True) -> Dict[str, jax.Array]:
  """`evaluate`'s metrics from per-env first-episode returns and lengths: the first
  `num_envs` envs acted deterministically, the next `num_envs` (with `stochastic`) sampled."""
  n = num_envs
  out = dict(eval_return=jnp.mean(ret[:n]), eval_length=jnp.mean(length[:n]))
  if stochastic:
    out.update(eval_return_stochastic=jnp.mean(ret[n:2 * n]),
               eval_length_stochastic=jnp.mean(length[n:2 * n]))
  return out
