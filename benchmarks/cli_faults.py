"""Cold vs warm start of `rlax-inf`: the persistent compilation cache (agents/compile_cache.py).

  python -m benchmarks.cli_faults [--only small|main]

The figures of benchmarks/results/cli_faults.md (issue 11: run directories and
the CLI); the faults and bad inputs of that file are made and checked by the
tests it names (tests/agents/test_run_faults.py and others), not here.

Runs each command twice in a fresh process with the same new cache directory:
cold (empty cache: every program compiles) and warm (the programs are read
back), each into a new run directory, and records when each stderr line and
each metrics.jsonl row appeared. Two evaluation intervals per run: the second
interval runs a program already loaded, so

  time to the first training step ≈ t(first evaluation row) − (t(second) − t(first)),

the time at which the first interval would have started had it not compiled.
On a loaded machine wall times mostly measure the wait for a core, so the
process CPU time (user + system, all threads) of each run is recorded too.
Writes benchmarks/results/cli_faults.json.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

from benchmarks import _common

SMALL = ["train", "--agent", "sac", "--env", "pendulum", "--seeds", "2", "--steps", "96",
         "--set", "hidden=16,16", "--set", "num_envs=4", "--set", "batch_size=16",
         "--set", "grad_updates_per_step=2", "--set", "prefill_steps=32",
         "--set", "eval_every=32", "--set", "episode_length=20", "--set", "num_eval_envs=2",
         "--no-progress"]
# The main job (its settings, Brax inverted_pendulum 'positional', 4 seeds, both agents)
# with evaluations every 512 env steps instead of 5000, so that two intervals take
# seconds: the programs are the same but for the length of the interval's scan,
# which does not change what compiles.
MAIN = ["main", "--steps", "3072", "--set", "eval_every=512"]


def _timed_run(args, out, cache):
  """Run `rlax-inf ARGS --out OUT` with `cache`; times (s from start) of lines and rows."""
  env = dict(os.environ, PYTHONUNBUFFERED="1", RLAX_INF_COMPILATION_CACHE=cache)
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  start = time.time()
  cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
  proc = subprocess.Popen([sys.executable, "-m", "rlax_inf.agents.cli", *args, "--out", out],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  lines, rows, done = [], {}, threading.Event()

  def read_stderr():
    for line in proc.stderr:
      lines.append((round(time.time() - start, 2), line.rstrip()))

  def poll_metrics():
    while not done.is_set():
      for root, _, files in os.walk(out):
        if "metrics.jsonl" in files:
          with open(os.path.join(root, "metrics.jsonl")) as f:
            evals = {json.loads(l)["evaluation"] for l in f if l.strip().endswith("}")}
          for e in evals:
            rows.setdefault(f"{os.path.relpath(root, out)}:{e}", round(time.time() - start, 2))
      time.sleep(0.05)

  threads = [threading.Thread(target=read_stderr), threading.Thread(target=poll_metrics)]
  for t in threads:
    t.start()
  stdout = proc.stdout.read()
  proc.wait()
  done.set()
  for t in threads:
    t.join()
  if proc.returncode:
    raise RuntimeError(f"{args} exited {proc.returncode}: {lines[-5:]}")
  cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
  cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
  return dict(wall_s=round(time.time() - start, 2), cpu_s=round(cpu, 1), stderr=lines,
              rows=rows, stdout=stdout)


def _first_step(rows, prefix):
  first, second = rows[f"{prefix}:1"], rows[f"{prefix}:2"]
  return dict(first_eval_s=first, second_eval_s=second, interval_s=round(second - first, 2),
              first_training_step_s=round(first - (second - first), 2))


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--only", choices=("small", "main"), default=None)
  args = p.parse_args()
  load0 = os.getloadavg()[0]
  results = dict(command=_common.command(), machine=_common.machine(), runs={})
  for name, cmd, prefixes in (("small", SMALL, ["."]), ("main", MAIN, ["sac", "sac-fkl"])):
    if args.only not in (None, name):
      continue
    with tempfile.TemporaryDirectory() as tmp:
      cache = os.path.join(tmp, "cache")
      entry = dict(command="rlax-inf " + " ".join(cmd) + " --out DIR")
      for phase in ("cold", "warm"):
        r = _timed_run(cmd, os.path.join(tmp, phase), cache)
        entry[phase] = dict(wall_s=r["wall_s"], cpu_s=r["cpu_s"], cache_files=len(os.listdir(cache)),
                            stages=[l for l in r["stderr"] if l[1].startswith("rlax-inf:")],
                            **{p: _first_step(r["rows"], p) for p in prefixes})
        print(name, phase, json.dumps({k: v for k, v in entry[phase].items()
                                       if k != "stages"}), flush=True)
      results["runs"][name] = entry
  results["load_average"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
  path = os.path.join(_common.RESULTS_DIR, "cli_faults.json")
  old = {}
  if args.only and os.path.exists(path):
    with open(path) as f:
      old = json.load(f).get("runs", {})
  results["runs"] = dict(old, **results["runs"])
  with open(path, "w") as f:
    json.dump(results, f, indent=2)
  print(path)


if __name__ == "__main__":
  main()
