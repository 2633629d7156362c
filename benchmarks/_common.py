"""Shared helpers for benchmark scripts: timing and machine description."""

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import jax


def machine() -> Dict[str, str]:
  """A description of the machine the benchmark ran on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  dev = jax.devices()[0]
  return {
      "cpu": cpu,
      "cores": str(os.cpu_count()),
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "device": getattr(dev, "device_kind", str(dev)),
      "python": platform.python_version(),
  }


def command() -> str:
  """The command line that ran this script."""
  return " ".join(["python -m " + sys.modules["__main__"].__spec__.name
                   if getattr(sys.modules["__main__"], "__spec__", None) else sys.argv[0]]
                  + [shlex.quote(a) for a in sys.argv[1:]])


def time_interleaved(fns: Dict[str, Callable[[], object]], repeats: int = 20,
                     warmup: int = 2) -> Dict[str, Dict[str, float]]:
  """Times zero-argument jitted callables, interleaving them run by run.

  Interleaving makes ratios robust to load that drifts during the run. Each
  call is followed by `block_until_ready`.

  Returns:
    name -> {"median_s", "min_s"} over `repeats` runs.
  """
  for fn in fns.values():
    for _ in range(warmup):
      jax.block_until_ready(fn())
  samples: Dict[str, List[float]] = {k: [] for k in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      samples[name].append(time.perf_counter() - t0)
  return {k: {"median_s": statistics.median(v), "min_s": min(v)} for k, v in samples.items()}


#: Where `write_results` writes.
RESULTS_DIR = os.path.join(os.path.dirname(__file__), "results")


def write_results(name: str, payload: dict, markdown: str, keep_reading: bool = False,
                  directory: Optional[str] = None) -> None:
  """Writes {directory}/{name}.json and .md (default directory: `RESULTS_DIR`).

  With `keep_reading`, the hand-written reading of the old .md (from
  `READING_MARK` on, see `kept_reading`) follows the new `markdown`.
  """
  directory = RESULTS_DIR if directory is None else directory
  os.makedirs(directory, exist_ok=True)
  md_path = os.path.join(directory, f"{name}.md")
  reading = kept_reading(md_path) if keep_reading else ""
  with open(os.path.join(directory, f"{name}.json"), "w") as f:
    json.dump(payload, f, indent=2)
  with open(md_path, "w") as f:
    f.write(markdown + ("\n" + reading if reading else ""))


def run_child(module: str, args: List[str], cache_dir: str, devices: int = 1):
  """`python -m module *args` in a fresh process, timed from its launch.

  The child gets its own persistent compilation cache (`cache_dir`; every
  program is cached) and, for `devices` > 1, that many host devices.

  Returns:
    (the completed process, wall seconds, launch time `time.time()`); the
    launch time is passed to the child as its last argument so that it can
    timestamp its own records on the same clock.
  """
  # The CPU unless `RLAX_INF_BENCH_PLATFORM` names another (e.g. "cuda" on a GPU machine).
  platform_name = os.environ.get("RLAX_INF_BENCH_PLATFORM", "cpu")
  env = dict(os.environ, JAX_PLATFORMS=platform_name, JAX_COMPILATION_CACHE_DIR=cache_dir,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  if devices > 1 and platform_name == "cpu":
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                        + f" --xla_force_host_platform_device_count={devices}")
  t0 = time.time()
  proc = subprocess.run([sys.executable, "-m", module, *args, repr(t0)], env=env,
                        capture_output=True, text=True, check=False,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return proc, time.time() - t0, t0


#: Marks the hand-written reading of a results .md that regenerating its tables keeps.
READING_MARK = "<!-- reading: written by hand, kept when the tables are regenerated -->"


def kept_reading(md_path: str) -> str:
  """The part of `md_path` from `READING_MARK` on ("" if the file or the mark is missing)."""
  if not os.path.exists(md_path):
    return ""
  with open(md_path) as f:
    old = f.read()
  return old[old.index(READING_MARK):] if READING_MARK in old else ""
