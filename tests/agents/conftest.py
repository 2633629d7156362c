"""Shared tiny configurations: small networks, few steps, the pure-JAX pendulum."""

import os
import subprocess
import sys
import types

import pytest

# Test modules import helpers that live next to them (reference_nets) by name; under
# --import-mode=importlib that needs this directory on sys.path.
sys.path.insert(0, os.path.dirname(__file__))

# Flags for a tiny run of `rlax-inf train` on the pure-JAX pendulum.
TINY_SETS = ["hidden=16,16", "num_envs=4", "batch_size=16", "grad_updates_per_step=2",
             "prefill_steps=32", "eval_every=32", "episode_length=20", "num_eval_envs=2"]
# The tiny runs' --steps: prefill 32 + 12 evaluation intervals of 32, a checkpoint after
# each. Tests that train through the CLI use this one budget (the replay capacity, hence
# the compiled programs, depend on it), so the run's compilation cache compiles the
# programs of all of them once.
TINY_STEPS = 32 + 12 * 32


def tiny_train_config(**kw):
  from rlax_inf.agents import training
  base = dict(env="pendulum", num_seeds=2, total_steps=32 + 3 * 32, num_envs=4, batch_size=16,
              grad_updates_per_step=2, prefill_steps=32, eval_every=32, episode_length=20,
              num_eval_envs=2)
  base.update(kw)
  return training.TrainConfig(**base)


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory):
  """The persistent XLA compilation cache of this run (tests/conftest.py), for the CLI
  subprocesses and the in-process `cli.main` calls (a new one when that is off)."""
  if os.environ.get("RLAX_INF_TEST_JAX_CACHE", "off").strip().lower() in ("off", "0", ""):
    return str(tmp_path_factory.mktemp("jax_cache"))
  return os.environ["JAX_COMPILATION_CACHE_DIR"]


def cli_env(cache_dir, **extra):
  env = dict(os.environ)
  env.update(JAX_COMPILATION_CACHE_DIR=cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", PYTHONUNBUFFERED="1")
  env.update(extra)
  return env


def cli_cmd(*args):
  return [sys.executable, "-m", "rlax_inf.agents.cli", *args]


def train_argv(out, *extra):
  """`train` arguments of the tiny sac run (2 seeds, TINY_STEPS) into `out`."""
  return ["train", "--agent", "sac", "--env", "pendulum", "--seeds", "2", "--out", str(out),
          "--no-progress", "--steps", str(TINY_STEPS),
          *sum((["--set", s] for s in TINY_SETS), []), *extra]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, compile_cache):
  """A finished tiny `rlax-inf train` run (a subprocess, as a user starts it): sac on the
  pendulum, 2 seeds, 12 evaluations and checkpoints. Shared by the tests of a worker:
  read it only (copy it to change it). Its `stdout` and `stderr` are kept."""
  out = tmp_path_factory.mktemp("finished_run") / "run"
  res = subprocess.run(cli_cmd(*train_argv(out)), env=cli_env(compile_cache),
                       capture_output=True, text=True, timeout=600)
  assert res.returncode == 0, res.stderr[-3000:]
  return types.SimpleNamespace(out=out, stdout=res.stdout, stderr=res.stderr)


@pytest.fixture(scope="session")
def tiny():
  """The helpers above as one fixture (tests can't import conftest under importlib mode)."""
  return types.SimpleNamespace(sets=TINY_SETS, steps=TINY_STEPS, train_config=tiny_train_config,
                               env=cli_env, cmd=cli_cmd, train_argv=train_argv)


# The single-seed comparison of the contract runs in the default suite for one agent of
# each loop and action space and the recurrent options agent (~40 CPU s per agent); the
# other agents' cases are marked slow (make test-slow) to keep CI within its time.
VMAP_DEFAULT_AGENTS = ("sac", "sql", "klpg", "options")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
  for item in items:
    if item.originalname == "test_vmapped_seed_equals_the_single_run":
      if item.callspec.params.get("two_seed_run") not in VMAP_DEFAULT_AGENTS:
        item.add_marker(pytest.mark.slow)
