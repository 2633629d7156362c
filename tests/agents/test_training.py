"""Vectorised training: no recompiles, metric shapes, the schedule (the per-agent contract,
vmapped seed = single run and 1 vs 4 devices included, is tests/agents/test_contract.py)."""

import logging

import jax
import numpy as np
import pytest

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
