"""Vectorised training of any registered agent: one compiled program per evaluation interval.

The whole run for one seed is a pure function of a PRNG key (PureJaxRL); the
seed axis is `jax.vmap`-ed and sharded over devices with `jax.shard_map`, so S
independent seeds (own keys, buffers, normalisers, parameters) train in one
program. Which loop runs is the agent's declaration (`agent.needs.loop`):
`off_policy.Loop` (replay of transitions or sequences), `on_policy.Loop`
(rollouts and minibatch epochs) or `differentiable.Loop` (windows
differentiated through the simulator). The host sees metrics once per interval; the
train state is donated, so buffers are updated in place.

Seed i of a run uses the key `jax.random.PRNGKey(config.seed + i)`: seed i of a
vmapped run equals a single run with `seed = config.seed + i`.
"""

import functools
import inspect
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from rlax_inf import envs
from rlax_inf.agents import acting
from rlax_inf.agents import base
from rlax_inf.agents import differentiable
from rlax_inf.agents import off_policy
from rlax_inf.agents import on_policy
from rlax_inf.agents import registry
from rlax_inf.agents.config import TrainConfig

#: Keys of the per-interval evaluation metrics (besides step, seed, wall_s).
EVAL_KEYS = acting.EVAL_KEYS
_LOOPS = {base.OFF_POLICY: off_policy.Loop, base.ON_POLICY: on_policy.Loop,
          base.DIFFERENTIABLE: differentiable.Loop}

#: XLA options the Trainer compiles with (`TrainConfig.fast_compile`, on by default)
#: where the installed XLA knows them and the run is on a CPU
#: (benchmarks/results/compile_profile_*.md): XLA:CPU's older (non-MLIR) fusion
#: emitters compile a Brax SAC run's programs in 0.7-0.8x the time; env rollouts
#: run ±11% and a 64x64 SAC update 10-25% slower. LLVM's optimisation level 1
#: (`XLA_FLAGS=--xla_backend_optimization_level=1`) compiles in a further ~0.66x and
#: is not a default: the main job's SAC-FKL ran 9% slower with it and ended with one
#: seed unsolved (time_to_solve.md, "Session 15").
#: An option also set in `XLA_FLAGS` is left to it.
FAST_COMPILE_OPTIONS = {"xla_cpu_use_fusion_emitters": False}

#: Added for programs a run calls once (`init`): LLVM's optimisation level 1
#: compiles them in less time (an SAC agent's init: 0.6 s against 4.1 s, most
#: of it the PRNG's threefry hashes) and their one call takes milliseconds
#: either way. Same outputs, bit for bit (tests/agents/test_training.py).
RUN_ONCE_COMPILE_OPTIONS = {"xla_backend_optimization_level": 1}


@functools.lru_cache(maxsize=None)
def _accepted(backend: str, name: str, value: Any) -> bool:
  """Whether this jaxlib's XLA for `backend` takes the compile option (unknown: an error)."""
  if "compiler_options" not in inspect.signature(jax.jit).parameters:  # older jax
    return False
  try:
    x = jax.device_put(np.float32(0), jax.devices(backend)[0])
    jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(x).compile()
  except Exception:  # pylint: disable=broad-except  # XLA's "No such compile option"
    return False
  return True


def default_compiler_options(platform: Optional[str] = None,
                             run_once: bool = False) -> Dict[str, Any]:
  """`FAST_COMPILE_OPTIONS` for programs on `platform` (default: JAX's default backend).

  With `run_once` (a program called once per run, such as `init`), also
  `RUN_ONCE_COMPILE_OPTIONS`. {} off a CPU; less the options the installed
  XLA does not know and those `XLA_FLAGS` sets.
  """
  platform = jax.default_backend() if platform is None else platform
  if platform != "cpu":
    return {}
  flags = os.environ.get("XLA_FLAGS", "")
  wanted = dict(FAST_COMPILE_OPTIONS, **(RUN_ONCE_COMPILE_OPTIONS if run_once else {}))
  return {k: v for k, v in wanted.items()
          if f"--{k}" not in flags and _accepted(platform, k, v)}


def make_env(config: TrainConfig):
  """The environment of `config` (`rlax_inf.envs.make`)."""
  return envs.make(config.env, backend=config.backend,
                   episode_length=config.episode_length, action_repeat=config.action_repeat,
                   fresh_resets=config.fresh_resets)


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


def env_steps_after(schedule: Any, num_envs: int, evaluations: int) -> int:
  """Env steps per seed done after `evaluations` intervals of a loop's `schedule`.

  The first interval also holds the prefill (`schedule.prefill_vector_steps`, 0 on-policy).
  """
  if evaluations <= 0:
    return 0
  return (schedule.prefill_vector_steps + evaluations * schedule.interval_vector_steps) * (
      num_envs)


class Trainer:
  """Compiled programs of a run (init, one interval + evaluation, evaluation).

  Args:
    config: the `TrainConfig`.
    agent_config: the agent's config; the registry's default for `agent` when None.
    agent: a registry name ("sac", "sql", ...).
    env: an environment; built from `config` when None.
    devices: devices to shard the seed axis over; by default
      `default_devices(config)`.
    compiler_options: XLA options for every program of the run; by default
      `default_compiler_options(platform of devices)` if `config.fast_compile`
      (faster compiling on a CPU; `init` with `run_once=True`), else {} (XLA's
      own).

  Raises:
    ValueError: unknown agent, an env the agent cannot serve (`base.UnsupportedEnv`),
      seeds that do not divide over the devices, a schedule that does not fit.
  """

  def __init__(self, config: TrainConfig, agent_config: Any = None, agent: str = "sac",
               env: Any = None, devices: Optional[Sequence[Any]] = None,
               compiler_options: Optional[Dict[str, Any]] = None):
    self.config = config
    self.entry = registry.get(agent)
    self.agent_config = self.entry.config if agent_config is None else agent_config
    self.env = make_env(config) if env is None else env
    self.agent = self.entry.make(self.agent_config, self.env.spec)
    self.loop = _LOOPS[self.agent.needs.loop](config, self.env, self.agent)
    self.schedule = self.loop.schedule
    devices = default_devices(config) if devices is None else list(devices)
    init_options = compiler_options
    if compiler_options is None and config.fast_compile:
      compiler_options = default_compiler_options(devices[0].platform)
      init_options = default_compiler_options(devices[0].platform, run_once=True)
    #: XLA options of the interval and evaluation programs; `init_compiler_options`: of init.
    self.compiler_options = dict(compiler_options or {})
    self.init_compiler_options = dict(init_options or {})
    if config.num_seeds % len(devices):
      raise ValueError(f"num_seeds={config.num_seeds} is not divisible by "
                       f"{len(devices)} devices")
    self.mesh = Mesh(np.asarray(devices), ("seed",))
    self.sharding = NamedSharding(self.mesh, P("seed"))
    self.init = self._program(self.loop.init, donate=False, options=self.init_compiler_options)
    self.run_interval = self._program(self.loop.interval, donate=True)
    self.evaluate = self._program(self._evaluate_seed, donate=False)

  @property
  def env_steps_per_interval(self) -> int:
    return self.schedule.interval_vector_steps * self.config.num_envs

  def env_steps_after(self, evaluations: int) -> int:
    """Env steps per seed done after `evaluations` intervals (the first one prefills)."""
    return env_steps_after(self.schedule, self.config.num_envs, evaluations)

  @property
  def total_env_steps(self) -> int:
    """Env steps per seed of the whole run (prefill and whole intervals included)."""
    return self.env_steps_after(self.schedule.num_intervals)

  def _evaluate_seed(self, agent_state, key) -> Dict[str, jax.Array]:
    return acting.evaluate(acting.SeedFoldedEnv(self.env), self.agent, agent_state, key,
                           self.config.num_eval_envs, self.config.eval_stochastic)

  # --- seeds × devices --------------------------------------------------

  def _program(self, fn, donate: bool, options: Optional[Dict[str, Any]] = None):
    """vmap over seeds, shard the seed axis over the mesh, jit (donating arg 0).

    Compiled with `options`, by default `self.compiler_options`.

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
    options = self.compiler_options if options is None else options
    kwargs = {"compiler_options": options} if options else {}
    return jax.jit(sharded, donate_argnums=(0,) if donate else (), **kwargs)

  def compile(self, init: bool = True) -> None:
    """Compiles the init and interval programs at once, on two threads.

    XLA compiles a program on one core, and a run's two big programs (init
    with its prefill, and the evaluation interval) do not depend on each
    other: compiling them side by side takes ~0.8× the time of one after the
    other on a 2-core CPU (benchmarks/results/time_to_solve.md). Afterwards
    `init` and `run_interval` are the compiled executables (same arguments,
    same donation). Optional: without it each compiles at its first call.
    The persistent compilation cache, when on, serves both.

    Args:
      init: False to compile only the interval program (a resumed run).
    """
    from concurrent import futures  # pylint: disable=g-import-not-at-top
    abstract, keys = self.abstract_state(), self.seed_keys()
    jobs = {name: functools.partial(lambda f, a: f.lower(a).compile(), getattr(self, name), arg)
            for name, arg in (("run_interval", abstract), ("init", keys))
            if hasattr(getattr(self, name), "lower") and (init or name != "init")}
    if not jobs:  # both already compiled (or replaced by plain functions)
      return
    with futures.ThreadPoolExecutor(len(jobs)) as pool:
      done = {name: pool.submit(job) for name, job in jobs.items()}
    for name, future in done.items():
      setattr(self, name, future.result())

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


def train(config: TrainConfig, agent: str = "sac", agent_config: Any = None,
          env: Any = None) -> Tuple[Any, Dict[str, np.ndarray]]:
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
