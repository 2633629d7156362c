"""Shared test settings: CPU, one compilation cache per run, deterministic hypothesis profile."""
import gc
import os
import shutil
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite is dominated by XLA compiling small programs (Brax physics, SAC updates);
# LLVM's optimisation level does not change what a program computes, and level 0
# halves the compile time (tests/agents/test_sac.py: 77 s -> 40 s). Set before any
# test initialises the backend; subprocesses inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()

# `rlax-inf` subprocesses keep one host device (the CLI's default splits the CPU into
# one device per core): the tests' runs and their compiled programs stay those of the
# in-process tests. tests/agents/test_cli.py checks the split itself.
os.environ.setdefault("RLAX_INF_HOST_DEVICES", "1")

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.load_profile("ci")

# One persistent XLA compilation cache for the whole run: both pytest-xdist workers,
# the in-process tests and the `rlax-inf` subprocesses they start read and write the
# same directory, so a program that several tests (or files) compile is compiled once.
# Every run starts cold in a new temporary directory, removed at its end (the process
# that starts the run makes it; the xdist workers and the subprocesses inherit it
# through the environment). The cache key holds the program's HLO, the compile
# options, the XLA flags and the jax/jaxlib versions, so an entry is never reused for
# another program. RLAX_INF_TEST_JAX_CACHE=DIR keeps the cache in DIR across runs
# (faster reruns); =off runs without it.
CACHE_ENV = "RLAX_INF_TEST_JAX_CACHE"
_made_here = []


def pytest_configure(config):
  del config
  path = os.environ.get(CACHE_ENV)
  if path is None:  # the first process of this run: a new, cold cache
    path = tempfile.mkdtemp(prefix="rlax-inf-tests-jax-cache-")
    _made_here.append(path)
    os.environ[CACHE_ENV] = path
  if path.strip().lower() in ("off", "0", ""):
    return
  path = os.path.abspath(path)
  os.makedirs(path, exist_ok=True)
  # Before jax is imported (it reads these when it is), here and in every subprocess.
  settings_ = dict(JAX_COMPILATION_CACHE_DIR=path,
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  os.environ.update(settings_)
  if "jax" in sys.modules:  # a plugin imported it already
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
  del config
  for path in _made_here:
    shutil.rmtree(path, ignore_errors=True)


def pytest_sessionfinish(session):
  """An xdist worker collects its garbage (the tests' jax arrays, traces and programs)
  before it reports that it has finished, and not after: execnet gives a worker 5 s to
  end after that report, then sends it SIGINT, which a long collection at exit turned
  into a KeyboardInterrupt traceback from jax's `_xla_gc_callback` at the end of every
  run. The results are all reported by now; only the shutdown is left."""
  del session
  if os.environ.get("PYTEST_XDIST_WORKER"):
    gc.collect()
    gc.freeze()  # what is left is never scanned again
    gc.disable()
