"""Third-party noise that every run printed and no user can act on, silenced by the application.

  - Brax warns (twice per run) that it is "not actively being maintained";
    rlax_inf.envs documents which Brax backends it uses and why.
  - mujoco.mjx prints "Failed to import warp: ..." on import where warp-lang
    cannot load (e.g. a CPU-only machine); warp is only for the Playground
    'warp' backend, which names its own requirement when chosen.

Only the CLI calls these; importing the library changes no warning filter.
"""

import contextlib
import io
import sys
import warnings

_BRAX_MAINTENANCE = r"Brax System, piplines and environments are not actively being maintained"


def silence_warnings() -> None:
  """Filter the Brax maintenance warning (see the module doc)."""
  warnings.filterwarnings("ignore", message=_BRAX_MAINTENANCE, category=UserWarning)


def import_mjx() -> None:
  """Import mujoco.mjx, dropping its "Failed to import warp" line; other output passes."""
  if "mujoco.mjx" in sys.modules:
    return
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    import mujoco.mjx  # pylint: disable=g-import-not-at-top,unused-import,import-outside-toplevel
  rest = [l for l in out.getvalue().splitlines() if not l.startswith("Failed to import warp")]
  if rest:
    print("\n".join(rest))
