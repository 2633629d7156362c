"""Faults and bad input around a run directory: each made here, each answered by exit code 2
and one line naming the thing (or a clean fallback), with nothing lost.

Most tests need no compiled training: a run directory is written directly (config.json,
metrics.jsonl, checkpoints of a zero train state) and, where the run must go on, the
interval program is replaced by a stand-in that only counts steps. One test resumes a
real run (conftest.py's finished_run, copied) from a damaged checkpoint and compares the
result with the undamaged run bit for bit.
"""

import json
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rlax_inf.agents import checkpointing, cli, run, run_dir, sac, training


@pytest.fixture(autouse=True)
def _compilation_cache_of_this_session(monkeypatch, compile_cache):
  """In-process `cli.main` calls use the session's cache, not ~/.cache (compile_cache.py)."""
  monkeypatch.setenv("RLAX_INF_COMPILATION_CACHE", compile_cache)


def _one_line_error(capsys, argv, *needles, code=2):
  got = cli.main(argv)
  err = capsys.readouterr().err.strip()
  lines = [l for l in err.splitlines() if l.startswith("rlax-inf: error:")]
  assert got == code, err
  assert len(lines) == 1 and "Traceback" not in err, err
  for n in needles:
    assert n in lines[0], (n, err)
  return lines[0]


def _fake_run(out, tiny, evaluations=(1,), intervals=1, **cfg):
  """A run directory of `intervals` evaluation intervals with checkpoints after
  `evaluations` (zero train states) and their metrics rows, written without training."""
  cfg = tiny.train_config(num_seeds=2, total_steps=32 + intervals * 32, **cfg)
  agent_cfg = sac.SACConfig(hidden=(16, 16))
  abstract = training.Trainer(cfg, agent_cfg, "sac").abstract_state()
  os.makedirs(out)
  run.save_config(str(out), "sac", cfg, agent_cfg)
  mngr = checkpointing.manager(str(out / "checkpoints"))
  for e in evaluations:
    state = jax.tree.map(lambda s: jax.device_put(np.zeros(s.shape, s.dtype), s.sharding),
                         abstract)
    state = state.replace(env_steps=state.env_steps + 32 + e * 32,
                          evaluations=state.evaluations + e)
    checkpointing.save(mngr, e, state)
    run_dir.append_metrics(str(out), [dict(step=32 + e * 32, seed=s, evaluation=e,
                                           wall_s=float(e), eval_return=-100.0 - e)
                                      for s in (0, 1)])
  mngr.close()


def _counting_intervals(monkeypatch, value=0.0, save_error=None):
  """Replace the compiled interval by one that counts steps and reports `value`."""
  make = run.make_trainer

  def make_trainer(*args, **kw):
    trainer = make(*args, **kw)

    def interval(ts):
      n = trainer.config.num_seeds
      ts = ts.replace(env_steps=ts.env_steps + trainer.env_steps_per_interval,
                      evaluations=ts.evaluations + 1)
      return ts, dict(eval_return=np.full(n, -50.0), critic_loss=np.full(n, value))

    trainer.run_interval = interval
    return trainer

  monkeypatch.setattr(run, "make_trainer", make_trainer)
  if save_error is not None:
    def save(mngr, step, state):
      raise save_error
    monkeypatch.setattr(checkpointing, "save", save)


def _resume(out, *extra):
  return ["train", "--out", str(out), "--resume", "--no-progress", *extra]


# --- metrics.jsonl ------------------------------------------------------------

def test_a_partial_last_metrics_line_is_skipped_and_the_next_append_starts_a_new_line(
    tmp_path, capsys):
  rows = [dict(step=64, seed=0, evaluation=1, eval_return=1.0),
          dict(step=96, seed=0, evaluation=2, eval_return=2.0)]
  run_dir.append_metrics(str(tmp_path), rows)
  path = tmp_path / "metrics.jsonl"
  with open(path, "a") as f:
    f.write('{"step": 128, "seed": 0, "evalu')  # a crash mid-write
  assert run_dir.read_metrics(str(tmp_path)) == rows
  assert "skipped 1 unreadable line" in capsys.readouterr().err
  run_dir.append_metrics(str(tmp_path), [dict(step=128, seed=0, evaluation=3, eval_return=3.0)])
  assert [r["evaluation"] for r in run_dir.read_metrics(str(tmp_path))] == [1, 2, 3]


def test_a_resume_marker_drops_the_rows_of_the_run_cut_short_without_rewriting(tmp_path):
  run_dir.append_metrics(str(tmp_path), [dict(evaluation=e, seed=0, v="old") for e in (1, 2, 3)])
  before = (tmp_path / "metrics.jsonl").read_text()
  run_dir.mark_resumed(str(tmp_path), 1)
  run_dir.append_metrics(str(tmp_path), [dict(evaluation=e, seed=0, v="new") for e in (2, 3)])
  assert (tmp_path / "metrics.jsonl").read_text().startswith(before)  # appended only
  assert [(r["evaluation"], r["v"]) for r in run_dir.read_metrics(str(tmp_path))] == [
      (1, "old"), (2, "new"), (3, "new")]


def test_plot_with_a_partial_metrics_line_and_an_empty_metrics_file(tiny, tmp_path, capsys):
  out = tmp_path / "run"
  _fake_run(out, tiny, evaluations=(1,))
  with open(out / "metrics.jsonl", "a") as f:
    f.write('{"step": 1')
  assert cli.main(["plot", str(out), "--out", str(tmp_path / "a.png")]) == 0
  assert os.path.getsize(tmp_path / "a.png") > 1000  # one evaluation: a visible point
  (out / "metrics.jsonl").write_text("")
  _one_line_error(capsys, ["plot", str(out)], "no evaluations", "metrics.jsonl")


def test_resume_of_a_finished_run_with_an_empty_metrics_file(tiny, tmp_path, capsys):
  out = tmp_path / "run"
  _fake_run(out, tiny, evaluations=(1,), intervals=1)
  (out / "metrics.jsonl").write_text("")
  assert cli.main(_resume(out)) == 0
  printed = capsys.readouterr().out
  assert "sac" in printed and " - " in printed  # no evaluation to summarise: said, no crash


# --- checkpoints ----------------------------------------------------------------

def test_a_damaged_checkpoint_on_a_run_that_goes_on_is_moved_aside(tiny, tmp_path, capsys,
                                                                    monkeypatch):
  out = tmp_path / "run"
  _fake_run(out, tiny, evaluations=(1, 2), intervals=3)
  os.remove(out / "checkpoints" / "2" / "default" / "_METADATA")
  before = (out / "metrics.jsonl").read_text()
  _counting_intervals(monkeypatch)
  assert cli.main(_resume(out)) == 0
  err = capsys.readouterr().err
  assert "checkpoint 2: its metadata file is missing; falling back" in err
  assert "another version" not in err and "Traceback" not in err
  assert os.listdir(out / "damaged_checkpoints")[0].startswith("2-")
  assert sorted(int(d) for d in os.listdir(out / "checkpoints") if d.isdigit()) == [2, 3]
  assert (out / "metrics.jsonl").read_text().startswith(before)
  rows = run.read_metrics(str(out))
  assert [(r["evaluation"], r["seed"]) for r in rows] == [(e, s) for e in (1, 2, 3)
                                                          for s in (0, 1)]
  assert rows[2]["eval_return"] == -50.0  # evaluation 2 of the resumed run, not the old one


def test_every_checkpoint_damaged_exits_2(tiny, tmp_path, capsys):
  out = tmp_path / "run"
  _fake_run(out, tiny, evaluations=(1,), intervals=2)
  os.remove(out / "checkpoints" / "1" / "default" / "_METADATA")
  for argv in (_resume(out), ["eval", str(out)]):
    _one_line_error(capsys, argv, "every checkpoint is damaged", "checkpoint 1")


def test_non_finite_loss_names_the_checkpoint_that_is_kept(tiny, tmp_path, capsys,
                                                           monkeypatch):
  out = tmp_path / "run"
  _fake_run(out, tiny, evaluations=(1,), intervals=3)
  _counting_intervals(monkeypatch, value=float("nan"))
  _one_line_error(capsys, _resume(out), "non-finite", "critic_loss=[nan, nan]",
                  "after evaluation 1, is kept", code=1)


def test_a_checkpoint_that_cannot_be_written_exits_2_keeping_the_last_one(
    tiny, tmp_path, capsys, monkeypatch):
  out = tmp_path / "run"
  _fake_run(out, tiny, evaluations=(1,), intervals=3)
  _counting_intervals(monkeypatch, save_error=ValueError(
      "RESOURCE_EXHAUSTED: Error writing local file \"x\": No space left on device "
      "[tensorstore_spec='{...}']\nmore"))
  err = _one_line_error(capsys, _resume(out), "cannot write checkpoint 2",
                        "No space left on device", "checkpoint 1 is kept")
  assert "tensorstore_spec" not in err
  assert os.listdir(out / "checkpoints") == ["1"]


# --- the run directory ------------------------------------------------------------

def test_resume_without_config_json_is_refused(tiny, tmp_path, capsys):
  out = tmp_path / "run"
  _fake_run(out, tiny)
  os.remove(out / "config.json")
  _one_line_error(capsys, _resume(out, "--env", "pendulum", "--set", "batch_size=64"),
                  "no config.json", repr(str(out)))
  assert not (out / "config.json").exists()


def test_a_second_writer_is_refused_and_a_stale_lock_taken_over(tiny, tmp_path, capsys):
  out = tmp_path / "run"
  _fake_run(out, tiny, evaluations=(1,), intervals=1)
  with run_dir.Lock(str(out)):  # another process writing this directory
    _one_line_error(capsys, _resume(out), "is in use by process", str(os.getpid()))
  (out / ".lock").write_text("process 999999 on elsewhere\n")  # killed: its flock is gone
  assert cli.main(_resume(out)) == 0
  assert "taking over the stale lock of process 999999" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["under a file", "under /proc"])
def test_an_out_that_cannot_be_created_exits_2(tiny, tmp_path, capsys, where):
  if where == "under a file":
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "run"
  else:
    out = "/proc/rlax-inf-run"
  _one_line_error(capsys, ["train", "--env", "pendulum", "--out", str(out), "--no-progress",
                           *sum((["--set", s] for s in tiny.sets), [])],
                  "cannot create the run directory", str(out))


def test_a_playground_env_without_the_extra_exits_2(tmp_path, capsys, monkeypatch):
  from rlax_inf.envs import playground  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(playground, "available", lambda: False)
  _one_line_error(capsys, ["train", "--env", "CartpoleBalance", "--out", str(tmp_path / "r")],
                  "'CartpoleBalance'", "pip install 'rlax-inf[playground]'")


# --- resume rules -------------------------------------------------------------------

@pytest.mark.parametrize("flags, needles", [
    (["--set", "batch_size=32"], ["batch_size 16 → 32", "only --steps may grow"]),
    (["--env", "cartpole"], ["env 'pendulum' → 'cartpole'"]),
    (["--seeds", "3"], ["num_seeds 2 → 3"]),
    (["--set", "hidden=32,32"], ["hidden (16, 16) → (32, 32)"]),
    (["--agent", "sac-fkl"], ["holds a sac run", "cannot change the agent"]),
    (["--steps", "64"], ["cannot shrink", "128", "64"]),
])
def test_resume_refuses_changes_other_than_more_steps(tiny, tmp_path, capsys, flags, needles):
  out = tmp_path / "run"
  _fake_run(out, tiny, evaluations=(1,), intervals=3)
  files = {p: (out / p).read_text() for p in ("config.json", "metrics.jsonl")}
  _one_line_error(capsys, _resume(out, *flags), *needles)
  assert {p: (out / p).read_text() for p in files} == files


def test_steps_states_what_it_will_run_and_resume_extends(tiny, tmp_path, capsys, monkeypatch):
  out = tmp_path / "run"
  _fake_run(out, tiny, evaluations=(1,), intervals=1, replay_size=10**6)
  _counting_intervals(monkeypatch)
  assert cli.main(_resume(out, "--steps", "150")) == 0
  err = capsys.readouterr().err
  assert ("160 env steps per seed × 2 seed(s) = prefill 32 + 4 evaluation interval(s) × 32 "
          "(--steps 150 rounded") in err, err
  assert "resuming after evaluation 1" in err
  config = json.loads((out / "config.json").read_text())
  assert config["train"]["total_steps"] == 150
  assert config["replay_capacity"] == 64  # the buffer the run had: prefill + one interval
  assert [r["evaluation"] for r in run.read_metrics(str(out))] == [1, 1, 2, 2, 3, 3, 4, 4]
  # Resuming again without --steps keeps the extended budget (nothing left to train).
  assert cli.main(_resume(out)) == 0


# --- a real run: a damaged checkpoint and a cut metrics line lose nothing ------------

def _checkpoint(out, step):
  with ocp.StandardCheckpointer() as c:
    return c.restore(os.path.join(os.path.abspath(out), "checkpoints", str(step), "default"))


def test_damaged_latest_checkpoint_and_cut_metrics_resume_to_the_same_run(
    tiny, finished_run, tmp_path, capsys):
  ref, out = finished_run.out, tmp_path / "damaged"  # 12 evaluations; checkpoints 11, 12
  shutil.copytree(ref, out)
  for root, _, files in os.walk(out / "checkpoints" / "12"):  # every data file cut short
    if os.path.basename(root) == "d":
      for f in files:
        os.truncate(os.path.join(root, f), 10)
  text = (out / "metrics.jsonl").read_text()
  (out / "metrics.jsonl").write_text(text[:-40])  # the last row cut short by a crash
  # eval falls back without changing anything.
  assert cli.main(["eval", str(out)]) == 0
  captured = capsys.readouterr()
  assert "checkpoint 12:" in captured.err and "falling back" in captured.err
  assert "Traceback" not in captured.err and "TensorStore({" not in captured.err
  assert [l.split()[1] for l in captured.out.splitlines()[1:]] == ["384", "384"]  # ckpt 11
  # The resume in process (the finished run is the CLI's subprocess path).
  assert cli.main(tiny.train_argv(out, "--resume")) == 0
  err = capsys.readouterr().err
  assert "falling back" in err and "resuming from checkpoint 11" in err
  assert "skipped 1 unreadable line" in err
  assert (out / "metrics.jsonl").read_text().startswith(text[:-40])  # appended only
  jax.tree.map(np.testing.assert_array_equal, _checkpoint(ref, 12), _checkpoint(out, 12))
  strip = lambda rows: [{k: v for k, v in r.items() if k not in ("wall_s", "env_steps_per_s")}
                        for r in rows]
  assert strip(run.read_metrics(str(out))) == strip(run.read_metrics(str(ref)))


# --- progress ----------------------------------------------------------------------

def test_the_bar_moves_between_evaluations_with_one_rate(capsys):
  import time  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import report  # pylint: disable=g-import-not-at-top
  bar = report.Progress(total=1000, initial=0, num_seeds=2, desc="x", tick_s=0.02)
  bar.start_interval(100, "evaluation 1/10 (compiling first)")
  time.sleep(0.1)
  bar.end_interval(100, dict(eval_return=np.array([1.0, 3.0])))
  assert bar._bar.n == 200  # pylint: disable=protected-access  # env steps × seeds
  bar.start_interval(100, "")
  time.sleep(0.08)  # less than the last interval took: between 200 and 400, moving
  moved = bar._bar.n  # pylint: disable=protected-access
  bar.end_interval(200, dict(eval_return=np.array([2.0, 2.0])))
  bar.close()
  assert 200 < moved < 400, moved
  err = capsys.readouterr().err
  assert "compiling first" in err and "eval return 2.0 ± 0.0" in err
  last = err.replace("\r", "\n").strip().splitlines()[-1]
  assert last.count("/s") == 1 and "env steps/s" in last, last  # one rate
