"""Vectorised off-policy training: one compiled program per evaluation interval.

The whole run for one seed is a pure function of a PRNG key (PureJaxRL); the
seed axis is `jax.vmap`-ed and sharded over devices with `jax.shard_map`, so S
independent seeds (own keys, buffers, normalisers, parameters) train in one
program. Per evaluation interval the compiled program does, for each of
`interval_steps` vector steps (brax.training's layout):

  act on `num_envs` envs → step them → insert the transitions into the ring
  buffer → fold the observations into the normaliser → `grad_updates_per_step`
  gradient updates on uniformly sampled batches (an inner `lax.scan`)

and then runs the deterministic and the stochastic evaluation episodes. The
host sees metrics once per interval. The train state is donated, so the replay
buffer is updated in place.

Seed i of a run uses the key `jax.random.PRNGKey(config.seed + i)`: seed i of a
vmapped run equals a single run with `seed = config.seed + i`.
"""

import dataclasses
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from rlax_inf import envs
from rlax_inf.agents import replay as replay_lib
from rlax_inf.agents import sac

AGENTS = {"sac": sac.SAC, "sac-fkl": sac.SAC_FKL}

#: Keys of the per-interval metrics (besides step, seed, wall_s).
EVAL_KEYS = ("eval_return", "eval_length", "eval_return_stochastic", "eval_length_stochastic")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train: environment, seeds, budget and the loop's schedule.

  `total_steps`, `prefill_steps`, `eval_every` count environment transitions
  per seed (agent steps × `num_envs`). `grad_updates_per_step` counts gradient
  updates per vector step of `num_envs` envs (brax.training's convention).
  """

  env: str = "inverted_pendulum"
  backend: Optional[str] = None
  num_seeds: int = 1
  seed: int = 0
  total_steps: int = 50_000
  num_envs: int = 64
  batch_size: int = 256
  grad_updates_per_step: int = 16
  replay_size: int = 1_000_000
  prefill_steps: int = 8192
  eval_every: int = 5_000
  num_eval_envs: int = 16
  episode_length: int = 1000
  action_repeat: int = 1
  fresh_resets: bool = True  # False: Brax's cached initial state per env (cheaper step)
  checkpoint_every: int = 1  # evaluations between checkpoints
  num_devices: int = 0  # 0: as many as divide num_seeds

  def __post_init__(self):
    for name in ("num_seeds", "total_steps", "num_envs", "batch_size", "eval_every",
                 "num_eval_envs", "episode_length", "action_repeat", "checkpoint_every"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.grad_updates_per_step < 0 or self.prefill_steps < 0:
      raise ValueError("grad_updates_per_step and prefill_steps must be >= 0")


@flax.struct.dataclass
class TrainState:
  """Per-seed state of a run: agent, replay, envs, PRNG key and counters."""

  agent: Any
  replay: replay_lib.ReplayState
  env_state: Any  # envs.State batched over num_envs
  key: jnp.ndarray
  env_steps: jnp.ndarray  # [] int32 transitions collected (this seed)
  evaluations: jnp.ndarray  # [] int32 intervals completed


def make_env(config: TrainConfig):
  """The environment of `config` (`rlax_inf.envs.make`)."""
  return envs.make(config.env, backend=config.backend,
                   episode_length=config.episode_length, action_repeat=config.action_repeat,
                   fresh_resets=config.fresh_resets)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Static loop sizes derived from a `TrainConfig`."""

  prefill_vector_steps: int
  interval_vector_steps: int
  num_intervals: int
  replay_capacity: int

  @property
  def prefill_env_steps(self):
    return self.prefill_vector_steps


def schedule(config: TrainConfig) -> Schedule:
  e = config.num_envs
  prefill = max(math.ceil(config.prefill_steps / e), math.ceil(config.batch_size / e), 1)
  interval = max(config.eval_every // e, 1)
  remaining = max(config.total_steps - prefill * e, 0)
  num_intervals = max(math.ceil(remaining / (interval * e)), 1)
  total = (prefill + num_intervals * interval) * e
  capacity = max(min(config.replay_size, total), e)
  return Schedule(prefill, interval, num_intervals, capacity)


def default_devices(config: TrainConfig) -> list:
  """The devices the seed axis is sharded over, the same on every process.

  One process: the first `num_devices` of `jax.devices()`, by default as many as
  divide `num_seeds`. Several processes (`jax.distributed`): every process runs
  every program, so the mesh takes the same number k of local devices from each
  (k · process_count devices in all, process order), by default the largest k
  for which that divides `num_seeds`.
  """
  procs, local = jax.process_count(), jax.local_device_count()
  if procs == 1:
    n = config.num_devices or max(d for d in range(1, local + 1) if config.num_seeds % d == 0)
    return jax.devices()[:n]
  if config.num_devices:
    if config.num_devices % procs or config.num_devices > procs * local:
      raise ValueError(f"num_devices={config.num_devices} must be a multiple of the "
                       f"{procs} processes and at most {procs * local}")
    k = config.num_devices // procs
  else:
    fits = [k for k in range(1, local + 1) if config.num_seeds % (k * procs) == 0]
    if not fits:
      raise ValueError(f"num_seeds={config.num_seeds} is not divisible by the {procs} "
                       "processes; use a multiple of the process count")
    k = max(fits)
  by_process = {}
  for d in jax.devices():
    by_process.setdefault(d.process_index, []).append(d)
  return [d for p in sorted(by_process) for d in by_process[p][:k]]


class Trainer:
  """Compiled programs of a run (init, one interval + evaluation, evaluation).

  Args:
    config: the `TrainConfig`.
    agent_config: the agent's config (e.g. `sac.SACConfig`); the default of
      `agent` when None.
    agent: an `Agent` tuple or a registry name ("sac", "sac-fkl").
    env: an environment; built from `config` when None.
    devices: devices to shard the seed axis over; by default
      `default_devices(config)`.
  """

  def __init__(self, config: TrainConfig, agent_config: Any = None, agent: Any = "sac",
               env: Any = None, devices: Optional[Sequence[Any]] = None):
    self.config = config
    self.agent = AGENTS[agent] if isinstance(agent, str) else agent
    self.agent_config = self.agent.config if agent_config is None else agent_config
    self.env = make_env(config) if env is None else env
    if getattr(self.env, "discrete", False):
      raise ValueError(f"{self.agent.name} needs a continuous action space; "
                       f"{config.env!r} is discrete")
    self.schedule = schedule(config)
    devices = default_devices(config) if devices is None else list(devices)
    if config.num_seeds % len(devices):
      raise ValueError(f"num_seeds={config.num_seeds} is not divisible by "
                       f"{len(devices)} devices")
    self.mesh = Mesh(np.asarray(devices), ("seed",))
    self.sharding = NamedSharding(self.mesh, P("seed"))
    self.init = self._program(self._init_seed, donate=False)
    self.run_interval = self._program(self._interval_seed, donate=True)
    self.evaluate = self._program(self._evaluate_seed, donate=False)

  # --- building blocks (one seed) ----------------------------------------

  def _scale(self, action):
    lo, hi = self.env.action_low, self.env.action_high
    return lo + (action + 1.0) * 0.5 * (hi - lo)

  def _env_step(self, env_state, action):
    # = jax.vmap(self.env.step), but fresh resets only for the envs that finished.
    return self.env.batch_step(env_state, self._scale(action))

  def _collect(self, agent_state, replay, env_state, action):
    next_state = self._env_step(env_state, action)
    transition = replay_lib.Transition(
        obs=env_state.obs, action=action, reward=next_state.reward,
        terminated=next_state.terminated, next_obs=next_state.final_obs)
    replay = replay_lib.insert(replay, transition)
    agent_state = self.agent.observe(agent_state, env_state.obs)
    return agent_state, replay, next_state

  def _init_seed(self, key):
    """Agent, replay and envs for one seed, with the buffer prefilled by uniform actions."""
    cfg, sch = self.config, self.schedule
    k_agent, k_env, k_prefill, k_loop = jax.random.split(key, 4)
    agent_state = self.agent.init(k_agent, self.env, self.agent_config)
    env_state = jax.vmap(self.env.reset)(jax.random.split(k_env, cfg.num_envs))
    example = replay_lib.Transition(
        obs=env_state.obs[0], action=jnp.zeros((self.env.action_size,), jnp.float32),
        reward=env_state.reward[0], terminated=env_state.terminated[0],
        next_obs=env_state.obs[0])
    replay = replay_lib.init(example, sch.replay_capacity)

    def prefill(carry, k):
      agent_state, replay, env_state = carry
      action = jax.random.uniform(k, (cfg.num_envs, self.env.action_size), jnp.float32,
                                  -1.0, 1.0)
      return self._collect(agent_state, replay, env_state, action), None

    (agent_state, replay, env_state), _ = jax.lax.scan(
        prefill, (agent_state, replay, env_state),
        jax.random.split(k_prefill, sch.prefill_vector_steps))
    return TrainState(agent=agent_state, replay=replay, env_state=env_state, key=k_loop,
                      env_steps=jnp.asarray(sch.prefill_vector_steps * cfg.num_envs, jnp.int32),
                      evaluations=jnp.zeros((), jnp.int32))

  def _interval_seed(self, ts: TrainState) -> Tuple[TrainState, Dict[str, jax.Array]]:
    """One evaluation interval for one seed: collect + learn, then evaluate."""
    cfg, sch = self.config, self.schedule
    key, k_steps, k_eval = jax.random.split(ts.key, 3)

    def vector_step(carry, k):
      agent_state, replay, env_state = carry
      k_act, k_sample = jax.random.split(k)
      action = self.agent.act(self.agent.policy_params(agent_state), env_state.obs, k_act,
                              False)
      agent_state, replay, env_state = self._collect(agent_state, replay, env_state, action)

      def grad_step(agent_state, k):
        return self.agent.update(agent_state, replay_lib.sample(replay, k, cfg.batch_size))

      agent_state, metrics = jax.lax.scan(
          grad_step, agent_state, jax.random.split(k_sample, cfg.grad_updates_per_step))
      return (agent_state, replay, env_state), jax.tree.map(jnp.mean, metrics)

    (agent_state, replay, env_state), metrics = jax.lax.scan(
        vector_step, (ts.agent, ts.replay, ts.env_state),
        jax.random.split(k_steps, sch.interval_vector_steps))
    metrics = jax.tree.map(jnp.mean, metrics)
    m = env_state.metrics
    finished = m["episodes_completed"] > 0
    metrics["train_return"] = jnp.sum(jnp.where(finished, m["episode_return"], 0.0)) / (
        jnp.maximum(jnp.sum(finished), 1))
    metrics.update(self._evaluate_seed(agent_state, k_eval))
    ts = ts.replace(agent=agent_state, replay=replay, env_state=env_state, key=key,
                    env_steps=ts.env_steps + sch.interval_vector_steps * cfg.num_envs,
                    evaluations=ts.evaluations + 1)
    return ts, metrics

  def _evaluate_seed(self, agent_state, key) -> Dict[str, jax.Array]:
    """First-episode return and length on `num_eval_envs` envs, deterministic and stochastic."""
    n = self.config.num_eval_envs
    k_reset, k_act = jax.random.split(key)
    states = jax.vmap(self.env.reset)(jax.random.split(k_reset, 2 * n))
    deterministic = (jnp.arange(2 * n) < n)[:, None]
    params = self.agent.policy_params(agent_state)
    zeros = jnp.zeros((2 * n,), jnp.float32)

    def body(carry, k):
      states, ret, length, finished = carry
      action = self.agent.act(params, states.obs, k, deterministic)
      states = self._env_step(states, action)
      alive = 1.0 - finished
      return (states, ret + alive * states.reward, length + alive,
              jnp.maximum(finished, states.done)), None

    (_, ret, length, _), _ = jax.lax.scan(
        body, (states, zeros, zeros, zeros),
        jax.random.split(k_act, self.env.episode_length))
    return dict(eval_return=jnp.mean(ret[:n]), eval_length=jnp.mean(length[:n]),
                eval_return_stochastic=jnp.mean(ret[n:]),
                eval_length_stochastic=jnp.mean(length[n:]))

  # --- seeds × devices --------------------------------------------------

  def _program(self, fn, donate: bool):
    """vmap over seeds, shard the seed axis over the mesh, jit (donating arg 0).

    With one seed per device the vmap is left out (squeeze, run, expand).

    Seeds never communicate, so each device runs the vmapped program on its
    own slice; `check_vma=False` because per-seed zeros created inside (fresh
    buffers, reset metrics) are device-invariant until they meet seed data.
    """
    if self.config.num_seeds == self.mesh.size:
      # One seed per device: no seed axis to vectorise over. A size-1 vmap is
      # not free on XLA:CPU (about 11% of a SAC update, batched dots), so the
      # per-seed program runs on the squeezed block instead.
      def batched(*args):
        out = fn(*jax.tree.map(lambda x: x[0], args))
        return jax.tree.map(lambda x: x[None], out)
    else:
      batched = jax.vmap(fn)
    sharded = jax.shard_map(batched, mesh=self.mesh, in_specs=P("seed"),
                            out_specs=P("seed"), check_vma=False)
    return jax.jit(sharded, donate_argnums=(0,) if donate else ())

  def seed_keys(self) -> jax.Array:
    """Global [num_seeds, 2] array of keys PRNGKey(seed + i), sharded over seeds."""
    cfg = self.config
    keys = np.stack([np.asarray(jax.random.PRNGKey(cfg.seed + i))
                     for i in range(cfg.num_seeds)])
    return jax.make_array_from_callback(keys.shape, self.sharding, lambda idx: keys[idx])

  def abstract_state(self):
    """Shapes, dtypes and shardings of the train state (for checkpoint restore)."""
    shapes = jax.eval_shape(self.init, self.seed_keys())
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.sharding), shapes)


def to_host(tree):
  """Fetch a (possibly multi-process) seed-sharded pytree to numpy on every host."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def train(config: TrainConfig, agent: Any = "sac", agent_config: Any = None,
          env: Any = None) -> Tuple[TrainState, Dict[str, np.ndarray]]:
  """Train `config.num_seeds` seeds, no files, no progress bar (the library entry point).

  Returns:
    (final train state, metrics stacked over evaluations: each [num_intervals, S]).
  """
  trainer = Trainer(config, agent_config, agent, env)
  ts = trainer.init(trainer.seed_keys())
  history = []
  for _ in range(trainer.schedule.num_intervals):
    ts, metrics = trainer.run_interval(ts)
    history.append(metrics)
  history = to_host(history)
  return ts, {k: np.stack([h[k] for h in history]) for k in history[0]}
