"""SAC-RKL vs SAC-FKL (Lavington et al., 2021, Figures 2-3): divergence × replay size, FKL's N.

  python -m benchmarks.fkl_vs_rkl [--tasks hopper ...] [--seeds 10] [--report]
      Per task, four settings: the actor step's divergence (reverse KL: SAC; forward
      KL: SAC-FKL with N = 16 resampled actions) × the replay buffer (a small one, the
      paper's 50K scaled to this budget, or the whole run). Then, on the first task,
      SAC-FKL's N ∈ {2, 4, 16, 64} with the whole-run buffer. Every setting trains its
      seeds vmapped in one program (`training.Trainer`, seeds 0..S-1, the same keys in
      every setting). Curves: deterministic eval return, each seed smoothed by an
      EMA of weight 0.9, then mean ± ¼ std over seeds.
      N = 1 (in the paper's sweep) is refused by `SACConfig`: one self-normalised
      weight is 1, so the actor's step −∇ log π(a), a ~ π, has expectation zero.
  --report: train nothing; tabulate finished runs and the intervals done so far.
  --merge-json: settings that neither train now nor sit in the cache are read from
      the written results json (its summaries), so a task added later is reported
      with the earlier ones without training those again.
  --steps N: a shorter budget (cached under its own settings); --no-write: print only.
  python -m benchmarks.fkl_vs_rkl --quick [--out DIR]
      CI size: pure-JAX pendulum, a few hundred steps, 2 seeds, XLA's LLVM optimisation
      level 0; with --out, writes the json, md and plots there (never into results/).

Results: benchmarks/results/fkl_vs_rkl.json, .md (the md keeps its hand-written
reading, below `READING_MARK`, when rewritten), fkl_vs_rkl.png (one panel per
task) and fkl_vs_rkl_n.png (the N sweep).

Resuming: every run caches its train state and rows after each evaluation under
runs/bench_fkl_vs_rkl/ (git-ignored; `benchmarks.em_agents.run`), so a killed
invocation restarts each unfinished setting from its last evaluation and reads
finished settings back. The persistent compilation cache is on (not in --quick).
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Dict, List, Optional

import numpy as np

from benchmarks import _common
from benchmarks import em_agents
from rlax_inf.agents import distributed

RESULTS = _common.RESULTS_DIR
CACHE = "runs/bench_fkl_vs_rkl"
# The machines the committed results ran on (the VM changed between sessions); a run
# written elsewhere (--out) names its own machine (`_common.machine()`).
MACHINE = ("2-core VM, CPU only: hopper and halfcheetah on an Intel Xeon @ 2.00GHz "
           "(sessions 9-11), walker2d and ant on an AMD EPYC (sessions 13 and 15); shared "
           "with two other sessions, so wall times are not speed figures")
EMA = 0.9
BAND = 0.25  # the bands are ± BAND × std over seeds
MAIN_N = 16  # SAC-FKL's N in the divergence × buffer grid (the registry's default)
N_SWEEP = (2, 4, 16, 64)
WHOLE = 1_000_000  # replay_size of "the whole run" (>= every budget here)

#: The loop of every task (brax.training's layout at a CPU-sized scale): 16 envs per seed,
#: 4 updates of batch 256 per vector step (one update per 4 env steps), 64×64 networks.
_LOOP = dict(backend="positional", num_envs=16, batch_size=256, grad_updates_per_step=4,
             prefill_steps=2048, num_eval_envs=2, episode_length=1000)
AGENT = dict(hidden=(64, 64))
TASKS = {
    "hopper": dict(train=dict(_LOOP, env="hopper", total_steps=30_000, eval_every=2_500),
                   small_replay=5_000),
    # The same loop on halfcheetah (the 2 × 2 grid; run in session 11, see the results md).
    "halfcheetah": dict(train=dict(_LOOP, env="halfcheetah", total_steps=30_000,
                                   eval_every=2_500), small_replay=5_000),
    # And on walker2d (the 2 × 2 grid; run in session 13 on a faster VM, see the results md).
    "walker2d": dict(train=dict(_LOOP, env="walker2d", total_steps=30_000, eval_every=2_500),
                     small_replay=5_000),
    # And on ant (the 2 × 2 grid; run in session 15 on the AMD EPYC VM, see the results md).
    "ant": dict(train=dict(_LOOP, env="ant", total_steps=30_000, eval_every=2_500),
                small_replay=5_000),
}
QUICK = dict(train=dict(env="pendulum", backend=None, total_steps=768, num_envs=8,
                        batch_size=32, grad_updates_per_step=2, prefill_steps=128,
                        eval_every=128, num_eval_envs=2, episode_length=50),
             small_replay=256, agent=dict(hidden=(16, 16)), n_sweep=(2, 16))

#: fkl_vs_rkl.md keeps everything from this line on (the hand-written reading).
READING_MARK = _common.READING_MARK


@dataclasses.dataclass(frozen=True)
class Setting:
  task: str
  divergence: str  # "rkl" or "fkl"
  buffer: str  # "small" or "whole"
  n: int  # actions per state in the actor step (1 for RKL: SAC's single pathwise sample)

  @property
  def label(self) -> str:
    div = "RKL" if self.divergence == "rkl" else f"FKL N={self.n}"
    return f"{div}, {self.buffer} buffer"

  @property
  def key(self) -> str:
    return f"{self.task}/{self.divergence}/{self.buffer}/{self.n}"


def settings(tasks: List[str], n_sweep=N_SWEEP) -> List[Setting]:
  """The grid in the order it is trained: per task the 2 × 2 grid, then the N sweep."""
  grid = [Setting(t, d, b, 1 if d == "rkl" else MAIN_N)
          for t in tasks for b in ("whole", "small") for d in ("rkl", "fkl")]
  sweep = [Setting(tasks[0], "fkl", "whole", n) for n in n_sweep if n != MAIN_N]
  return grid[:4] + sweep + grid[4:]


def train_kwargs(task: dict, setting: Setting, steps: Optional[int]) -> dict:
  kw = dict(task["train"])
  if steps:
    kw["total_steps"] = steps
  kw["replay_size"] = task["small_replay"] if setting.buffer == "small" else WHOLE
  if kw["replay_size"] >= kw["total_steps"] and setting.buffer == "small":
    raise ValueError(f"the small buffer ({kw['replay_size']}) must be smaller than the "
                     f"run ({kw['total_steps']} steps)")
  return kw


def agent_of(setting: Setting, agent_kw: dict):
  if setting.divergence == "rkl":
    return "sac", dict(agent_kw)
  return "sac-fkl", dict(agent_kw, num_action_samples=setting.n)


# --- statistics -------------------------------------------------------------


def ema(x: np.ndarray, weight: float = EMA) -> np.ndarray:
  """Exponential moving average along axis 0: s_0 = x_0, s_t = w s_{t-1} + (1 − w) x_t."""
  x = np.asarray(x, np.float64)
  out = np.empty_like(x)
  out[0] = x[0]
  for t in range(1, len(x)):
    out[t] = weight * out[t - 1] + (1.0 - weight) * x[t]
  return out


def bootstrap_diff(a, b, reps: int = 10_000, seed: int = 0):
  """mean(a) − mean(b) and its 95% percentile-bootstrap interval (seeds resampled apart)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  rng = np.random.default_rng(seed)
  da = a[rng.integers(0, len(a), (reps, len(a)))].mean(1)
  db = b[rng.integers(0, len(b), (reps, len(b)))].mean(1)
  lo, hi = np.percentile(da - db, [2.5, 97.5])
  return float(a.mean() - b.mean()), float(lo), float(hi)


def steps_to(steps, curve, level) -> Optional[int]:
  """First env step at which `curve` reaches `level` (None if never)."""
  hit = np.nonzero(np.asarray(curve) >= level)[0]
  return int(steps[hit[0]]) if len(hit) else None


def summarise(result: dict) -> dict:
  """Per seed: mean eval return over the run (the area under the curve / steps), final
  (mean of the last 3 evaluations), best; and the smoothed mean curve."""
  ret = np.array(result["curves"]["eval_return"])  # [I, S]
  smooth = ema(ret)
  return dict(auc=ret.mean(0).tolist(), final=ret[-3:].mean(0).tolist(),
              best=ret.max(0).tolist(), returns=ret.tolist(),
              smooth_mean=smooth.mean(1).tolist(),
              smooth_std=smooth.std(1).tolist(), steps=result["steps"],
              partial=result.get("partial", False), wall_s=result["wall_s"])


def _diff(a: dict, b: dict) -> dict:
  """a − b over the evaluations both have (a partial run is compared where it got to)."""
  n = min(len(a["returns"]), len(b["returns"]))
  ra, rb = np.array(a["returns"][:n]), np.array(b["returns"][:n])
  return dict(auc=bootstrap_diff(ra.mean(0), rb.mean(0)),
              final=bootstrap_diff(ra[-3:].mean(0), rb[-3:].mean(0)),
              upto_step=int(a["steps"][n - 1]))


def compare(summaries: Dict[str, dict], tasks: List[str]) -> dict:
  """FKL − RKL per task and buffer, small − whole per divergence, steps to a level."""
  out = {}
  for t in tasks:
    s = {k.split("/", 1)[1]: v for k, v in summaries.items() if k.startswith(t + "/")}
    c = {}
    for b in ("whole", "small"):
      r, f = s.get(f"rkl/{b}/1"), s.get(f"fkl/{b}/{MAIN_N}")
      if r and f:
        c[f"fkl_minus_rkl_{b}"] = _diff(f, r)
        # Sample efficiency: env steps for the smoothed mean curve to reach 80% of the
        # lower of the two final smoothed means (over the evaluations both have).
        n = min(len(r["steps"]), len(f["steps"]))
        level = 0.8 * min(r["smooth_mean"][n - 1], f["smooth_mean"][n - 1])
        c[f"steps_to_level_{b}"] = dict(
            level=level, rkl=steps_to(r["steps"][:n], r["smooth_mean"][:n], level),
            fkl=steps_to(f["steps"][:n], f["smooth_mean"][:n], level))
    for d, n in (("rkl", 1), ("fkl", MAIN_N)):
      w, sm = s.get(f"{d}/whole/{n}"), s.get(f"{d}/small/{n}")
      if w and sm:
        c[f"small_minus_whole_{d}"] = _diff(sm, w)
    out[t] = c
  return out


# --- plots ------------------------------------------------------------------


def _band(ax, steps, s, label, **kw):
  mean, std = np.array(s["smooth_mean"]), np.array(s["smooth_std"])
  line, = ax.plot(steps, mean, lw=2, label=label, **kw)
  ax.fill_between(steps, mean - BAND * std, mean + BAND * std, color=line.get_color(),
                  alpha=0.2)


def plot(summaries: Dict[str, dict], grid: List[Setting], seeds: int, out_dir: str) -> list:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  tasks = list(dict.fromkeys(s.task for s in grid))
  styles = {("rkl", "whole"): dict(color="C0"), ("rkl", "small"): dict(color="C0", ls="--"),
            ("fkl", "whole"): dict(color="C3"), ("fkl", "small"): dict(color="C3", ls="--")}
  fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4), squeeze=False)
  for ax, t in zip(axes[0], tasks):
    for st in grid:
      if st.task == t and st.n in (1, MAIN_N) and st.key in summaries:
        s = summaries[st.key]
        _band(ax, s["steps"], s, st.label + (" (partial)" if s["partial"] else ""),
              **styles[(st.divergence, st.buffer)])
    ax.set_title(f"{t}: {seeds} seeds, EMA {EMA}, ±{BAND} std")
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel("deterministic eval return")
    ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  paths = [os.path.join(out_dir, "fkl_vs_rkl.png")]
  fig.savefig(paths[0], dpi=110)
  plt.close(fig)
  sweep = [st for st in grid if st.divergence == "fkl" and st.buffer == "whole"
           and st.task == tasks[0] and st.key in summaries]
  fig, ax = plt.subplots(figsize=(6, 4))
  rkl = summaries.get(Setting(tasks[0], "rkl", "whole", 1).key)
  if rkl:
    _band(ax, rkl["steps"], rkl, "RKL (reference)", color="k", ls=":")
  for i, st in enumerate(sorted(sweep, key=lambda s: s.n)):
    s = summaries[st.key]
    _band(ax, s["steps"], s, f"FKL N={st.n}" + (" (partial)" if s["partial"] else ""),
          color=f"C{i + 1}")
  ax.set_title(f"{tasks[0]}: SAC-FKL's N, whole-run buffer ({seeds} seeds)")
  ax.set_xlabel("env steps per seed")
  ax.set_ylabel("deterministic eval return")
  ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  paths.append(os.path.join(out_dir, "fkl_vs_rkl_n.png"))
  fig.savefig(paths[1], dpi=110)
  plt.close(fig)
  return paths


# --- report -----------------------------------------------------------------


def _ms(xs) -> str:
  xs = np.asarray(xs, np.float64)
  return f"{xs.mean():,.0f} ± {xs.std():,.0f}"


def _ci(d) -> str:
  return f"{d[0]:+,.0f} [{d[1]:+,.0f}, {d[2]:+,.0f}]"


def table(summaries: Dict[str, dict], grid: List[Setting]) -> List[str]:
  lines = ["| task | setting | env steps/seed | mean eval return over the run | "
           "final (last 3 evals) | best | wall s |", "|---|---|---|---|---|---|---|"]
  for st in grid:
    s = summaries.get(st.key)
    if s is None:
      lines.append(f"| {st.task} | {st.label} | not run | | | | |")
      continue
    part = " (partial)" if s["partial"] else ""
    lines.append(f"| {st.task} | {st.label} | {s['steps'][-1]:,}{part} | {_ms(s['auc'])} | "
                 f"{_ms(s['final'])} | {_ms(s['best'])} | {s['wall_s']:.0f} |")
  return lines


def comparison_lines(comp: dict) -> List[str]:
  lines = ["| task | comparison | up to env step | Δ mean return over the run [95% CI] | "
           "Δ final return (last 3 evals) [95% CI] |", "|---|---|---|---|---|"]
  names = {"fkl_minus_rkl_whole": "FKL − RKL, whole-run buffer",
           "fkl_minus_rkl_small": "FKL − RKL, small buffer",
           "small_minus_whole_rkl": "small − whole buffer, RKL",
           "small_minus_whole_fkl": f"small − whole buffer, FKL N={MAIN_N}"}
  for t, c in comp.items():
    for k, name in names.items():
      if k in c:
        lines.append(f"| {t} | {name} | {c[k]['upto_step']:,} | {_ci(c[k]['auc'])} | "
                     f"{_ci(c[k]['final'])} |")
  for t, c in comp.items():
    for b in ("whole", "small"):
      if f"steps_to_level_{b}" in c:
        e = c[f"steps_to_level_{b}"]
        lines.append(f"\n{t}, {b} buffer: env steps for the smoothed mean curve to reach "
                     f"{e['level']:,.0f} (80% of the lower final): RKL {e['rkl']}, "
                     f"FKL {e['fkl']}")
  return lines


def headline(comp: dict, seeds: int) -> str:
  parts = []
  for t, c in comp.items():
    for b in ("whole", "small"):
      if f"fkl_minus_rkl_{b}" in c:
        parts.append(f"{t} {b} buffer {_ci(c[f'fkl_minus_rkl_{b}']['auc'])}")
  if not parts:
    return "fkl_vs_rkl: no finished FKL/RKL pair yet"
  return (f"fkl_vs_rkl: FKL − RKL mean eval return over the run ({seeds} seeds, 95% CI): "
          + "; ".join(parts))


def markdown(entry: dict) -> str:
  text = ["# SAC-FKL vs SAC-RKL (Lavington et al., 2021; issue 16 part 1)", "",
          "Tables generated by `benchmarks/fkl_vs_rkl.py`; the reading below them is "
          "written by hand.", "", f"Command: `{entry['command']}`", "",
          f"Machine: {entry['machine']}.", "",
          f"Loop per task: {entry['train']}; small buffer: {entry['small_replay']} "
          f"transitions; whole-run buffer: replay_size {WHOLE:,} (>= the run). "
          f"{entry['seeds']} seeds vmapped per setting (seeds 0..{entry['seeds'] - 1}).", "",
          f"Agents: {entry['agent']} (SACConfig defaults otherwise: brax.training's SAC); "
          f"SAC-FKL with N = {MAIN_N} in the grid.", "",
          "Returns: deterministic policy, first episode of 2 fresh envs per seed, after "
          "every evaluation interval. Mean ± std over seeds.", ""]
  text += table(entry["summaries"], [Setting(**s) for s in entry["grid"]]) + [""]
  text += comparison_lines(entry["comparison"]) + [""]
  text += ["Curves: fkl_vs_rkl.png (per task), fkl_vs_rkl_n.png (N sweep); each seed "
           f"smoothed by an EMA of {EMA}, mean ± {BAND} std over seeds.", "",
           f"Headline: {entry['headline']}", ""]
  return "\n".join(text)


# --- main -------------------------------------------------------------------


def _error(msg: str) -> int:
  print(f"fkl_vs_rkl: error: {msg}", file=sys.stderr)
  return 2


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--tasks", nargs="+", default=["hopper"])
  p.add_argument("--seeds", type=int, default=10)
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--n", type=int, nargs="+", default=list(N_SWEEP),
                 help="SAC-FKL's N values of the sweep on the first task")
  p.add_argument("--report", action="store_true")
  p.add_argument("--only", nargs="+", default=None, metavar="TASK/DIV/BUFFER/N",
                 help="train only these settings (e.g. hopper/fkl/small/16); the others "
                      "are read from the cache if finished")
  p.add_argument("--part", default="0/1", metavar="I/K",
                 help="train only every K-th setting from the I-th (parallel processes "
                      "share the cache; a last --report run tabulates them all)")
  p.add_argument("--host-devices", type=int, default=1,
                 help="split the host CPU into N XLA devices; each setting's seeds are "
                      "sharded over as many as divide --seeds (one per core is fastest)")
  p.add_argument("--no-write", action="store_true")
  p.add_argument("--merge-json", action="store_true",
                 help="read settings missing from the cache from the results json")
  p.add_argument("--quick", action="store_true")
  p.add_argument("--out", default=None, help="where to write (default benchmarks/results; "
                 "--quick writes only with --out)")
  args = p.parse_args(argv)
  unknown = [t for t in args.tasks if t not in TASKS]
  if unknown:
    return _error(f"--tasks: unknown {unknown}; choose from {list(TASKS)}")
  if args.seeds < 2:
    return _error(f"--seeds must be >= 2 (a std over seeds), got {args.seeds}")
  if args.steps is not None and args.steps < 1:
    return _error(f"--steps must be >= 1, got {args.steps}")
  if any(n < 2 for n in args.n):
    return _error(f"--n must be >= 2, got {args.n} (N = 1: one self-normalised weight is 1 "
                  "and FKL's actor step has expectation zero)")
  try:
    part, parts = (int(x) for x in args.part.split("/"))
    assert 0 <= part < parts
  except (ValueError, AssertionError):
    return _error(f"--part must be I/K with 0 <= I < K, got {args.part!r}")
  if not args.quick:
    for t in args.tasks:
      if args.steps is not None and TASKS[t]["small_replay"] >= args.steps:
        return _error(f"--steps {args.steps} must exceed {t}'s small buffer "
                      f"({TASKS[t]['small_replay']} transitions)")
  if args.host_devices > 1:  # before the backend starts
    distributed.split_host_cpu(args.host_devices)
  if args.quick:
    if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
      os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                 + " --xla_backend_optimization_level=0").strip()
    tasks_def = {"pendulum": QUICK}
    tasks, seeds, n_sweep, agent_kw, cache = ["pendulum"], 2, QUICK["n_sweep"], \
        QUICK["agent"], None
    out_dir = args.out
  else:
    from rlax_inf.agents import compile_cache  # pylint: disable=g-import-not-at-top
    compile_cache.configure()
    tasks_def, tasks, seeds, n_sweep, agent_kw, cache = TASKS, args.tasks, args.seeds, \
        args.n, AGENT, CACHE
    out_dir = None if args.no_write or parts > 1 or args.only else (args.out or RESULTS)
  grid = settings(tasks, n_sweep)
  earlier, earlier_path = {}, os.path.join(args.out or RESULTS, "fkl_vs_rkl.json")
  if args.merge_json and not args.quick and os.path.exists(earlier_path):
    with open(earlier_path) as f:
      earlier = json.load(f)["summaries"]
  t_start = time.time()
  summaries = {}
  for i, st in enumerate(grid):
    if i % parts != part or (args.only and st.key not in args.only):
      continue
    task = tasks_def[st.task]
    train_kw = train_kwargs(task, st, None if args.quick else args.steps)
    name, kw = agent_of(st, agent_kw)
    print(f"{st.key}: {name} {kw} replay_size={train_kw['replay_size']}", flush=True)
    result = em_agents.run(name, train_kw, kw, seeds, cache, args.report)
    if result is None and st.key in earlier:
      print(f"  {st.key}: read from {earlier_path}", flush=True)
      summaries[st.key] = earlier[st.key]
      continue
    if result is None:
      print(f"  {st.key}: no interval finished yet", flush=True)
      continue
    summaries[st.key] = summarise(result)
  comp = compare(summaries, tasks)
  head = headline(comp, seeds)
  first = tasks_def[tasks[0]]
  machine = MACHINE if out_dir == RESULTS else "this invocation's: " + ", ".join(
      f"{k} {v}" for k, v in _common.machine().items())
  entry = dict(command=_common.command(), machine=machine, seeds=seeds,
               train=dict(first["train"], **({"total_steps": args.steps} if args.steps
                                               and not args.quick else {})),
               small_replay=first["small_replay"], agent=agent_kw,
               grid=[dataclasses.asdict(s) for s in grid], summaries=summaries,
               comparison=comp, headline=head, invocation_wall_s=time.time() - t_start)
  print("\n".join(table(summaries, grid)))
  print("\n".join(comparison_lines(comp)))
  if out_dir:
    _common.write_results("fkl_vs_rkl", entry, markdown(entry), keep_reading=True,
                          directory=out_dir)
    plot(summaries, grid, seeds, out_dir)
  print(head, flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
