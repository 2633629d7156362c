"""The CLI's persistent compilation cache: compiled XLA programs kept on disk between runs.

The first run of a config compiles its programs (tens of seconds to minutes on
a CPU); a later run of the same config, or a `--resume`, reads them back and
starts training in seconds. On by default for `rlax-inf`; where it lives:

  --compilation-cache DIR|off          the flag, first
  RLAX_INF_COMPILATION_CACHE=DIR|off   then this environment variable
  JAX_COMPILATION_CACHE_DIR=DIR        then JAX's own (left as JAX reads it)
  $XDG_CACHE_HOME/rlax-inf/jax         else this (~/.cache/rlax-inf/jax)

Library code (`import rlax_inf`) never turns it on: that is the caller's choice.
"""

import os
from typing import Optional

import jax

from rlax_inf.agents import run_dir

ENV_VAR = "RLAX_INF_COMPILATION_CACHE"
OFF = ("off", "none", "0", "false", "")


def default_dir() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "rlax-inf", "jax")


def configure(setting: Optional[str] = None) -> Optional[str]:
  """Turn the cache on in the directory the flag, the environment or the default names.

  Args:
    setting: the `--compilation-cache` flag (a directory or "off"); None: not given.

  Returns:
    The cache directory, or None when off (or when it cannot be created: a note
    says so and the run goes on without it).
  """
  if setting is None:
    setting = os.environ.get(ENV_VAR)
  if setting is None and os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  if setting is not None and setting.strip().lower() in OFF:
    return None
  directory = os.path.abspath(os.path.expanduser(setting or default_dir()))
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    run_dir.note(f"no compilation cache ({run_dir.describe_os_error(e)}); set "
                 f"{ENV_VAR}=DIR or =off")
    return None
  jax.config.update("jax_compilation_cache_dir", directory)
  return directory
