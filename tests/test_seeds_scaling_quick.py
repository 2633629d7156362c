"""benchmarks.seeds_scaling --quick: launch, records and the table (asserts no speed)."""

import pytest

from benchmarks import seeds_scaling


def test_quick_runs(capsys):
  # Three fresh processes (CI size): seeds 0 and 1 one after another, then both vmapped;
  # the 1-device row reuses the vmapped run. Sharding over host devices: slow test below.
  assert seeds_scaling.main(["--quick", "--seeds", "2", "--devices", "1",
                             "--device-seeds", "2", "--max-sequential", "2"]) == 0
  out = capsys.readouterr().out
  assert "single seed 1:" in out and "vmapped S=2:" in out
  assert "quick: 1 scaling rows, 1 device rows" in out


@pytest.mark.slow
def test_quick_runs_over_two_host_devices(capsys):
  assert seeds_scaling.main(["--quick", "--seeds", "1,2", "--devices", "2",
                             "--device-seeds", "2", "--max-sequential", "2"]) == 0
  out = capsys.readouterr().out
  assert "S=2 over 2 devices" in out and "quick: 2 scaling rows, 1 device rows" in out


def test_markdown_headline():
  row = dict(seeds=8, vmapped_wall_s=60.0, vmapped_compiled_s=40.0,
             vmapped_env_steps_per_s=900.0, efficiency=0.5, sequential_wall_s=200.0,
             sequential_measured_runs=8, sequential_all_cold_s=400.0, ratio=0.3,
             ratio_all_cold=0.15)
  md = seeds_scaling._markdown(dict(command="c", machine={}, settings={}, rows=[row],  # pylint: disable=protected-access
                                    sharded={}, device_seeds=4))
  assert "| 8 | 60.0 | 40.0 | 900 | 0.50 | 200.0 (8) | 0.30 | 400.0 | 0.15 |" in md
  assert md.strip().endswith("0.30× the wall time of 8 sequential runs (target ≤ 0.6)")


def test_bad_arguments_exit_2(capsys):
  assert seeds_scaling.main(["--quick", "--seeds", "a"]) == 2
  assert seeds_scaling.main(["--quick", "--devices", "3", "--device-seeds", "4"]) == 2
  assert "seeds_scaling: error:" in capsys.readouterr().err
