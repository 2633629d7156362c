"""benchmarks.fkl_vs_rkl: --quick end to end (slow), its statistics and report (fast)."""

import json
import os

import numpy as np
import pytest

from benchmarks import fkl_vs_rkl as bench


@pytest.mark.slow
def test_quick_writes_every_output(tmp_path, capsys):
  """CI-sized run (pure-JAX pendulum, 2 seeds, 5 settings: ~25 CPU s of compiling each)."""
  assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
  out = capsys.readouterr().out.strip().splitlines()
  assert out[-1].startswith("fkl_vs_rkl: FKL − RKL mean eval return over the run (2 seeds")
  assert sorted(os.listdir(tmp_path)) == ["fkl_vs_rkl.json", "fkl_vs_rkl.md",
                                          "fkl_vs_rkl.png", "fkl_vs_rkl_n.png"]
  with open(tmp_path / "fkl_vs_rkl.json") as f:
    entry = json.load(f)
  keys = {"pendulum/rkl/whole/1", "pendulum/fkl/whole/16", "pendulum/rkl/small/1",
          "pendulum/fkl/small/16", "pendulum/fkl/whole/2"}
  assert set(entry["summaries"]) == keys
  for s in entry["summaries"].values():
    assert len(s["auc"]) == len(s["final"]) == 2  # seeds
    assert len(s["smooth_mean"]) == len(s["steps"]) == 5  # evaluations
    assert np.all(np.isfinite(s["smooth_mean"])) and not s["partial"]
  assert set(entry["comparison"]["pendulum"]) >= {
      "fkl_minus_rkl_whole", "fkl_minus_rkl_small", "small_minus_whole_rkl",
      "small_minus_whole_fkl"}
  md = (tmp_path / "fkl_vs_rkl.md").read_text()
  assert "Command: `" in md and "| pendulum | FKL N=2, whole" in md
  # Written outside benchmarks/results: the md names this machine, not the committed runs'.
  assert "Machine: this invocation's: cpu " in md and bench.MACHINE not in md
  assert entry["machine"].startswith("this invocation's: cpu ")


def test_ema_is_the_recursion():
  x = np.array([[1.0, 0.0], [3.0, 10.0], [-2.0, 4.0]])
  want = np.empty_like(x)
  want[0] = x[0]
  want[1] = 0.9 * x[0] + 0.1 * x[1]
  want[2] = 0.9 * want[1] + 0.1 * x[2]
  np.testing.assert_allclose(bench.ema(x), want)


def test_bootstrap_interval_covers_the_difference_and_shrinks_with_seeds():
  rng = np.random.default_rng(1)
  a, b = rng.normal(5.0, 1.0, 10), rng.normal(2.0, 1.0, 10)
  d, lo, hi = bench.bootstrap_diff(a, b)
  assert d == pytest.approx(a.mean() - b.mean()) and lo < d < hi and lo > 0
  _, lo_big, hi_big = bench.bootstrap_diff(rng.normal(5.0, 1.0, 1000),
                                           rng.normal(2.0, 1.0, 1000))
  assert hi_big - lo_big < (hi - lo) / 5
  # Identical constant samples: a zero-width interval at the difference.
  assert bench.bootstrap_diff([3.0, 3.0], [1.0, 1.0]) == (2.0, 2.0, 2.0)


def test_steps_to_level():
  assert bench.steps_to([10, 20, 30], [0.0, 5.0, 9.0], 5.0) == 20
  assert bench.steps_to([10, 20, 30], [0.0, 5.0, 9.0], 10.0) is None


def _fake(steps, rows, partial=False):
  return dict(steps=steps, curves=dict(eval_return=rows), wall_s=1.0, partial=partial)


def test_compare_and_report_from_known_curves(tmp_path):
  """Seeds alike, FKL 100 above RKL: every Δ is exact with a zero-width CI."""
  steps = [100, 200, 300, 400]
  rkl = np.array([[0.0, 0.0], [50.0, 50.0], [80.0, 80.0], [100.0, 100.0]])
  grid = bench.settings(["hopper"], (2, 16))
  results = {"hopper/rkl/whole/1": rkl, "hopper/fkl/whole/16": rkl + 100,
             "hopper/rkl/small/1": rkl - 20, "hopper/fkl/small/16": rkl + 100,
             "hopper/fkl/whole/2": rkl + 50}
  summaries = {k: bench.summarise(_fake(steps, v.tolist())) for k, v in results.items()}
  np.testing.assert_allclose(summaries["hopper/rkl/whole/1"]["auc"], [57.5, 57.5])
  np.testing.assert_allclose(summaries["hopper/rkl/whole/1"]["final"], [230 / 3, 230 / 3])
  unequal = bench.summarise(_fake(steps, (rkl + [0.0, 10.0]).tolist()))
  np.testing.assert_allclose(unequal["smooth_std"][0], 5.0)
  comp = bench.compare(summaries, ["hopper"])["hopper"]
  assert comp["fkl_minus_rkl_whole"]["auc"] == pytest.approx((100.0, 100.0, 100.0))
  assert comp["fkl_minus_rkl_small"]["final"] == pytest.approx((120.0, 120.0, 120.0))
  assert comp["small_minus_whole_rkl"]["auc"] == pytest.approx((-20.0, -20.0, -20.0))
  assert comp["small_minus_whole_fkl"]["auc"] == pytest.approx((0.0, 0.0, 0.0))
  lvl = comp["steps_to_level_whole"]
  assert lvl["fkl"] <= lvl["rkl"]
  head = bench.headline(bench.compare(summaries, ["hopper"]), 2)
  assert "hopper whole buffer +100 [+100, +100]" in head
  paths = bench.plot(summaries, grid, 2, str(tmp_path))
  assert all(os.path.getsize(p) > 0 for p in paths)
  lines = bench.table(summaries, grid)
  assert any("| hopper | FKL N=2, whole buffer | 400 |" in l for l in lines)


def test_grid_order_and_bad_arguments_exit_2(capsys):
  grid = bench.settings(["hopper", "halfcheetah"], (2, 4, 16, 64))
  assert [s.key for s in grid[:4]] == ["hopper/rkl/whole/1", "hopper/fkl/whole/16",
                                       "hopper/rkl/small/1", "hopper/fkl/small/16"]
  assert [s.n for s in grid[4:7]] == [2, 4, 64] and len(grid) == 11
  assert bench.main(["--n", "1", "4"]) == 2
  assert "--n" in capsys.readouterr().err
  assert bench.main(["--tasks", "humanoidz"]) == 2
  assert "--tasks" in capsys.readouterr().err
  assert bench.main(["--seeds", "1"]) == 2
  assert bench.main(["--steps", "1000", "--report"]) == 2  # small buffer >= the run
  assert "--steps" in capsys.readouterr().err


def test_a_partial_run_is_compared_where_it_got_to():
  steps = [100, 200, 300, 400]
  full = np.array([[0.0, 0.0], [10.0, 10.0], [20.0, 20.0], [1000.0, 1000.0]])
  summaries = {"hopper/rkl/whole/1": bench.summarise(_fake(steps, full.tolist())),
               "hopper/fkl/whole/16": bench.summarise(
                   _fake(steps[:3], (full[:3] + 5).tolist(), partial=True))}
  c = bench.compare(summaries, ["hopper"])["hopper"]["fkl_minus_rkl_whole"]
  assert c["upto_step"] == 300
  assert c["auc"] == pytest.approx((5.0, 5.0, 5.0)) and c["final"][0] == pytest.approx(5.0)


def test_merge_json_reports_settings_from_the_written_json(tmp_path):
  """--report --merge-json: a setting absent from the cache is read from the results json
  (how a task added later is reported with the earlier ones), here all four of hopper."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  with open(os.path.join(bench.RESULTS, "fkl_vs_rkl.json")) as f:
    written = json.load(f)
  keys = [s.key for s in bench.settings(["hopper"], (16,))]
  fake = dict(written, summaries={k: written["summaries"][k] for k in keys})
  with open(tmp_path / "fkl_vs_rkl.json", "w") as f:
    json.dump(fake, f)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  # Run in tmp_path: its runs/bench_fkl_vs_rkl cache is empty, whatever this checkout holds.
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
             PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
  proc = subprocess.run(
      [sys.executable, "-m", "benchmarks.fkl_vs_rkl", "--report", "--merge-json", "--tasks",
       "hopper", "--n", "16", "--out", str(tmp_path)],
      capture_output=True, text=True, env=env, check=False, cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(tmp_path / "fkl_vs_rkl.json") as f:
    merged = json.load(f)
  assert set(merged["summaries"]) == set(keys)
  for k in keys:
    assert merged["summaries"][k]["auc"] == written["summaries"][k]["auc"]
  assert merged["comparison"]["hopper"] == written["comparison"]["hopper"]
  assert proc.stdout.strip().splitlines()[-1].startswith("fkl_vs_rkl: FKL − RKL")
