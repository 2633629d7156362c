"""A run directory's files, and the rules that keep them trustworthy.

  config.json         the run's configuration, written atomically
  metrics.jsonl       one JSON line per evaluation and seed, only ever appended
  checkpoints/N/      orbax checkpoints after evaluation N (checkpointing.py)
  learning_curves.png the plot (plotting.py)
  .lock               held by the one process that writes the directory; holds its PID

metrics.jsonl is a log: lines are appended and flushed, never rewritten. A
resume from checkpoint N appends a marker line {"resumed_from": N}; readers drop
the rows of evaluations after N written before it (the run that was cut short
wrote them; the resumed run writes them again). A last line cut short by a
crash is skipped with a warning, and the next append starts on a new line.
"""

import errno
import fcntl
import json
import os
import socket
import sys
from typing import Any, Dict, List, Optional

from rlax_inf.agents.errors import UsageError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "learning_curves.png"
CHECKPOINTS = "checkpoints"
DAMAGED = "damaged_checkpoints"
LOCK_FILE = ".lock"
RESUMED_FROM = "resumed_from"


def note(message: str) -> None:
  """One line to stderr for the user (a fallback taken, lines skipped)."""
  print(f"rlax-inf: note: {message}", file=sys.stderr, flush=True)


def describe_os_error(e: OSError) -> str:
  """"path: reason" of an OSError (no traceback, no errno number)."""
  where = e.filename if e.filename is not None else "?"
  return f"{where}: {e.strerror or e}"


def holds_run(out: str) -> bool:
  """Whether `out` holds (part of) a run: a config, metrics or checkpoints."""
  return any(os.path.exists(os.path.join(out, name))
             for name in (CONFIG_FILE, METRICS_FILE, CHECKPOINTS))


def make(out: str) -> None:
  """Create `out`; a UsageError naming the path and the reason if it cannot be."""
  try:
    os.makedirs(out, exist_ok=True)
  except OSError as e:
    raise UsageError(f"cannot create the run directory {out!r} "
                     f"({describe_os_error(e)})") from None


def write_atomic(path: str, text: str) -> None:
  """Write `text` to `path` through a temporary file and a rename (all or nothing)."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


# --- metrics.jsonl ------------------------------------------------------------

def read_metrics(out: str) -> List[Dict[str, Any]]:
  """The rows of `out`/metrics.jsonl in the order written, as the module doc says.

  Unreadable lines (a write cut short) are skipped with one note naming them.
  """
  path = os.path.join(out, METRICS_FILE)
  if not os.path.exists(path):
    return []
  rows, bad = [], []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except ValueError:
        row = None
      if not isinstance(row, dict):
        bad.append(number)
      elif RESUMED_FROM in row:
        rows = [r for r in rows if r.get("evaluation", 0) <= row[RESUMED_FROM]]
      else:
        rows.append(row)
  if bad:
    note(f"skipped {len(bad)} unreadable line(s) of {path} (line "
         f"{', '.join(map(str, bad[:3]))}{', ...' if len(bad) > 3 else ''}; "
         "a write cut short)")
  return rows


def append_metrics(out: str, rows: List[Dict[str, Any]]) -> None:
  """Append `rows` (one JSON line each) to metrics.jsonl and flush them to disk."""
  path = os.path.join(out, METRICS_FILE)
  with open(path, "ab+") as f:
    f.seek(0, os.SEEK_END)
    if f.tell():  # a last line cut short by a crash: start on a new line
      f.seek(-1, os.SEEK_END)
      if f.read(1) != b"\n":
        f.write(b"\n")
    f.write("".join(json.dumps(r) + "\n" for r in rows).encode())
    f.flush()
    os.fsync(f.fileno())


def mark_resumed(out: str, evaluation: int) -> None:
  """Record that the run continues from the checkpoint after `evaluation`."""
  append_metrics(out, [{RESUMED_FROM: evaluation}])


# --- one writer per directory ------------------------------------------------

class Lock:
  """An exclusive lock on a run directory: `.lock`, flock-ed, with the holder's PID.

  The kernel releases a flock when its process dies (SIGKILL included), so a
  lock left by a dead process is stale and taken over; a live holder is named.
  """

  def __init__(self, out: str):
    self.path = os.path.join(out, LOCK_FILE)
    self._fd: Optional[int] = None

  def acquire(self) -> "Lock":
    try:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise UsageError(f"cannot write the run directory ({describe_os_error(e)})") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
      os.close(fd)
      if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
        raise UsageError(f"{os.path.dirname(self.path)!r} is in use by {holder} (lock "
                         f"{self.path}); wait for it to finish or stop it") from None
      raise
    previous = os.pread(fd, 200, 0).decode(errors="replace").strip()
    if previous:
      note(f"taking over the stale lock of {previous}, which no longer runs")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is not None:
      os.ftruncate(self._fd, 0)  # an empty lock file: released cleanly
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
