"""`rlax-inf` CLI: bad input, a short training run, eval/plot, kill-and-resume equality."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rlax_inf.agents import cli


@pytest.fixture(autouse=True)
def _compilation_cache_of_this_session(monkeypatch, compile_cache):
  """In-process `cli.main` calls use the session's cache, not ~/.cache (compile_cache.py)."""
  monkeypatch.setenv("RLAX_INF_COMPILATION_CACHE", compile_cache)


def _one_line_error(capsys, argv, *needles):
  """Exit code 2 and one error line naming `needles`; other lines only say what started."""
  code = cli.main(argv)
  err = capsys.readouterr().err.strip()
  assert code == 2, err
  lines = err.splitlines()
  errors = [l for l in lines if l.startswith("rlax-inf: error:")]
  assert len(errors) == 1 and "Traceback" not in err, err
  assert all(l.startswith("rlax-inf: ") for l in lines), err
  for n in needles:
    assert n in errors[0], (n, err)
  return errors[0]


@pytest.mark.parametrize("argv, needles", [
    (["--agent", "ppo", "--env", "pendulum"], ["'ppo'", "sac", "sac-fkl"]),
    (["--env", "nowhere"], ["'nowhere'", "pendulum", "inverted_pendulum"]),
    (["--env", "inverted_pendulum", "--backend", "warp9"], ["'warp9'", "generalized", "positional"]),
    (["--env", "pendulum", "--set", "learning_rate=1"], ["'learning_rate'", "actor_lr", "batch_size"]),
    (["--env", "pendulum", "--set", "batch_size=big"], ["batch_size", "'big'"]),
    (["--env", "cartpole"], ["discrete", "cartpole"]),
    # An agent that cannot serve the env names the envs it can.
    (["--agent", "sql", "--env", "inverted_pendulum"],
     ["sql needs discrete actions", "'inverted_pendulum'", "cartpole", "gridworld"]),
    (["--agent", "sac-fkl", "--env", "four_rooms"], ["continuous", "pendulum"]),
    # Another agent's key names this agent's keys.
    (["--agent", "sql", "--env", "cartpole", "--set", "policy_loss=fkl"],
     ["'policy_loss'", "sql's keys", "n_step", "temperature"]),
    (["--agent", "klpg", "--env", "cartpole", "--set", "num_envs=6", "--set",
      "num_minibatches=4"], ["num_envs=6", "num_minibatches=4"]),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, needles):
  _one_line_error(capsys, ["train", "--out", str(tmp_path / "run"), *argv], *needles)
  assert not os.path.exists(tmp_path / "run" / "config.json")


def test_unknown_subcommand_and_eval_of_non_run(capsys, tmp_path):
  with pytest.raises(SystemExit) as e:
    cli.main(["fly"])
  assert e.value.code == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1
  _one_line_error(capsys, ["eval", str(tmp_path)], "not a run directory")


def _final_state(out):
  ckpt = os.path.join(out, "checkpoints")
  step = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
  with ocp.StandardCheckpointer() as c:
    return step, c.restore(os.path.join(os.path.abspath(ckpt), str(step), "default"))


def test_train_smoke_then_refuse_overwrite_eval_and_plot(finished_run, tmp_path, capsys):
  out = finished_run.out  # `rlax-inf train` in a subprocess (conftest.py), read only here
  assert "final eval return" in finished_run.stdout
  rows = [json.loads(l) for l in open(out / "metrics.jsonl")]
  assert len(rows) == 12 * 2  # 12 evaluations × 2 seeds
  for key in ("step", "seed", "eval_return", "wall_s", "critic_loss", "actor_loss",
              "temperature", "eval_length_stochastic"):
    assert all(key in r and np.isfinite(r[key]) for r in rows), key
  assert sorted({r["seed"] for r in rows}) == [0, 1]
  assert json.load(open(out / "config.json"))["agent"] == "sac"
  assert os.path.getsize(out / "learning_curves.png") > 1000
  # Existing run without --resume: refused, untouched.
  before = open(out / "metrics.jsonl").read()
  _one_line_error(capsys, ["train", "--env", "pendulum", "--out", str(out)], "--resume")
  assert open(out / "metrics.jsonl").read() == before
  assert cli.main(["plot", str(out), "--ema", "0.5", "--out", str(tmp_path / "p.png")]) == 0
  assert os.path.getsize(tmp_path / "p.png") > 1000
  # Bad plot arguments: one line, exit 2, naming the valid values.
  _one_line_error(capsys, ["plot", str(out), "--key", "nonexistent"], "'nonexistent'",
                  "eval_return", "critic_loss")
  for ema in ("1.5", "-3", "1"):
    with pytest.raises(SystemExit) as e:
      cli.main(["plot", str(out), "--ema", ema])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[0, 1)" in err, err
  _one_line_error(capsys, ["plot", str(out), "--out", str(tmp_path / "no" / "dir" / "p.png")],
                  "no" + os.sep + "dir")


def test_non_finite_loss_stops_with_clear_message(tiny, tmp_path, capsys):
  out = tmp_path / "nan"
  # In process (the subprocess path is the finished run's): the same programs but init.
  assert cli.main(tiny.train_argv(out, "--set", "init_temperature=nan")) == 1
  err = capsys.readouterr().err
  assert "non-finite" in err and "_loss=[nan" in err
  assert "no checkpoint was written" in err and "is kept" not in err
  assert "Traceback" not in err
  assert not [d for d in os.listdir(out / "checkpoints") if d.isdigit()]


def test_sigkill_and_resume_gives_the_same_parameters(tiny, compile_cache, finished_run,
                                                       tmp_path, capsys):
  ref = finished_run.out  # the same run, not interrupted: 12 evaluations, a checkpoint each
  out = tmp_path / "killed"
  proc = subprocess.Popen(tiny.cmd(*tiny.train_argv(out)), env=tiny.env(compile_cache),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  ckpt = out / "checkpoints"
  while time.time() < deadline:
    done = [int(d) for d in os.listdir(ckpt) if d.isdigit()] if ckpt.exists() else []
    if done and max(done) >= 2:
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  killed_at = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
  assert killed_at < 12, "the run finished before it could be killed"
  # Resumed in process: the killed run's lock on the directory died with it.
  assert cli.main(tiny.train_argv(out, "--resume")) == 0, capsys.readouterr().err
  (step_a, a), (step_b, b) = _final_state(ref), _final_state(out)
  assert step_a == step_b == 12
  jax.tree.map(np.testing.assert_array_equal, a, b)
  # Rows the killed run wrote after its last checkpoint stay in the file (it is only
  # appended to); the reader drops them at the resume marker.
  from rlax_inf.agents import run  # pylint: disable=g-import-not-at-top
  rows = run.read_metrics(str(out))
  assert [r["evaluation"] for r in rows] == [e for e in range(1, 13) for _ in range(2)]


# --- checkpoints that don't fit, multi-host flags ----------------------------

def _fake_run(out, tiny, checkpoint_hidden=(16, 16), config_hidden=(16, 16), edit=None):
  """A run directory (config.json, metrics.jsonl, one checkpoint) without training.

  The checkpoint holds zeros in the train state of `checkpoint_hidden`;
  config.json says `config_hidden`; `edit` rewrites the state's tree first (an
  older version of the code with other fields).
  """
  from rlax_inf.agents import checkpointing, run, sac, training
  cfg = tiny.train_config(num_seeds=2)
  abstract = training.Trainer(cfg, sac.SACConfig(hidden=checkpoint_hidden), "sac"
                              ).abstract_state()
  state = jax.tree.map(lambda s: jax.device_put(np.zeros(s.shape, s.dtype), s.sharding),
                       abstract)
  os.makedirs(out)
  run.save_config(str(out), "sac", cfg, sac.SACConfig(hidden=config_hidden))
  (out / "metrics.jsonl").write_text(json.dumps(dict(step=64, seed=0, evaluation=1)) + "\n")
  mngr = checkpointing.manager(str(out / "checkpoints"))
  checkpointing.save(mngr, 1, edit(state) if edit else state)
  mngr.close()


def _older_state(state):
  """The train state as an older version might have stored it: a renamed field, one more."""
  return dict(agent=state.agent, replay=state.replay, env_state=state.env_state,
              rng=state.key, env_steps=state.env_steps, evaluations=state.evaluations,
              episode=state.env_steps)


@pytest.mark.parametrize("kind, needles", [
    ("other config", ["agent.actor.params.Dense_0.bias", "(2, 16)", "(2, 32)"]),
    ("older version", ["different train state: it lacks key; it has episode and 1 more"]),
])
def test_resume_from_a_checkpoint_that_does_not_fit_exits_2(capsys, tiny, tmp_path, kind,
                                                            needles):
  out = tmp_path / "run"
  if kind == "other config":  # e.g. config.json edited after the checkpoint was written
    _fake_run(out, tiny, checkpoint_hidden=(16, 16), config_hidden=(32, 32))
  else:
    _fake_run(out, tiny, edit=_older_state)
  files = {p: (out / p).read_text() for p in ("config.json", "metrics.jsonl")}
  err = _one_line_error(capsys, ["train", "--out", str(out), "--resume", "--no-progress"],
                        repr(str(out)), "checkpoint", "another --out", *needles)
  assert err.startswith("rlax-inf: error: cannot resume"), err
  assert {p: (out / p).read_text() for p in files} == files  # nothing was touched
  assert os.listdir(out / "checkpoints") == ["1"]
  _one_line_error(capsys, ["eval", str(out)], repr(str(out)), "checkpoint", *needles)
  # Without --resume the existing run is refused before its checkpoint is looked at.
  _one_line_error(capsys, ["train", "--env", "pendulum", "--out", str(out)], "already holds",
                  "--resume")
  assert {p: (out / p).read_text() for p in files} == files


def test_resume_of_a_run_written_by_another_version_exits_2(capsys, tiny, tmp_path):
  out = tmp_path / "run"
  _fake_run(out, tiny)
  config = json.loads((out / "config.json").read_text())
  config["train"]["replay_ratio"] = 4  # a field this version does not have
  (out / "config.json").write_text(json.dumps(config))
  _one_line_error(capsys, ["train", "--out", str(out), "--resume"], repr(str(out)),
                  "replay_ratio", "another --out")


@pytest.mark.parametrize("flags, needle", [
    (["--coordinator", "127.0.0.1:1234"], "--num-processes"),
    (["--num-processes", "2", "--process-id", "0"], "--coordinator"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id"),
])
def test_incomplete_multi_host_flags_exit_2(capsys, tmp_path, flags, needle):
  _one_line_error(capsys, ["train", "--env", "pendulum", "--out", str(tmp_path / "run"),
                           *flags], needle)
  assert not os.path.exists(tmp_path / "run")


def test_help_shows_defaults_and_what_resume_keeps(capsys):
  with pytest.raises(SystemExit):
    cli.main(["train", "--help"])
  text = " ".join(capsys.readouterr().out.split())
  for needle in ("default sac", "default inverted_pendulum", "default 50,000",
                 "rounds it up", "only --steps may change", "compilation-cache"):
    assert needle in text, needle
  with pytest.raises(SystemExit):
    cli.main(["plot", "--help"])
  assert "(default: eval_return)" in capsys.readouterr().out


def test_list_is_static_and_complete():
  """`rlax-inf list` builds no env and imports neither Brax nor Playground (fast)."""
  code = ("import contextlib, io, json, sys\n"
          "from rlax_inf.agents import cli\n"
          "buf = io.StringIO()\n"
          "with contextlib.redirect_stdout(buf):\n"
          "  rc = cli.main(['list'])\n"
          "print(json.dumps([rc, buf.getvalue(), 'brax' in sys.modules,\n"
          "                  'mujoco_playground' in sys.modules]))\n")
  res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, timeout=300)
  rc, out, brax_imported, playground_imported = json.loads(res.stdout.splitlines()[-1])
  assert rc == 0 and not brax_imported and not playground_imported
  from rlax_inf import envs  # pylint: disable=g-import-not-at-top
  for name in envs.list_envs():
    assert name in out, name
  lines = {l.split()[0]: l.split() for l in out.splitlines() if l.startswith("  ")}
  assert lines["hopper"][:3] == ["hopper", "11", "3"] and lines["hopper"][3] == "d"
  assert "cartpole (4, 2)" in out


# --- the compilation cache and third-party noise -------------------------------

def test_compilation_cache_is_on_by_default_and_can_be_moved_or_disabled(tmp_path, monkeypatch,
                                                                        capsys):
  from rlax_inf.agents import compile_cache  # pylint: disable=g-import-not-at-top
  before = jax.config.jax_compilation_cache_dir
  try:
    monkeypatch.delenv("RLAX_INF_COMPILATION_CACHE", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    default = str(tmp_path / "xdg" / "rlax-inf" / "jax")
    assert compile_cache.configure() == default and os.path.isdir(default)
    assert jax.config.jax_compilation_cache_dir == default
    assert compile_cache.configure(str(tmp_path / "flag")) == str(tmp_path / "flag")
    monkeypatch.setenv("RLAX_INF_COMPILATION_CACHE", str(tmp_path / "env"))
    assert compile_cache.configure() == str(tmp_path / "env")
    assert compile_cache.configure("off") is None
    monkeypatch.setenv("RLAX_INF_COMPILATION_CACHE", "off")
    assert compile_cache.configure() is None
    (tmp_path / "file").write_text("")
    assert compile_cache.configure(str(tmp_path / "file" / "cache")) is None  # goes on
    assert "no compilation cache" in capsys.readouterr().err
  finally:
    jax.config.update("jax_compilation_cache_dir", before)


def test_the_cli_silences_the_brax_maintenance_warning():
  import warnings  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import quiet  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    quiet.silence_warnings()
    warnings.warn("Brax System, piplines and environments are not actively being maintained. "
                  "Please see MJX", UserWarning)
    warnings.warn("another warning", UserWarning)
  assert [str(w.message) for w in caught] == ["another warning"]


def _host_devices_flags(monkeypatch, argv, env=None, xla_flags=None, initialized=False):
  """XLA_FLAGS after `cli._host_devices` on the parsed `argv` of a real command line."""
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda: initialized)
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
  for name, value in (("RLAX_INF_HOST_DEVICES", env), ("XLA_FLAGS", xla_flags)):
    if value is None:
      monkeypatch.delenv(name, raising=False)
    else:
      monkeypatch.setenv(name, value)
  args = cli.build_parser().parse_args(argv)
  args.command_line = True
  cli._host_devices(args)  # pylint: disable=protected-access
  return os.environ.get("XLA_FLAGS")


def test_host_devices_split_the_cpu_before_the_backend_starts(monkeypatch):
  count = "--xla_force_host_platform_device_count"
  train = ["train", "--out", "x"]
  # auto: one device per usable core (3 here); other flags are kept.
  assert _host_devices_flags(monkeypatch, train, xla_flags="--a=1") == f"--a=1 {count}=3"
  assert _host_devices_flags(monkeypatch, ["main"]) == f"{count}=3"
  # An explicit count wins over XLA_FLAGS; the default and $RLAX_INF_HOST_DEVICES do not.
  assert _host_devices_flags(monkeypatch, train + ["--host-devices", "2"],
                             xla_flags=f"{count}=4 --b") == f"--b {count}=2"
  assert _host_devices_flags(monkeypatch, train, xla_flags=f"{count}=4") == f"{count}=4"
  assert _host_devices_flags(monkeypatch, train, env="2") == f"{count}=2"
  assert _host_devices_flags(monkeypatch, train, env="1") is None
  assert _host_devices_flags(monkeypatch, train + ["--host-devices", "1"]) is None
  # Multi-host runs and an already started backend are left alone.
  assert _host_devices_flags(monkeypatch, train + ["--coordinator", "h:1"]) is None
  assert _host_devices_flags(monkeypatch, train, initialized=True) is None
  # A bad environment value is a usage error naming the variable.
  with pytest.raises(cli.UsageError, match="RLAX_INF_HOST_DEVICES"):
    _host_devices_flags(monkeypatch, train, env="many")


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_bad_host_devices_exit_2(capsys, tmp_path, value):
  with pytest.raises(SystemExit) as e:
    cli.main(["train", "--out", str(tmp_path / "run"), f"--host-devices={value}"])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  errors = [l for l in err.splitlines() if "error" in l]  # after "rlax-inf: starting"
  assert len(errors) == 1 and "Traceback" not in err, err
  assert "--host-devices" in errors[0] and value in errors[0], err
