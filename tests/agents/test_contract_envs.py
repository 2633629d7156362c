"""The contract on the physics suites: every continuous-action agent trains a few steps,
through a checkpoint, on Brax `inverted_pendulum` with each backend and on a MuJoCo
Playground env (MJX underneath: its state holds zero-size arrays, which the checkpoint
must carry).

Ten Brax / MJX / Playground compiles: opt-in (`make test-physics`, i.e.
`pytest -m physics`), outside CI's default `make test` to keep it well under 25 min
on 2 cores."""

import sys
import os

import pytest

from rlax_inf import envs
from rlax_inf.agents import base
from rlax_inf.agents import registry

sys.path.insert(0, os.path.dirname(__file__))
import test_contract as contract  # pylint: disable=g-import-not-at-top,wrong-import-position

CONTINUOUS = [n for n in registry.names()
              if base.CONTINUOUS in registry.get(n).action_spaces
              and n != "sac-fkl"]  # sac-fkl is sac's factory with another actor loss
FAMILIES = [("inverted_pendulum", b) for b in envs.BACKENDS] + [("CartpoleBalance", "mjx")]


@pytest.mark.physics
@pytest.mark.slow
@pytest.mark.parametrize("name", CONTINUOUS)
@pytest.mark.parametrize("env, backend", FAMILIES)
def test_physics_families_train_through_a_checkpoint(name, env, backend, tmp_path):
  if env == "CartpoleBalance" and not envs.playground.available():
    pytest.skip("needs the playground extra: pip install 'rlax-inf[playground]'")
  cfg = contract.tiny_config(name, env=env, backend=backend, num_seeds=1, total_steps=16,
                             eval_every=8, num_envs=2, batch_size=4, prefill_steps=8,
                             num_minibatches=1, episode_length=4, num_eval_envs=1)
  contract.train_through_a_checkpoint(name, cfg, tmp_path)
