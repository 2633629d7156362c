"""Shared tiny configurations: small networks, few steps, the pure-JAX pendulum."""

import os
import sys
import types

import pytest

# Test modules import helpers that live next to them (reference_nets) by name; under
# --import-mode=importlib that needs this directory on sys.path.
sys.path.insert(0, os.path.dirname(__file__))

# Flags for a tiny run of `rlax-inf train` on the pure-JAX pendulum.
TINY_SETS = ["hidden=16,16", "num_envs=4", "batch_size=16", "grad_updates_per_step=2",
             "prefill_steps=32", "eval_every=32", "episode_length=20", "num_eval_envs=2"]


def tiny_train_config(**kw):
  from rlax_inf.agents import training
  base = dict(env="pendulum", num_seeds=2, total_steps=32 + 3 * 32, num_envs=4, batch_size=16,
              grad_updates_per_step=2, prefill_steps=32, eval_every=32, episode_length=20,
              num_eval_envs=2)
  base.update(kw)
  return training.TrainConfig(**base)


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory):
  """A persistent XLA compilation cache shared by the CLI subprocesses of one session."""
  return str(tmp_path_factory.mktemp("jax_cache"))


def cli_env(cache_dir, **extra):
  env = dict(os.environ)
  env.update(JAX_COMPILATION_CACHE_DIR=cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", PYTHONUNBUFFERED="1")
  env.update(extra)
  return env


def cli_cmd(*args):
  return [sys.executable, "-m", "rlax_inf.agents.cli", *args]


@pytest.fixture(scope="session")
def tiny():
  """The helpers above as one fixture (tests can't import conftest under importlib mode)."""
  return types.SimpleNamespace(sets=TINY_SETS, train_config=tiny_train_config,
                               env=cli_env, cmd=cli_cmd)
