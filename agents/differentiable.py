"""The differentiable-simulation loop: policy gradients through the simulator in H-step windows.

Per iteration, for one seed (brax.training's APG; SHAC, Xu et al. 2022,
"Accelerated Policy Learning with Parallel Differentiable Simulation"):

  from the carried env states (gradient stopped: each window is its own
  problem), act and step `num_envs` envs H = `agent.needs.sequence_length`
  times with the current policy, a_t = π_θ(s_t, ε_t) + δ_t at δ = 0, and take
  the window objective

    J = Σ_envs Σ_{t<H} g_t [r_t + γ_t (1 − terminated_t) c_t V(s'_t)],
    g_0 = 1,   g_{t+1} = γ_t g_t (1 − done_t) + done_t,
    c_t = 1 where the window stops an episode that goes on (t = H − 1, or a
          time-limit truncation: done_t (1 − terminated_t)), else 0,

  (each episode segment discounted from its own start; s'_t the true next
  observation, `final_obs`), and its action adjoints λ_t = ∂J/∂δ_t, [N, H, A],
  in one reverse pass through the simulator. By the chain rule the policy
  gradient is

    dJ/dθ = Σ_{n,t} (∂π_θ(s_t, ε_t)/∂θ)ᵀ λ_t        (s_t, ε_t held fixed),

  so the agent's `update` gets the window's `Transition`s [N, H] with λ in
  `extras['return_grad']` and recovers dJ/dθ from its own network as the
  gradient of the surrogate Σ sg(λ_t)·π_θ(s_t, ε_t): the loop never sees the
  policy's parameters, and the agent never sees the simulator.

What a differentiable agent gives this loop through `act`'s extras ([N]-leading):
  'value':       V(obs), differentiable w.r.t. obs (zeros without a critic);
  'discount':    γ per env;
  'noise':       the reparameterisation noise ε_t (to recompute π_θ(s_t, ε_t));
  'return_grad': zeros shaped like the action, the slot the loop fills with λ.

Non-finite guard: when λ, J or the updated agent state has a non-finite value,
the update is skipped (the agent state is kept), the skip is counted
(`nonfinite_skips` in the interval metrics, the run's total in
`TrainState.nonfinite_skips`) and envs whose state went non-finite are reset.
The other metrics average over the updates that were kept.

The envs are stepped with `jax.vmap(env.step)` (`batch_step`'s reset loop is a
`lax.while_loop`, which reverse mode cannot differentiate). float64: run
under 64-bit JAX (`JAX_ENABLE_X64=1` in the environment, or inside
`with jax.enable_x64(True):`) with an agent built for it (`APGConfig.float64`).

An evaluation interval is `interval_iterations` windows in one compiled
program, then the shared evaluation (`acting.evaluate`).
"""

import math
from typing import Any, Dict, Tuple

import flax.struct
import jax
import jax.numpy as jnp

from rlax_inf.agents import acting
from rlax_inf.agents import base
from rlax_inf.agents import on_policy

#: The extras a differentiable agent's `act` must return (see the module doc).
REQUIRED_EXTRAS = ("value", "discount", "noise", "return_grad")


@flax.struct.dataclass
class TrainState:
  """Per-seed state of a differentiable-simulation run."""

  agent: Any
  env_state: Any  # envs.State batched over num_envs
  key: jnp.ndarray
  env_steps: jnp.ndarray  # [] int32 transitions collected (this seed)
  evaluations: jnp.ndarray  # [] int32 intervals completed
  nonfinite_skips: jnp.ndarray  # [] int32 updates skipped by the guard (whole run)


# The same static sizes as the on-policy loop: windows of H vector steps per interval.
Schedule = on_policy.Schedule


def schedule(config, horizon: int) -> Schedule:
  per_window = config.num_envs * horizon
  iterations = max(config.eval_every // per_window, 1)
  num_intervals = max(math.ceil(config.total_steps / (iterations * per_window)), 1)
  return Schedule(iterations, horizon, num_intervals)


def window_objective(reward, terminated, done, value, discount):
  """J of one window, time-major [H, N] inputs (see the module doc).

  Args:
    reward, terminated, done: r_t and the episode flags [H, N].
    value: V(s'_t) at the true next observations [H, N].
    discount: γ_t [H, N].

  Returns:
    J, a scalar: the discounted segment returns, bootstrapped with V where the
    window (or a time limit) cuts an episode, summed over steps and envs.
  """
  horizon = reward.shape[0]
  dtype = jnp.result_type(reward, terminated, done, value, discount)
  reward, terminated, done, value, discount = (
      jnp.asarray(x, dtype) for x in (reward, terminated, done, value, discount))

  def weight(g, xs):
    done_t, gamma_t = xs
    return gamma_t * g * (1.0 - done_t) + done_t, g

  _, g = jax.lax.scan(weight, jnp.ones_like(reward[0]), (done, discount))
  last = (jnp.arange(horizon) == horizon - 1)[:, None]
  cut = jnp.where(last, 1.0, done * (1.0 - terminated))
  bootstrap = discount * (1.0 - terminated) * cut * value
  return jnp.sum(jax.lax.stop_gradient(g) * (reward + bootstrap))


def _finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _finite_per_env(tree, n: int) -> jax.Array:
  """[n] whether every floating leaf of a batched pytree is finite for each env."""
  ok = jnp.ones((n,), bool)
  for x in jax.tree.leaves(tree):
    if jnp.issubdtype(x.dtype, jnp.inexact):
      ok &= jnp.all(jnp.isfinite(jnp.reshape(x, (n, -1))), axis=1)
  return ok


class Loop:
  """The differentiable-simulation programs of one seed (see the module doc).

  Raises:
    base.UnsupportedEnv: the env is not differentiable (`spec.differentiable`).
    ValueError: the agent's `act` lacks one of `REQUIRED_EXTRAS`, or is recurrent.
  """

  def __init__(self, config, env, agent: base.Agent):
    if not getattr(env.spec, "differentiable", False):
      raise base.UnsupportedEnv(
          f"the differentiable loop needs an env whose step is differentiable w.r.t. the "
          f"action; {env.spec.name!r} is not (envs.GRADIENT_NOTES)")
    if agent.initial_carry is not None:
      raise ValueError("the differentiable loop does not drive recurrent agents")
    self.config, self.env, self.agent = config, env, agent
    self.schedule = schedule(config, agent.needs.sequence_length)
    obs = jax.ShapeDtypeStruct((config.num_envs, env.spec.observation_size), jnp.float32)
    params = jax.eval_shape(lambda k: agent.policy_params(agent.init(k)),
                            jax.random.PRNGKey(0))
    extras = jax.eval_shape(lambda p, o: agent.act(p, o, jax.random.PRNGKey(0), False)[1],
                            params, obs)
    missing = [k for k in REQUIRED_EXTRAS if k not in extras]
    if missing:
      raise ValueError(f"the differentiable loop needs act's extras {list(REQUIRED_EXTRAS)}; "
                       f"the agent's act lacks {missing}")

  def init(self, key: jax.Array) -> TrainState:
    k_agent, k_env, k_loop = jax.random.split(key, 3)
    env_state = jax.vmap(self.env.reset)(jax.random.split(k_env, self.config.num_envs))
    zero = jnp.zeros((), jnp.int32)
    return TrainState(agent=self.agent.init(k_agent), env_state=env_state, key=k_loop,
                      env_steps=zero, evaluations=zero, nonfinite_skips=zero)

  def window(self, agent_state, env_state, key) -> Tuple[Any, base.Transition, jax.Array]:
    """One H-step window: (final env states, transitions [N, H] with λ, J).

    `extras['return_grad']` of the transitions holds λ_t = ∂J/∂a_t, [N, H, A].
    """
    params = self.agent.policy_params(agent_state)
    env_state = jax.lax.stop_gradient(env_state)
    horizon, n = self.schedule.rollout_length, self.config.num_envs
    keys = jax.random.split(key, horizon)
    step_env = jax.vmap(self.env.step)

    def unroll(delta):
      def step(state, xs):
        k, d = xs
        action, extras = self.agent.act(params, state.obs, k, False)
        next_state = step_env(state, action + d)
        return next_state, acting.transition(state, action, extras, next_state)

      final, traj = jax.lax.scan(step, env_state, (keys, delta))  # traj: [H, N, ...]
      next_obs = jnp.reshape(traj.next_obs, (horizon * n,) + traj.next_obs.shape[2:])
      _, next_extras = self.agent.act(params, next_obs, keys[0], True)
      value = jnp.reshape(next_extras["value"], (horizon, n))
      objective = window_objective(traj.reward, traj.terminated, traj.done, value,
                                   traj.extras["discount"])
      return objective, (final, traj)

    action_shape = jax.eval_shape(
        lambda: self.agent.act(params, env_state.obs, keys[0], False)[0])
    delta = jnp.zeros((horizon,) + action_shape.shape, action_shape.dtype)
    (objective, (final, traj)), adjoint = jax.value_and_grad(unroll, has_aux=True)(delta)
    traj = jax.lax.stop_gradient(traj)
    traj = traj.replace(extras=dict(traj.extras, return_grad=adjoint))
    batch = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), traj)  # [N, H]
    return jax.lax.stop_gradient(final), batch, jax.lax.stop_gradient(objective)

  def _reset_nonfinite(self, env_state, key):
    n = self.config.num_envs
    ok = _finite_per_env(env_state, n)
    fresh = jax.vmap(self.env.reset)(jax.random.split(key, n))

    def pick(old, new):
      return jnp.where(jnp.reshape(ok, (n,) + (1,) * (old.ndim - 1)), old, new)

    return jax.tree.map(pick, env_state, fresh), jnp.sum(~ok)

  def iteration(self, agent_state, env_state, key):
    """One window and one guarded update: (agent_state, env_state, metrics, kept)."""
    k_window, k_update, k_reset = jax.random.split(key, 3)
    env_state, batch, objective = self.window(agent_state, env_state, k_window)
    new_state, metrics = self.agent.update(agent_state, batch, k_update)
    obs = jnp.reshape(batch.obs, (-1,) + batch.obs.shape[2:])
    new_state = self.agent.observe(new_state, obs)
    kept = (_finite(batch.extras["return_grad"]) & jnp.isfinite(objective)
            & _finite(new_state))
    agent_state = jax.tree.map(lambda new, old: jnp.where(kept, new, old),
                               new_state, agent_state)
    env_state, num_reset = self._reset_nonfinite(env_state, k_reset)
    n, h = batch.reward.shape
    metrics = dict(metrics, window_objective=objective / (n * h),
                   nonfinite_env_resets=num_reset.astype(jnp.float32))
    return agent_state, env_state, metrics, kept

  def interval(self, ts: TrainState) -> Tuple[TrainState, Dict[str, jax.Array]]:
    """One evaluation interval for one seed: windows + guarded updates, then evaluate."""
    cfg, sch = self.config, self.schedule
    key, k_iters, k_eval = jax.random.split(ts.key, 3)

    def body(carry, k):
      agent_state, env_state = carry
      agent_state, env_state, metrics, kept = self.iteration(agent_state, env_state, k)
      return (agent_state, env_state), (metrics, kept)

    (agent_state, env_state), (metrics, kept) = jax.lax.scan(
        body, (ts.agent, ts.env_state), jax.random.split(k_iters, sch.interval_iterations))
    num_kept = jnp.sum(kept)
    resets = jnp.sum(metrics.pop("nonfinite_env_resets"))

    def kept_mean(x):  # the mean over the kept updates (0 if none was kept)
      x = jnp.where(kept, x, 0.0)
      return jnp.sum(x) / jnp.maximum(num_kept, 1)

    metrics = jax.tree.map(kept_mean, metrics)
    skips = (sch.interval_iterations - num_kept).astype(jnp.int32)
    metrics["nonfinite_skips"] = skips.astype(jnp.float32)
    metrics["nonfinite_env_resets"] = resets
    metrics["train_return"] = acting.train_return(env_state)
    metrics.update(acting.evaluate(self.env, self.agent, agent_state, k_eval,
                                   cfg.num_eval_envs, cfg.eval_stochastic))
    ts = ts.replace(agent=agent_state, env_state=env_state, key=key,
                    env_steps=ts.env_steps + sch.interval_vector_steps * cfg.num_envs,
                    evaluations=ts.evaluations + 1,
                    nonfinite_skips=ts.nonfinite_skips + skips)
    return ts, metrics
