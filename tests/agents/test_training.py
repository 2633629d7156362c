"""Vectorised training: no recompiles, metric shapes, the schedule (the per-agent contract,
vmapped seed = single run and 1 vs 4 devices included, is tests/agents/test_contract.py)."""

import dataclasses
import logging

import jax
import numpy as np
import pytest

from rlax_inf.agents import acting
from rlax_inf.agents import off_policy
from rlax_inf.agents import sac
from rlax_inf.agents import training

AGENT_CFG = sac.SACConfig(hidden=(16, 16))


@pytest.fixture(scope="module")
def two_seed_run(tiny):
  # The tiny CLI runs' budget (12 intervals): the programs conftest.py's finished_run
  # compiles, read from the run's compilation cache when it ran first.
  trainer = training.Trainer(tiny.train_config(num_seeds=2, seed=0, total_steps=tiny.steps),
                             AGENT_CFG, "sac")
  ts = trainer.init(trainer.seed_keys())
  history = []
  for _ in range(trainer.schedule.num_intervals):
    ts, metrics = trainer.run_interval(ts)
    history.append(jax.device_get(metrics))
  return trainer, ts, history


def test_one_compile_for_all_evaluations(two_seed_run, caplog):
  trainer, ts, history = two_seed_run
  ts = jax.tree.map(lambda x: x.copy(), ts)  # run_interval donates its argument
  assert trainer.run_interval._cache_size() == 1  # pylint: disable=protected-access
  with jax.log_compiles(True), caplog.at_level(logging.WARNING):
    for _ in range(2):
      ts, _ = trainer.run_interval(ts)
    jax.block_until_ready(ts)
  assert not [r for r in caplog.records if "Compiling" in r.getMessage()
              and "interval" in r.getMessage()]
  assert trainer.run_interval._cache_size() == 1  # pylint: disable=protected-access


def test_metrics_shapes_and_finiteness(two_seed_run):
  trainer, ts, history = two_seed_run
  assert len(history) == trainer.schedule.num_intervals == 12
  for h in history:
    for k, v in h.items():
      assert v.shape == (2,), k
      assert np.all(np.isfinite(v)), k
    # Pendulum never terminates: every evaluation episode runs to the time limit.
    np.testing.assert_array_equal(h["eval_length"], 20)
    np.testing.assert_array_equal(h["eval_length_stochastic"], 20)
  assert list(jax.device_get(ts.env_steps)) == [32 + 12 * 32] * 2
  assert list(jax.device_get(ts.agent.steps)) == [12 * 8 * 2] * 2  # intervals × vector steps × G


def test_schedule_counts():
  sch = off_policy.schedule(training.TrainConfig(total_steps=50_000, num_envs=64,
                                                prefill_steps=8192, eval_every=5000))
  assert sch.prefill_vector_steps == 128
  assert sch.interval_vector_steps == 78
  assert (sch.prefill_vector_steps + sch.num_intervals * sch.interval_vector_steps) * 64 >= 50_000


def test_evaluation_stops_early_and_equals_the_full_length_scan():
  # Oracle: the full-length scan `acting.evaluate` used to run, written out here. On
  # cartpole a fresh sql policy drops the pole within tens of steps, so the while
  # loop ends long before the 200-step limit; the returns and lengths must not change.
  from rlax_inf import envs  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import acting, registry  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  env = envs.make("cartpole", episode_length=200)
  entry = registry.get("sql")
  agent = entry.make(dataclasses.replace(entry.config, hidden=(8,)), env.spec)
  state = agent.init(jax.random.PRNGKey(1))
  key = jax.random.PRNGKey(2)
  n = 3

  def full_scan(state, key):
    k_reset, k_act = jax.random.split(key)
    states = jax.vmap(env.reset)(jax.random.split(k_reset, 2 * n))
    det = jnp.arange(2 * n) < n
    params = agent.policy_params(state)

    def body(c, k):
      s, ret, length, fin = c
      a, _ = agent.act(params, s.obs, k, det)
      s = env.batch_step(s, a)
      alive = 1.0 - fin
      return (s, ret + alive * s.reward, length + alive, jnp.maximum(fin, s.done)), None

    z = jnp.zeros((2 * n,), jnp.float32)
    (_, ret, length, _), _ = jax.lax.scan(body, (states, z, z, z),
                                          jax.random.split(k_act, env.spec.episode_length))
    return ret, length

  ret, length = jax.jit(full_scan)(state, key)
  got = jax.jit(lambda s, k: acting.evaluate(env, agent, s, k, n))(state, key)
  assert float(jnp.max(length)) < 100  # the early stop has something to skip
  np.testing.assert_allclose(got["eval_return"], jnp.mean(ret[:n]), rtol=1e-6)
  np.testing.assert_allclose(got["eval_length"], jnp.mean(length[:n]))
  np.testing.assert_allclose(got["eval_return_stochastic"], jnp.mean(ret[n:]), rtol=1e-6)
  np.testing.assert_allclose(got["eval_length_stochastic"], jnp.mean(length[n:]))
  # Under vmap over seeds the loop runs until every seed has finished.
  keys = jax.random.split(key, 2)
  states = jax.vmap(agent.init)(jax.random.split(jax.random.PRNGKey(3), 2))
  both = jax.jit(jax.vmap(lambda s, k: acting.evaluate(env, agent, s, k, n)))(states, keys)
  for i in range(2):
    r, l = jax.jit(full_scan)(jax.tree.map(lambda x, i=i: x[i], states), keys[i])
    np.testing.assert_allclose(both["eval_return"][i], jnp.mean(r[:n]), rtol=1e-6)
    np.testing.assert_allclose(both["eval_length"][i], jnp.mean(l[:n]))


def test_seed_folded_env_equals_the_doubly_vmapped_env():
  # Oracle: plain jax.vmap over seeds of the env's own batch functions.
  from rlax_inf import envs  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import acting  # pylint: disable=g-import-not-at-top
  env = envs.make("cartpole", episode_length=30)
  folded = acting.SeedFoldedEnv(env)
  keys = jax.random.split(jax.random.PRNGKey(0), 3 * 5).reshape(3, 5, 2)

  def run(e, reset):
    def seed(k):
      s = reset(e, k)
      def body(s, t):
        a = (jnp_arange(5) + t) % 2  # the unbatched action leaf is broadcast over seeds
        s = e.batch_step(s, a)
        return s, (s.reward, s.done, s.obs)
      return jax.lax.scan(body, s, np.arange(40))[1]
    return jax.jit(jax.vmap(seed))(keys)

  jnp_arange = jax.numpy.arange
  want = run(env, lambda e, k: jax.vmap(e.reset)(k))
  got = run(folded, acting.batch_reset)
  for w, g in zip(want, got):
    np.testing.assert_array_equal(w, g)
  assert folded.spec == env.spec
  # Folded: the step program holds one env batch of seeds × envs (15), not a [3, 5] one.
  jaxpr = str(jax.make_jaxpr(jax.vmap(lambda s, a: folded.batch_step(s, a)))(
      jax.vmap(folded.batch_reset)(keys), np.zeros((3, 5), np.int32)))
  eqns = [line for line in jaxpr.splitlines() if " = " in line]
  assert any("f32[15]" in line.split(" = ")[0] for line in eqns)
  doubly = [line for line in eqns if "[3,5" in line.split(" = ")[0] and "reshape" not in line]
  assert not doubly, doubly


def test_seed_folded_env_traces_the_env_once_per_shape():
  # The scan and while_loop batching rules re-run the fold's rule while they find
  # which carries are batched; the env's Python must run once per argument shape.
  from rlax_inf import envs  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import acting  # pylint: disable=g-import-not-at-top
  env = envs.make("cartpole", episode_length=30)
  calls = []

  class Counting:
    def __getattr__(self, name):
      return getattr(env, name)

    def batch_step(self, state, action):
      calls.append(action.shape)
      return env.batch_step(state, action)

  folded = acting.SeedFoldedEnv(Counting())
  keys = jax.random.split(jax.random.PRNGKey(0), 3 * 5).reshape(3, 5, 2)

  def run(e, reset):
    def seed(k):
      s = reset(e, k)
      def body(c):
        s, t = c
        return e.batch_step(s, (jax.numpy.arange(5) + t) % 2), t + 1
      s, _ = jax.lax.while_loop(lambda c: c[1] < 7, body, (s, 0))
      s, _ = jax.lax.scan(lambda s, t: (e.batch_step(s, t % 2 + 0 * s.obs[:, 0].astype(
          jax.numpy.int32)), None), s, np.arange(5))
      return s.obs
    return jax.jit(jax.vmap(seed))(keys)

  got = run(folded, acting.batch_reset)
  assert sorted(set(calls)) == [(5,), (15,)] and len(calls) == 2, calls
  # Same values as the plain env, doubly vmapped.
  np.testing.assert_array_equal(got, run(env, lambda e, k: jax.vmap(e.reset)(k)))


def test_seed_folded_env_runs_one_env_python_once_for_every_size_and_program():
  # With cached resets `batch_step` is `jax.vmap(step)`: the one-env `step` and
  # `reset` are traced once and replayed at every batch size (per seed, and seeds ×
  # envs in the fold's rule), in every program, for every wrapper of the same env.
  import copy  # pylint: disable=g-import-not-at-top
  from rlax_inf import envs  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import acting  # pylint: disable=g-import-not-at-top
  plain = envs.make("cartpole", episode_length=30, fresh_resets=False)
  calls = []

  class Counting(type(plain)):
    def step(self, state, action):
      calls.append("step")
      return super().step(state, action)

    def reset(self, key):
      calls.append("reset")
      return super().reset(key)

  env = copy.copy(plain)
  env.__class__ = Counting
  keys = jax.random.split(jax.random.PRNGKey(0), 3 * 5).reshape(3, 5, 2)

  def run(e, reset, size):
    def seed(k):
      s = reset(e, k[:size])
      s, _ = jax.lax.scan(lambda s, t: (e.batch_step(s, (jax.numpy.arange(size) + t) % 2),
                                        None), s, np.arange(7))
      return s.obs
    return jax.jit(jax.vmap(seed))(keys)

  for size in (5, 4):  # two programs, two wrappers, two batch sizes
    got = run(acting.SeedFoldedEnv(env), acting.batch_reset, size)
    want = run(plain, lambda e, k: jax.vmap(e.reset)(k), size)
    np.testing.assert_array_equal(got, want)
  assert sorted(calls) == ["reset", "step"], calls


def test_trace_once_falls_back_when_the_function_closes_over_a_tracer():
  from rlax_inf.agents import acting  # pylint: disable=g-import-not-at-top

  @jax.jit
  def f(x, y):
    g = acting.trace_once(lambda z: z * y)
    return g(x) + g(x)

  np.testing.assert_allclose(f(jax.numpy.ones(3), 2.0), 4.0 * np.ones(3))
  np.testing.assert_allclose(f(jax.numpy.ones(3), 3.0), 6.0 * np.ones(3))


def test_compiled_side_by_side_equals_compiled_at_first_call(two_seed_run, tiny):
  trainer0, _, history = two_seed_run
  trainer = training.Trainer(trainer0.config, AGENT_CFG, "sac")
  trainer.compile()
  assert not hasattr(trainer.init, "_cache_size")  # now the AOT-compiled executables
  ts = trainer.init(trainer.seed_keys())
  for want in history[:2]:
    ts, got = trainer.run_interval(ts)
    for k, v in jax.device_get(got).items():
      np.testing.assert_array_equal(v, want[k], err_msg=k)


def test_default_compiler_options_leave_xla_flags_and_other_platforms_alone(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  everything = training.default_compiler_options("cpu")
  assert everything == {k: v for k, v in training.FAST_COMPILE_OPTIONS.items()
                        if training._accepted("cpu", k, v)}  # pylint: disable=protected-access
  assert everything.get("xla_cpu_use_fusion_emitters") is False
  # An option set in XLA_FLAGS is XLA_FLAGS' (whatever value it gives there).
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_use_fusion_emitters=true")
  assert "xla_cpu_use_fusion_emitters" not in training.default_compiler_options("cpu")
  # Off a CPU none apply.
  assert training.default_compiler_options("gpu") == {}
  assert training.default_compiler_options("tpu") == {}
  assert training.default_compiler_options("gpu", run_once=True) == {}
  # Run-once programs add RUN_ONCE_COMPILE_OPTIONS, and XLA_FLAGS still wins.
  monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=3")
  once = training.default_compiler_options("cpu", run_once=True)
  assert "xla_backend_optimization_level" not in once
  assert once.get("xla_cpu_use_fusion_emitters") is False


def test_init_compiles_with_the_run_once_options_and_gives_the_same_state(tiny, monkeypatch):
  level = training.RUN_ONCE_COMPILE_OPTIONS["xla_backend_optimization_level"]
  if not training._accepted("cpu", "xla_backend_optimization_level", level):  # pylint: disable=protected-access
    pytest.skip("this XLA does not take xla_backend_optimization_level")
  # The suite sets a level in XLA_FLAGS (tests/conftest.py), which would win.
  monkeypatch.setenv("XLA_FLAGS", "")
  cfg = tiny.train_config(num_seeds=2, seed=0, total_steps=tiny.steps)
  trainer = training.Trainer(cfg, AGENT_CFG, "sac")
  assert trainer.init_compiler_options == dict(trainer.compiler_options,
                                               **training.RUN_ONCE_COMPILE_OPTIONS)
  assert "xla_backend_optimization_level" not in trainer.compiler_options
  # An explicit `compiler_options` applies to every program: here LLVM's default level 3.
  level3 = dict(trainer.compiler_options, xla_backend_optimization_level=3)
  plain = training.Trainer(cfg, AGENT_CFG, "sac", env=trainer.env, compiler_options=level3)
  assert plain.init_compiler_options == plain.compiler_options == level3
  keys = trainer.seed_keys()
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(trainer.init(keys)),
               jax.device_get(plain.init(keys)))


def test_compiler_options_reach_the_programs_and_unknown_ones_are_left_out(tiny):
  assert set(training.default_compiler_options()) <= set(training.FAST_COMPILE_OPTIONS)
  # The probe answers False for an option this XLA does not know, instead of failing.
  assert not training._accepted(  # pylint: disable=protected-access
      jax.default_backend(), "xla_cpu_no_such_option", False)
  cfg = tiny.train_config(num_seeds=1, seed=0, total_steps=tiny.steps)
  bogus = training.Trainer(cfg, AGENT_CFG, "sac",
                           compiler_options={"xla_cpu_no_such_option": False})
  with pytest.raises(Exception, match="xla_cpu_no_such_option"):
    bogus.init.lower(bogus.seed_keys()).compile()
  assert training.Trainer(cfg, AGENT_CFG, "sac", compiler_options={}).compiler_options == {}


@pytest.mark.parametrize("num_eval_envs,stochastic,in_loop", [
    (2, True, True), (1, True, True), (8, True, False), (4, False, True), (16, False, False)])
def test_first_interval_prefills_and_the_loop_evaluates_as_acting_evaluate(num_eval_envs,
                                                                           stochastic, in_loop):
  # One env step per run (off_policy's module doc): init steps no env, the first
  # interval prefills, and the evaluation in the loop is `acting.evaluate`'s (its
  # keys) when the loop's slots are exactly the eval envs (2 · num_eval_envs, or
  # num_eval_envs without eval_stochastic). With 4× more eval envs than train envs
  # the interval evaluates after its loop instead.
  cfg = training.TrainConfig(env="pendulum", num_seeds=2, total_steps=32 + 3 * 32, num_envs=4,
                             batch_size=16, grad_updates_per_step=2, prefill_steps=32,
                             eval_every=32, episode_length=20, num_eval_envs=num_eval_envs,
                             eval_stochastic=stochastic)
  trainer = training.Trainer(cfg, AGENT_CFG, "sac")
  assert trainer.loop.evaluates_in_loop == in_loop
  assert trainer.loop.slots == 4  # max(num_envs, eval envs) in the loop, num_envs after it
  ts = trainer.init(trainer.seed_keys())
  assert list(jax.device_get(ts.env_steps)) == [0, 0]
  assert list(jax.device_get(ts.replay.size)) == [0, 0]
  assert trainer.env_steps_after(0) == 0 and trainer.env_steps_after(2) == 32 + 2 * 32
  for evaluation in (1, 2):
    k_eval = np.stack([np.asarray(jax.random.split(k, 3)[2]) for k in jax.device_get(ts.key)])
    ts, metrics = trainer.run_interval(ts)
    metrics = jax.device_get(metrics)
    steps = trainer.env_steps_after(evaluation)
    assert list(jax.device_get(ts.env_steps)) == [steps] * 2
    assert list(jax.device_get(ts.replay.size)) == [steps // 4] * 2  # rows of 4 envs
    # Updates only after the prefill: 8 vector steps × 2 per interval.
    assert list(jax.device_get(ts.agent.steps)) == [evaluation * 8 * 2] * 2
    for k, v in metrics.items():
      assert np.all(np.isfinite(v)), k  # at the tests' LLVM O0 too (acting.any_seed)
    expected = jax.device_get(trainer.evaluate(
        ts.agent, jax.device_put(k_eval, trainer.sharding)))
    assert set(acting.eval_keys(stochastic)) == set(expected) <= set(metrics)
    assert ("eval_return_stochastic" in metrics) == stochastic
    if trainer.loop.slots == acting.eval_env_count(num_eval_envs, stochastic) or not in_loop:
      for k in acting.eval_keys(stochastic):
        np.testing.assert_allclose(metrics[k], expected[k], rtol=1e-4, err_msg=k)
    np.testing.assert_array_equal(metrics["eval_length"], 20)
