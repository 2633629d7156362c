"""EM-family agents' learning benchmark: mpo and virel on Brax inverted_pendulum.

  python -m benchmarks.em_agents [--agents mpo virel] [--seeds 4] [--backend positional]
      Per agent, S seeds vmapped in one program (`training.Trainer`), the loop's
      settings `TRAIN` and the agent's `AGENTS[name]`. Target: the deterministic
      eval return >= 950 on every seed at the last evaluation within 100,000 env
      steps per seed (max return 1000). Writes benchmarks/results/em_agents.json,
      em_agents.md and em_agents.png (the curves of every seed).
  python -m benchmarks.em_agents --quick
      CI size: the pure-JAX pendulum, a few thousand steps, 2 seeds, both agents,
      XLA's LLVM optimisation level 0 (as the tests); checks that everything runs
      and prints the table; writes nothing.

Finished runs are kept in runs/bench_em_agents/ (git-ignored) and reused when the
settings match, so a run killed half-way (the 2-core machine is shared) does
not redo the agents already finished.

Evaluation (the shared `acting.evaluate`): mean first-episode return of
`num_eval_envs` fresh envs with the deterministic policy (tanh of the mean), after
every evaluation interval.
"""

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from benchmarks import _common
from rlax_inf.agents import registry
from rlax_inf.agents import training
from rlax_inf.agents.config import TrainConfig

RESULTS = os.path.join(os.path.dirname(__file__), "results")
CACHE = "runs/bench_em_agents"
TARGET, BUDGET = 950.0, 100_000

#: The loop: 16 envs, 4 updates of batch 256 per vector step (one update per 4 env
#: steps), small networks, an evaluation every 4,992 env steps per seed.
TRAIN = dict(env="inverted_pendulum", backend="positional", total_steps=BUDGET, num_envs=16,
             batch_size=256, grad_updates_per_step=4, prefill_steps=2048, eval_every=5_000,
             num_eval_envs=8, episode_length=1000)
#: Per agent: its config overrides (the rest are the registry's defaults).
AGENTS = {
    "mpo": dict(hidden=(64, 64)),
    "virel": dict(hidden=(64, 64)),
}
QUICK = dict(env="pendulum", backend=None, total_steps=3_072, num_envs=8, batch_size=64,
             prefill_steps=512, eval_every=1_024, num_eval_envs=2, episode_length=100)


def run(name: str, train_kw: dict, agent_kw: dict, seeds: int, cache: str = None) -> dict:
  """Train `seeds` seeds of agent `name` (vmapped); per evaluation: returns and metrics.

  With `cache` (a json path), a finished run with the same settings is read back
  instead of trained, and a new run is written there.
  """
  cfg = TrainConfig(num_seeds=seeds, **train_kw)
  agent_cfg = dataclasses.replace(registry.get(name).config, **agent_kw)
  settings = json.loads(json.dumps(dict(agent=name, train=dataclasses.asdict(cfg),
                                        agent_config=dataclasses.asdict(agent_cfg))))
  if cache and os.path.exists(cache):
    with open(cache) as f:
      cached = json.load(f)
    if {k: cached[k] for k in settings} == settings:
      print(f"  reusing {cache}", flush=True)
      return cached
  trainer = training.Trainer(cfg, agent_cfg, name)
  t0 = time.time()
  ts = trainer.init(trainer.seed_keys())
  rows, walls = [], []
  prefill = trainer.schedule.prefill_vector_steps * cfg.num_envs
  for i in range(trainer.schedule.num_intervals):
    ts, metrics = trainer.run_interval(ts)
    metrics = training.to_host(metrics)
    walls.append(time.time() - t0)
    rows.append({k: np.asarray(v, np.float64).tolist() for k, v in metrics.items()})
    step = prefill + (i + 1) * trainer.env_steps_per_interval
    print(f"  {name} step {step:>7,}  eval "
          f"{np.round(metrics['eval_return'], 1)}  temperature "
          f"{np.round(metrics['temperature'], 4)}  {walls[-1]:.0f} s", flush=True)
  steps = [prefill + (i + 1) * trainer.env_steps_per_interval for i in range(len(rows))]
  curves = {k: [r[k] for r in rows] for k in rows[0]}  # [I][S]
  result = dict(settings, steps=steps, wall_s=walls[-1], first_interval_s=walls[0],
                curves=curves)
  if cache:
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache, "w") as f:
      json.dump(result, f)
  return result


def summarise(result: dict, target: float, budget: int) -> dict:
  """Per seed: final eval return within `budget`, first evaluation >= target, last-3 mean."""
  steps = np.array(result["steps"])
  ret = np.array(result["curves"]["eval_return"])  # [I, S]
  within = steps <= budget
  steps, ret = steps[within], ret[within]
  first = [next((int(s) for s, v in zip(steps, ret[:, j]) if v >= target), None)
           for j in range(ret.shape[1])]
  after = [v for j, f in enumerate(first) if f is not None
           for s, v in zip(steps, ret[:, j]) if s > f]
  final = ret[-1]
  return dict(final=final.tolist(), last3=ret[-3:].mean(0).tolist(),
              first_step_ge_target=first, final_step=int(steps[-1]),
              evaluations_after_first=len(after),
              of_which_ge_target=int(sum(v >= target for v in after)),
              seeds_met=int(np.sum(final >= target)))


def plot(results: dict, out_png: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
  for ax, (name, r) in zip(axes[0], results.items()):
    steps, ret = np.array(r["steps"]), np.array(r["curves"]["eval_return"])
    for j in range(ret.shape[1]):
      ax.plot(steps, ret[:, j], lw=1, alpha=0.7, label=f"seed {j}")
    ax.plot(steps, ret.mean(1), color="k", lw=2, label="mean")
    ax.axhline(TARGET, color="k", ls=":", lw=1, label="target")
    ax.set_title(f"{name} on {r['train']['env']} ({r['train']['backend']})")
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel("deterministic eval return")
    ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)


def _fmt(xs):
  return ", ".join("-" if x is None else f"{x:,.0f}" if isinstance(x, float) else f"{x:,}"
                   for x in xs)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--agents", nargs="*", default=list(AGENTS), choices=list(AGENTS))
  p.add_argument("--seeds", type=int, default=4)
  p.add_argument("--backend", default=TRAIN["backend"])
  p.add_argument("--quick", action="store_true")
  args = p.parse_args(argv)
  seeds = 2 if args.quick else args.seeds
  if args.quick and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    # Read when the backend starts (the first computation), not at import.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()
  train_kw = dict(TRAIN, **QUICK) if args.quick else dict(TRAIN, backend=args.backend)
  budget = train_kw["total_steps"]
  t_start = time.time()
  results, summary = {}, {}
  for name in args.agents:
    print(f"{name}: {train_kw} {AGENTS[name]}", flush=True)
    cache = None if args.quick else os.path.join(CACHE, f"{name}_{train_kw['backend']}.json")
    results[name] = run(name, train_kw, AGENTS[name], seeds, cache)
    summary[name] = dict(summarise(results[name], TARGET, budget),
                         wall_s=results[name]["wall_s"],
                         first_interval_s=results[name]["first_interval_s"])
  total_wall = time.time() - t_start
  md = ["| agent | seeds | env steps/seed | final eval return per seed | "
        "mean of last 3 evals per seed | first step >= 950 per seed | "
        "evals >= 950 after the first | target met (final eval) | wall s (first interval s) |",
        "|---|---|---|---|---|---|---|---|---|"]
  for name, r in summary.items():
    met = "-" if args.quick else f"{r['seeds_met']}/{seeds}"
    md.append(f"| {name} | {seeds} | {r['final_step']:,} | {_fmt(r['final'])} | "
              f"{_fmt(r['last3'])} | {_fmt(r['first_step_ge_target'])} | "
              f"{r['of_which_ge_target']} of {r['evaluations_after_first']} | {met} | "
              f"{r['wall_s']:.0f} ({r['first_interval_s']:.0f}) |")
  machine = _common.machine()
  head = [f"Command: `{_common.command()}`", "",
          f"Machine: {machine['cpu']}, {machine['cores']} CPU cores, jax {machine['jax']} "
          f"({machine['backend']}); this invocation {total_wall:.0f} s (runs with the same "
          f"settings are reused from {CACHE}/).", "",
          f"Loop: {train_kw}, {seeds} seeds vmapped. "
          + ("--quick: no target, a check that everything runs." if args.quick else
             f"Target: deterministic eval return >= {TARGET:.0f} on every seed at the last "
             f"evaluation within {budget:,} env steps."), ""]
  for name in summary:
    head.append(f"* {name}: overrides {AGENTS[name]}, i.e. {results[name]['agent_config']}")
  text = "\n".join(head + [""] + md) + "\n"
  print(text)
  if args.quick:
    return
  png = os.path.join(RESULTS, "em_agents.png")
  plot(results, png)
  text = ("# MPO and VIREL learning benchmark\n\n" + text
          + f"\nLearning curves (every seed): {os.path.basename(png)}\n")
  _common.write_results("em_agents", dict(command=_common.command(), machine=machine,
                                          total_wall_s=total_wall, summary=summary,
                                          results=results), text)


if __name__ == "__main__":
  main()
