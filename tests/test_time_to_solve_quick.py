"""benchmarks.time_to_solve --quick: the launcher, the child's records and the summary (no speed)."""

import pytest

from benchmarks import time_to_solve


def test_quick_ours_runs_in_a_fresh_process_and_reports(capsys):
  assert time_to_solve.main(["--quick"]) == 0
  out = capsys.readouterr().out
  assert "ours-sac       cold  rep 0: " in out and "not solved" not in out
  assert "quick: 1 runs finished" in out


def test_quick_markdown_and_ratio(monkeypatch):
  # The summary table from hand-made records (the slow test below makes real ones).
  rec = lambda side, t: dict(side=side, cache="cold", solved=t is not None, t_solved=t,
                             env_steps=4096, process_cpu_s=10.0)
  md = time_to_solve._markdown(dict(command="c", machine={}, results=[  # pylint: disable=protected-access
      rec("ours-sac", 30.0), rec("ours-sac", 50.0), rec("brax-sac", 100.0), rec("brax-ppo", None)]))
  assert "| ours-sac | cold | 2 | 2/2 | 40.0 |" in md
  assert "| brax-ppo | cold | 1 | 0/1 | — |" in md
  assert md.strip().endswith("cold: ours-sac / brax-sac = 0.40")
  md = time_to_solve._markdown(dict(command="c", machine={}, results=[  # pylint: disable=protected-access
      rec("ours-sac", 30.0), rec("ours-sac-fkl", 60.0), rec("brax-sac", 100.0),
      rec("brax-ppo", 200.0)]))
  assert md.strip().endswith("Headline: cold: ours-sac / brax-sac = 0.30; cold: ours-sac / "
                             "brax-ppo = 0.15; cold: ours-sac-fkl / brax-sac = 0.60; "
                             "cold: ours-sac-fkl / brax-ppo = 0.30")


@pytest.mark.parametrize("argv", [["--quick", "--sides", "nope"], ["--quick", "--repeats", "0"],
                                  ["--quick", "--set", "x=notjson"],
                                  ["--quick", "--side-set", "brax-sac:batch_size=128"],
                                  ["--quick", "--side-set", "ours-sac:batch_size"],
                                  ["--quick", "--side-set", "ours-sac:batch_size=x"]])
def test_bad_arguments_exit_2(argv, capsys):
  assert time_to_solve.main(argv) == 2
  assert "time_to_solve: error:" in capsys.readouterr().err


def test_side_set_overrides_one_side_after_set():
  common, side = {"batch_size": 64}, {"brax-sac": {"batch_size": 128, "polyak": 0.01}}
  ours = time_to_solve._spec("ours-sac", False, common, side)  # pylint: disable=protected-access
  brax = time_to_solve._spec("brax-sac", False, common, side)  # pylint: disable=protected-access
  assert (ours["batch_size"], ours["polyak"]) == (64, time_to_solve.COMMON["polyak"])
  assert (brax["batch_size"], brax["polyak"]) == (128, 0.01)


@pytest.mark.slow
def test_quick_brax_sides_run(capsys):
  assert time_to_solve.main(["--quick", "--sides", "brax-sac,brax-ppo,ours-klpg"]) == 0
  assert "quick: 3 runs finished" in capsys.readouterr().out
