"""Learning curves from runs' metrics.jsonl: mean ± std over seeds, optional EMA."""

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np


def ema(x: np.ndarray, alpha: float) -> np.ndarray:
  """Exponential moving average along the last axis: s_t = α s_{t−1} + (1 − α) x_t, s_0 = x_0."""
  if alpha <= 0:
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


def plot_runs(dirs: Sequence[str], out_png: str, key: str = "eval_return",
              smoothing: float = 0.0, title: Optional[str] = None) -> str:
  """Plot one curve per run directory (label: agent and env) into `out_png`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import run  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  envs = set()
  for d in dirs:
    rows = run.read_metrics(d)
    if not rows:
      continue
    with open(os.path.join(d, run.CONFIG_FILE)) as f:
      cfg = json.load(f)
    envs.add(cfg["train"]["env"])
    steps, values = curves(rows, key)
    values = ema(values, smoothing)
    mean, std = values.mean(0), values.std(0)
    label = f"{cfg['agent']} ({values.shape[0]} seeds)"
    ax.plot(steps, mean, label=label)
    ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
  ax.set_xlabel("environment steps per seed")
  ax.set_ylabel(key.replace("_", " ") + (f" (EMA {smoothing})" if smoothing > 0 else ""))
  ax.set_title(title or ", ".join(sorted(envs)))
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(out_png, dpi=120)
  plt.close(fig)
  return out_png
