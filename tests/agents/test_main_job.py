"""`rlax-inf main`: both agents train, the plot and the summary appear, a rerun resumes."""

import json
import os

import pytest

from rlax_inf.agents import cli


# Tiny and fast: conftest.py's tiny CLI run (the pure-JAX pendulum, small nets, 12 short
# intervals), so sac's programs are finished_run's, compiled once per run of the suite.
def _small(tiny):
  return ["--env", "pendulum", "--seeds", "2", "--steps", str(tiny.steps),
          *sum((["--set", s] for s in tiny.sets), [])]


@pytest.fixture(autouse=True)
def _compilation_cache_of_this_session(monkeypatch, compile_cache):
  """In-process `cli.main` calls use the session's cache, not ~/.cache (compile_cache.py)."""
  monkeypatch.setenv("RLAX_INF_COMPILATION_CACHE", compile_cache)


def _rows(out, agent):
  from rlax_inf.agents import run_dir  # pylint: disable=g-import-not-at-top
  return run_dir.read_metrics(os.path.join(out, agent))


def test_main_job_trains_both_agents_plots_and_resumes(tiny, tmp_path, capsys):
  out = str(tmp_path / "main")
  small = _small(tiny)
  assert cli.main(["main", "--out", out, *small]) == 0
  printed = capsys.readouterr().out
  assert "sac-fkl" in printed and "learning_curves.png" in printed
  assert os.path.getsize(os.path.join(out, "learning_curves.png")) > 0
  before = {}
  for agent in ("sac", "sac-fkl"):
    rows = before[agent] = _rows(out, agent)
    assert sorted({r["seed"] for r in rows}) == [0, 1]
    assert max(r["step"] for r in rows) >= tiny.steps
    config = json.load(open(os.path.join(out, agent, "config.json")))
    assert config["agent_config"]["hidden"] == [16, 16]
    assert config["agent_config"]["policy_loss"] == ("fkl" if agent == "sac-fkl" else "rkl")
  # Without --resume an existing run is refused; with it the finished run resumes as is.
  assert cli.main(["main", "--out", out, *small]) == 2
  assert "--resume" in capsys.readouterr().err
  assert cli.main(["main", "--out", out, "--resume", *small]) == 0
  for agent in ("sac", "sac-fkl"):  # nothing left to train: the same metrics, no new rows
    assert _rows(out, agent) == before[agent]
