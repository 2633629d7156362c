"""Two processes on 127.0.0.1 (`jax.distributed`, gloo) train like one process with 4 devices.

Both runs go through the real entry point, `rlax-inf train`, on the pure-JAX
pendulum with 4 seeds: the reference as one process with 4 forced host devices,
the distributed run as two processes with 2 devices each (`--coordinator
--num-processes --process-id`). The seed programs never communicate, so every
seed's metrics and final train state must agree; metrics.jsonl must hold every
(evaluation, seed) exactly once (process 0 writes it) and the checkpoint the two
processes wrote together must restore in a third, single-device process.
"""

import json
import os
import socket
import subprocess
import time

import jax
import numpy as np

from rlax_inf.agents import checkpointing
from rlax_inf.agents import run
from rlax_inf.agents import training

SEEDS = 4
EVALUATIONS = 2
DEADLINE_S = 300  # a hang (e.g. a process waiting for a dead peer) fails instead of blocking CI


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(tiny, cache, out, log, devices, *extra, **env):
  cmd = tiny.cmd("train", "--agent", "sac", "--env", "pendulum", "--seeds", str(SEEDS),
                 "--steps", str(32 + EVALUATIONS * 32), "--out", str(out), "--no-progress",
                 *sum((["--set", s] for s in tiny.sets), []), *extra)
  # Optimisation level 0 halves XLA's CPU compile time, which is most of this test;
  # both runs use it, so their programs still match.
  flags = f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
  env = tiny.env(cache, XLA_FLAGS=flags, JAX_PLATFORMS="cpu", **env)
  with open(log, "w") as f:
    return subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)


def _wait_all(procs, logs):
  """Wait for every process; on a failure or past the deadline kill the rest and report."""
  deadline = time.time() + DEADLINE_S
  try:
    while any(p.poll() is None for p in procs):
      failed = [p for p in procs if p.poll() not in (None, 0)]
      if failed or time.time() > deadline:
        break
      time.sleep(0.2)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  report = "\n".join(f"--- {log.name} (exit {p.returncode})\n{log.read_text()[-3000:]}"
                     for p, log in zip(procs, logs))
  assert all(p.returncode == 0 for p in procs), report


def _metrics(out):
  """{(evaluation, seed): row without wall-clock fields}, checking each key occurs once."""
  rows = run.read_metrics(out)
  keys = [(r["evaluation"], r["seed"]) for r in rows]
  assert len(keys) == len(set(keys)), keys  # written once, not once per process
  return {k: {n: v for n, v in r.items() if n not in ("wall_s", "env_steps_per_s")}
          for k, r in zip(keys, rows)}


def test_two_processes_train_like_one_process_with_four_devices(tiny, compile_cache,
                                                                 tmp_path):
  ref, dist = tmp_path / "ref", tmp_path / "dist"
  coordinator = f"127.0.0.1:{_free_port()}"
  logs = [tmp_path / "ref.log", tmp_path / "process0.log", tmp_path / "process1.log"]
  # All three at once. Each of the two processes compiles every program itself:
  # jax_share_binary_between_hosts would compile once, but on CPU (jax 0.10.2) the
  # two processes derive different cache keys for the same program and the
  # receiving one waits forever.
  procs = [_launch(tiny, compile_cache, ref, logs[0], 4)]
  procs += [_launch(tiny, compile_cache, dist, logs[1 + i], 2, "--coordinator", coordinator,
                    "--num-processes", "2", "--process-id", str(i))
            for i in range(2)]
  _wait_all(procs, logs)
  for log in logs:  # every process finished the run and printed the summary
    assert "final eval return" in log.read_text(), log.read_text()[-3000:]

  # metrics.jsonl: every (evaluation, seed) exactly once, equal to the reference.
  a, b = _metrics(ref), _metrics(dist)
  assert sorted(b) == [(e, s) for e in range(1, EVALUATIONS + 1) for s in range(SEEDS)]
  assert sorted(a) == sorted(b)
  for k in a:
    assert a[k].keys() == b[k].keys(), k
    for name in a[k]:
      np.testing.assert_allclose(b[k][name], a[k][name], rtol=1e-5, atol=1e-6,
                                 err_msg=f"{name} at {k}")
  assert json.loads((dist / "config.json").read_text())["train"]["num_seeds"] == SEEDS

  # The two-process checkpoint restores here (one process, one device) through the
  # same path as --resume, and equals the reference's final state.
  agent, train_cfg, agent_cfg = run.load_config(str(dist))
  abstract = training.Trainer(train_cfg, agent_cfg, agent, devices=jax.devices()[:1]
                              ).abstract_state()
  states = []
  for out in (ref, dist):
    mngr = checkpointing.manager(str(out / "checkpoints"))
    states.append(checkpointing.restore(mngr, abstract))
    mngr.close()
  (ref_state, ref_step), (dist_state, dist_step) = states
  assert ref_step == dist_step == EVALUATIONS
  assert list(np.asarray(dist_state.env_steps)) == [32 + EVALUATIONS * 32] * SEEDS
  jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6),
               jax.device_get(ref_state), jax.device_get(dist_state))
  # ... and the seeds really differ (the comparison is not between copies of one seed).
  kernel = np.asarray(dist_state.agent.actor["params"]["Dense_0"]["kernel"])
  assert not np.allclose(kernel[0], kernel[SEEDS - 1])
