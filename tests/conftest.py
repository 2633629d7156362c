"""Shared test settings: CPU, deterministic hypothesis profile."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite is dominated by XLA compiling small programs (Brax physics, SAC updates);
# LLVM's optimisation level does not change what a program computes, and level 0
# halves the compile time (tests/agents/test_sac.py: 77 s -> 40 s). Set before any
# test initialises the backend; subprocesses inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.load_profile("ci")
