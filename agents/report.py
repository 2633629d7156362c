"""What a run shows its user: stages while it starts, a progress bar while it trains, a summary.

Everything goes to stderr except the summary table (stdout, for scripts).

The bar counts env steps over all seeds, so its one rate is env steps/s over
all seeds. The host sees no step counts inside a compiled interval, so between
evaluations the bar advances at the rate measured over the previous interval
(never past the interval's end) and at each evaluation it is set to the exact
count; during the first interval, which compiles the training program, only the
elapsed time moves.
"""

import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

import numpy as np


def stage(message: str) -> float:
  """Print one line saying what starts now (e.g. what is compiling); returns the time."""
  print(f"rlax-inf: {message}", file=sys.stderr, flush=True)
  return time.time()


class Progress:
  """A tqdm bar over env steps × seeds that moves between evaluations (see the module doc).

  Args:
    total: env steps per seed of the whole run.
    initial: env steps per seed already done (prefill or a resumed run).
    num_seeds: seeds trained at once (the bar counts over all of them).
    desc: the bar's label.
    enabled: False: no bar, no thread (every method is a no-op).
    tick_s: seconds between redraws; by default 0.5 on a terminal and 30 in a
      log file, where every redraw is another line.
  """

  def __init__(self, total: int, initial: int, num_seeds: int, desc: str, enabled: bool = True,
               tick_s: Optional[float] = None):
    self.enabled = enabled
    if not enabled:
      return
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    self._seeds = num_seeds
    # tqdm's own rate would count the compile time of the first interval; ours is
    # the rate of the last interval, in the postfix.
    self._bar = tqdm(total=total * num_seeds, initial=initial * num_seeds, desc=desc,
                     unit_scale=True, dynamic_ncols=True, file=sys.stderr, mininterval=0.5,
                     bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} env steps [{elapsed}"
                                "{postfix}]")
    self._tick_s = tick_s or (0.5 if sys.stderr.isatty() else 30.0)
    self._lock = threading.Lock()
    self._done = initial * num_seeds  # the exact count at the last evaluation
    self._target = self._done  # the count at the end of the running interval
    self._started = time.time()
    self._rate = None  # env steps/s (all seeds) of the previous interval
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._tick, daemon=True)
    self._thread.start()

  def start_interval(self, env_steps: int, label: str) -> None:
    """An interval of `env_steps` env steps per seed starts now."""
    if not self.enabled:
      return
    with self._lock:
      self._target = self._done + env_steps * self._seeds
      self._started = time.time()
      if self._rate is None:
        self._bar.set_postfix_str(label, refresh=True)

  def end_interval(self, env_steps_done: int, metrics: Dict[str, np.ndarray],
                   keys: Sequence[str] = ()) -> None:
    """Set the exact count (env steps per seed) and show the latest evaluation."""
    if not self.enabled:
      return
    with self._lock:
      now = env_steps_done * self._seeds
      self._rate = (now - self._done) / max(time.time() - self._started, 1e-9)
      self._bar.update(now - self._bar.n)
      self._done = self._target = now
      ret = metrics["eval_return"]
      extra = "".join(f"  {k} {np.mean(metrics[k]):.3g}" for k in keys if k in metrics)
      left = (self._bar.total - now) / max(self._rate, 1e-9)
      eta = f", ~{int(left // 60)}:{int(left % 60):02d} left" if left > 0 else ""
      self._bar.set_postfix_str(f"{self._rate:,.0f} env steps/s{eta}, eval return "
                                f"{np.mean(ret):.1f} ± {np.std(ret):.1f}{extra}", refresh=True)

  def _tick(self) -> None:
    while not self._stop.wait(self._tick_s):
      with self._lock:
        if self._rate is not None and self._target > self._done:
          estimate = self._done + self._rate * (time.time() - self._started)
          ahead = int(min(estimate, self._target - 1)) - self._bar.n
          if ahead > 0:
            self._bar.update(ahead)
            continue
        self._bar.refresh()  # the elapsed time moves

  def close(self) -> None:
    if not self.enabled:
      return
    self._stop.set()
    self._thread.join()
    self._bar.close()


def summary_table(summaries: List[Dict]) -> str:
  """The table `train` and `main` print at the end: one row per run."""
  lines = [f"{'agent':<10} {'env':<20} {'seeds':>5} {'env steps':>10} "
           f"{'final eval return':>22} {'min':>8} {'wall s':>8}"]
  for s in summaries:
    r = np.asarray(s["final_returns"], float)
    if r.size:
      ret = f"{r.mean():>12.1f} ± {r.std():>7.1f} {r.min():>8.1f}"
    else:  # no evaluation recorded (e.g. metrics.jsonl lost)
      ret = f"{'-':>22} {'-':>8}"
    lines.append(f"{s['agent']:<10} {s['env']:<20} {len(s['seeds']):>5} {s['step']:>10,} "
                 f"{ret} {s['wall_s']:>8.1f}")
  return "\n".join(lines)

