"""Learning curves from runs' metrics.jsonl: mean ± std over seeds, optional EMA.

Each run is one line with a marker at every evaluation (a run of one evaluation
is one visible point) and a band of ± one standard deviation over seeds,
clipped to the lowest and highest seed at that evaluation: a band never claims
a value no seed reached (e.g. a return above the env's maximum).
"""

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from rlax_inf.agents import run_dir
from rlax_inf.agents.errors import UsageError


def ema(x: np.ndarray, alpha: float) -> np.ndarray:
  """Exponential moving average along the last axis: s_t = α s_{t−1} + (1 − α) x_t, s_0 = x_0."""
  if not 0 <= alpha < 1:
    raise ValueError(f"EMA smoothing must be in [0, 1), got {alpha}")
  if alpha == 0:
    return x
  out = np.empty_like(x, dtype=np.float64)
  out[..., 0] = x[..., 0]
  for t in range(1, x.shape[-1]):
    out[..., t] = alpha * out[..., t - 1] + (1 - alpha) * x[..., t]
  return out


def curves(rows: List[Dict], key: str = "eval_return"):
  """(steps [T], values [S, T]) from metrics rows, seeds as rows (truncated to common length)."""
  by_seed: Dict[int, List] = {}
  for r in sorted(rows, key=lambda r: (r["seed"], r["step"])):
    by_seed.setdefault(r["seed"], []).append((r["step"], r[key]))
  n = min(len(v) for v in by_seed.values())
  steps = np.array([s for s, _ in next(iter(by_seed.values()))[:n]])
  values = np.array([[v for _, v in seq[:n]] for seq in by_seed.values()])
  return steps, values


def _read(d: str, key: str):
  """(config dict, rows) of run directory `d`; UsageErrors name what is missing."""
  rows = run_dir.read_metrics(d)
  if not rows:
    raise UsageError(f"{d!r} has no evaluations in {run_dir.METRICS_FILE}")
  if not all(key in r for r in rows):
    keys = sorted(k for k in rows[0] if k not in ("step", "seed", "evaluation"))
    raise UsageError(f"{d!r} has no metric {key!r}; its metrics: {', '.join(keys)}")
  try:
    with open(os.path.join(d, run_dir.CONFIG_FILE)) as f:
      cfg = json.load(f)
  except (OSError, ValueError):
    cfg = {}
  return cfg, rows


def plot_runs(dirs: Sequence[str], out_png: str, key: str = "eval_return",
              smoothing: float = 0.0, title: Optional[str] = None) -> str:
  """Plot one curve per run directory (label: agent, seeds) into `out_png`.

  Raises:
    UsageError: a directory without evaluations or without `key`; a smoothing
      outside [0, 1).
  """
  if not 0 <= smoothing < 1:
    raise UsageError(f"--ema must be in [0, 1), got {smoothing}")
  runs = [(d,) + _read(d, key) for d in dirs]
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  envs = set()
  for d, cfg, rows in runs:
    envs.add(cfg.get("train", {}).get("env", "?"))
    steps, values = curves(rows, key)
    values = ema(values, smoothing)
    mean, std = values.mean(0), values.std(0)
    n = values.shape[0]
    label = f"{cfg.get('agent', os.path.basename(d.rstrip('/')))}: mean ± std over {n} seed" + (
        "s" if n > 1 else "")
    line, = ax.plot(steps, mean, marker="o", markersize=3, label=label)
    low = np.maximum(mean - std, values.min(0))
    high = np.minimum(mean + std, values.max(0))
    ax.fill_between(steps, low, high, alpha=0.25, color=line.get_color(), linewidth=0)
  ax.set_xlabel("environment steps per seed")
  ax.set_ylabel(key.replace("_", " ") + (f" (EMA {smoothing})" if smoothing > 0 else ""))
  ax.set_title(title or ", ".join(sorted(envs)))
  ax.grid(alpha=0.3)
  ax.legend(title="band: ± 1 std, clipped to the seeds' range", title_fontsize="small",
            fontsize="small")
  fig.tight_layout()
  fig.savefig(out_png, dpi=120)
  plt.close(fig)
  return out_png
