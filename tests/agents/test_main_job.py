"""`rlax-inf main`: both agents train, the plot and the summary appear, a rerun resumes."""

import json
import os

import pytest

from rlax_inf.agents import cli

# Tiny and fast: the pure-JAX pendulum, small nets, two short intervals.
_SMALL = ["--env", "pendulum", "--seeds", "2", "--steps", "768",
          "--set", "hidden=8,8", "--set", "prefill_steps=256", "--set", "eval_every=256",
          "--set", "grad_updates_per_step=2", "--set", "batch_size=32",
          "--set", "episode_length=64", "--set", "num_eval_envs=2"]


@pytest.fixture(autouse=True)
def _compilation_cache_of_this_session(monkeypatch, compile_cache):
  """In-process `cli.main` calls use the session's cache, not ~/.cache (compile_cache.py)."""
  monkeypatch.setenv("RLAX_INF_COMPILATION_CACHE", compile_cache)


def _rows(out, agent):
  from rlax_inf.agents import run_dir  # pylint: disable=g-import-not-at-top
  return run_dir.read_metrics(os.path.join(out, agent))


def test_main_job_trains_both_agents_plots_and_resumes(tmp_path, capsys):
  out = str(tmp_path / "main")
  assert cli.main(["main", "--out", out, *_SMALL]) == 0
  printed = capsys.readouterr().out
  assert "sac-fkl" in printed and "learning_curves.png" in printed
  assert os.path.getsize(os.path.join(out, "learning_curves.png")) > 0
  before = {}
  for agent in ("sac", "sac-fkl"):
    rows = before[agent] = _rows(out, agent)
    assert sorted({r["seed"] for r in rows}) == [0, 1]
    assert max(r["step"] for r in rows) >= 768
    config = json.load(open(os.path.join(out, agent, "config.json")))
    assert config["agent_config"]["hidden"] == [8, 8]
    assert config["agent_config"]["policy_loss"] == ("fkl" if agent == "sac-fkl" else "rkl")
  # Without --resume an existing run is refused; with it the finished run resumes as is.
  assert cli.main(["main", "--out", out, *_SMALL]) == 2
  assert "--resume" in capsys.readouterr().err
  assert cli.main(["main", "--out", out, "--resume", *_SMALL]) == 0
  for agent in ("sac", "sac-fkl"):  # nothing left to train: the same metrics, no new rows
    assert _rows(out, agent) == before[agent]
