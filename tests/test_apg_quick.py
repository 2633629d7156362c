"""benchmarks.apg --quick runs end to end (pure-JAX pendulum, 2 seeds, tiny networks)."""

import numpy as np
import pytest

from benchmarks import apg as bench


@pytest.mark.slow  # two agents compiled on the pendulum: ~60 CPU s on the loaded VM
def test_quick_runs_both_agents_and_resumes_from_the_cache(tmp_path, capsys):
  summ = bench.main(["--quick", "--cache", str(tmp_path)])
  assert set(summ) == {"apg", "sac"}
  for s in summ.values():
    assert len(s["initial"]) == len(s["final"]) == 2 and s["all_metrics_finite"]
    assert np.all(np.isfinite(s["final"])) and s["cpu_s"] > 0 and s["wall_s"] > 0
  assert summ["apg"]["nonfinite_skips"] == 0 and summ["apg"]["env_steps"] == 128
  capsys.readouterr()
  again = bench.main(["--quick", "--cache", str(tmp_path)])  # read back, not retrained
  assert "reusing" in capsys.readouterr().out and again == summ


def test_bad_arguments_exit_2_in_one_line(capsys):
  assert bench.main(["--seeds", "0"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--seeds" in err[0], err
  assert bench.main(["--agents", "ppo"]) == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1
