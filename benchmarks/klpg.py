"""KLPG learning benchmark: pure-JAX cartpole and Brax inverted_pendulum, stable EM on vs off.

  python -m benchmarks.klpg [--envs cartpole inverted_pendulum] [--seeds 4]
      Per env, S seeds vmapped in one program, settings `SETTINGS`, once with the
      uniform prior (stable EM off) and once with stable EM on, the same seeds.
      Targets (stable EM off, the agent's default): cartpole final deterministic
      eval return >= 475 on every seed; inverted_pendulum (backend 'positional',
      max return 1000) >= 950 on every seed within 2M env steps per seed.
      Writes benchmarks/results/klpg.json, klpg.md and klpg_stable_em.png.
  python -m benchmarks.klpg --quick [--envs cartpole inverted_pendulum]
      CI size: cartpole only by default (< 60 s on 2 idle cores), a few thousand
      steps, 2 seeds, both variants, XLA's LLVM optimisation level 0 (as the
      tests: same results, about half the compile time); checks that everything
      runs and prints the table; writes nothing. Brax inverted_pendulum's
      programs alone take minutes to compile on 2 cores, so --quick leaves it
      out unless named.

Evaluation (the shared `acting.evaluate`): mean first-episode return of
`num_eval_envs` fresh envs with the deterministic policy (greedy action / tanh of
the mean), after every evaluation interval.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import time

import jax
import numpy as np

from benchmarks import _common
from rlax_inf.agents import klpg
from rlax_inf.agents import training
from rlax_inf.agents.config import TrainConfig

RESULTS = _common.RESULTS_DIR
#: Finished runs are kept here (git-ignored) and reused when the settings match, so a
#: benchmark killed half-way (the 2-core machine is shared) resumes where it stopped.
CACHE = "runs/bench_klpg"

#: Per env: the loop's settings, the agent's settings (stable EM off), the target.
SETTINGS = {
    "cartpole": dict(
        train=dict(env="cartpole", total_steps=500_000, num_envs=128, num_minibatches=4,
                   num_epochs=4, eval_every=20_000, episode_length=500, num_eval_envs=16),
        agent=dict(),
        target=475.0, budget=None),  # no budget: the last evaluation
    "inverted_pendulum": dict(
        # 4,096 env steps per rollout, 25 rollouts per evaluation, 19 evaluations:
        # 1,945,600 env steps per seed, the last whole interval within 2M.
        train=dict(env="inverted_pendulum", backend="positional", total_steps=1_945_600,
                   num_envs=128, num_minibatches=4, num_epochs=4, eval_every=102_400,
                   episode_length=1000, num_eval_envs=16),
        agent=dict(reward_scale=0.1, temperature=0.05, policy_lr=1e-4),
        target=950.0, budget=2_000_000),
}
#: Stable EM on: π0 = the policy refreshed every `prior_period` updates (16 = one rollout's
#: 4 epochs x 4 minibatches, so π0 is the behaviour policy), τ as PPO's KL penalty β.
STABLE_EM = dict(stable_em=True, prior_period=16, temperature=1.0)
#: --quick: the same programs at CI size.
QUICK = dict(total_steps=8_192, num_envs=16, eval_every=4_096, num_eval_envs=2)
QUICK_EPISODE = {"cartpole": 100, "inverted_pendulum": 100}


def run(train_kw: dict, agent_kw: dict, seeds: int, cache: str = None) -> dict:
  """Train `seeds` seeds (vmapped); per evaluation: env steps, returns, KL, wall time.

  With `cache` (a json path), a finished run with the same settings is read back
  instead of trained, and a new run is written there.
  """
  cfg = TrainConfig(num_seeds=seeds, **train_kw)
  agent_cfg = klpg.KLPGConfig(**agent_kw)
  settings = json.loads(json.dumps(dict(train=dataclasses.asdict(cfg),
                                        agent=dataclasses.asdict(agent_cfg))))
  if cache and os.path.exists(cache):
    with open(cache) as f:
      cached = json.load(f)
    if {k: cached[k] for k in ("train", "agent")} == settings:
      print(f"  reusing {cache}", flush=True)
      return cached
  trainer = training.Trainer(cfg, agent_cfg, "klpg")
  t0 = time.time()
  ts = trainer.init(trainer.seed_keys())
  rows, walls = [], []
  for i in range(trainer.schedule.num_intervals):
    ts, metrics = trainer.run_interval(ts)
    metrics = training.to_host(metrics)
    walls.append(time.time() - t0)
    rows.append({k: np.asarray(v, np.float64).tolist() for k, v in metrics.items()})
    print(f"  step {trainer.env_steps_after(i + 1):>9,}  eval "
          f"{np.round(metrics['eval_return'], 1)}  kl {np.round(metrics['kl'], 3)}  "
          f"{walls[-1]:.0f} s", flush=True)
  steps = [trainer.env_steps_after(i + 1) for i in range(len(rows))]
  curves = {k: np.array([r[k] for r in rows]) for k in rows[0]}  # [I, S]
  result = dict(settings, steps=steps, wall_s=walls[-1], first_interval_s=walls[0],
                curves={k: v.tolist() for k, v in curves.items()})
  if cache:
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache, "w") as f:
      json.dump(result, f)
  return result


def summarise(result: dict, target: float, budget: int) -> dict:
  """Per seed: final eval return, first evaluation >= target, mean of the last 3.

  Only evaluations within `budget` env steps count (None: all); "after the
  first" counts, over seeds, the later evaluations and those still >= target.
  """
  steps = np.array(result["steps"])
  ret = np.array(result["curves"]["eval_return"])  # [I, S]
  within = steps <= (steps[-1] if budget is None else budget)
  steps, ret = steps[within], ret[within]
  first = [next((int(s) for s, v in zip(steps, ret[:, j]) if v >= target), None)
           for j in range(ret.shape[1])]
  final = ret[-1]
  after = [v for j, f in enumerate(first) if f is not None
           for s, v in zip(steps, ret[:, j]) if s > f]
  return dict(final=final.tolist(), last3=ret[-3:].mean(0).tolist(),
              first_step_ge_target=first, final_step=int(steps[-1]),
              evaluations_after_first=len(after),
              of_which_ge_target=int(sum(v >= target for v in after)),
              met=bool(np.all(final >= target)), seeds_met=int(np.sum(final >= target)))


def plot(results: dict, out_png: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  envs = list(results)
  fig, axes = plt.subplots(1, len(envs), figsize=(6 * len(envs), 4), squeeze=False)
  for ax, env in zip(axes[0], envs):
    for variant, color in (("stable_em_off", "C0"), ("stable_em_on", "C3")):
      r = results[env][variant]
      steps = np.array(r["steps"])
      ret = np.array(r["curves"]["eval_return"])
      ax.plot(steps, ret, color=color, alpha=0.25, lw=0.8)
      ax.plot(steps, ret.mean(1), color=color, lw=2,
              label=f"stable EM {'on' if variant.endswith('on') else 'off'} (mean of "
                    f"{ret.shape[1]} seeds; thin: each seed)")
    ax.axhline(SETTINGS[env]["target"], color="k", ls=":", lw=1, label="target")
    ax.set_title(f"klpg on {env}")
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel("deterministic eval return")
    ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)


def _cpu() -> str:
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    return next(l.split(":", 1)[1].strip() for l in out.splitlines()
                if l.startswith("Model name"))
  except (OSError, subprocess.CalledProcessError, StopIteration):
    return _common.machine()["cpu"]


def _fmt(xs, digits=0):
  return ", ".join("-" if x is None else f"{x:,.{digits}f}" if isinstance(x, float)
                   else f"{x:,}" for x in xs)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--envs", nargs="*", default=None, choices=list(SETTINGS))
  p.add_argument("--seeds", type=int, default=4)
  p.add_argument("--quick", action="store_true")
  args = p.parse_args(argv)
  seeds = 2 if args.quick else args.seeds
  if args.envs is None:
    args.envs = ["cartpole"] if args.quick else list(SETTINGS)
  if args.quick and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    # Read when the backend starts (the first computation), not at import.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()
  t_start = time.time()
  results, summary = {}, {}
  for env in args.envs:
    s = SETTINGS[env]
    train_kw = dict(s["train"])
    if args.quick:
      train_kw.update(QUICK, episode_length=QUICK_EPISODE[env])
    budget = train_kw["total_steps"] if args.quick else s["budget"]
    target = s["target"] if not args.quick else -np.inf
    results[env], summary[env] = {}, {}
    for variant, agent_kw in (("stable_em_off", s["agent"]),
                              ("stable_em_on", dict(s["agent"], **STABLE_EM))):
      print(f"{env} {variant}: {train_kw} {agent_kw}", flush=True)
      r = run(train_kw, agent_kw, seeds,
              None if args.quick else os.path.join(CACHE, f"{env}_{variant}.json"))
      results[env][variant] = r
      summary[env][variant] = dict(summarise(r, target, budget), wall_s=r["wall_s"],
                                   first_interval_s=r["first_interval_s"])
  total_wall = time.time() - t_start
  train_wall = sum(r["wall_s"] for by_variant in results.values() for r in by_variant.values())

  md = ["| env | stable EM | seeds | env steps/seed | final eval return per seed | "
        "mean of last 3 evals per seed | first step >= target per seed | "
        "evals >= target after the first | target met (final eval) | "
        "wall s (first interval s) |", "|---|---|---|---|---|---|---|---|---|---|"]
  for env, by_variant in summary.items():
    for variant, r in by_variant.items():
      met = "-" if args.quick else f"{r['seeds_met']}/{seeds}"
      md.append(f"| {env} | {'on' if variant.endswith('on') else 'off'} | {seeds} | "
                f"{r['final_step']:,} | {_fmt(r['final'])} | {_fmt(r['last3'])} | "
                f"{_fmt(r['first_step_ge_target'])} | "
                f"{r['of_which_ge_target']} of {r['evaluations_after_first']} | {met} | "
                f"{r['wall_s']:.0f} ({r['first_interval_s']:.0f}) |")
  machine = dict(_common.machine(), cpu=_cpu())
  head = [f"Command: `{_common.command()}`", "",
          f"Machine: {machine['cpu']}, {machine['cores']} CPU cores, jax {machine['jax']} "
          f"({machine['backend']}); wall time of the runs {train_wall:.0f} s in all (this "
          f"invocation {total_wall:.0f} s; runs with the same settings are reused from "
          f"{CACHE}/).", "",
          "Settings (stable EM off; on = the same plus " + f"{STABLE_EM}):", ""]
  for env in summary:
    run_settings = results[env]["stable_em_off"]
    head.append(f"* {env}: loop {run_settings['train']}; agent "
                f"{SETTINGS[env]['agent'] or 'defaults'}, i.e. {run_settings['agent']}; "
                f"target {SETTINGS[env]['target']} on every seed at the last evaluation"
                + (f" within {SETTINGS[env]['budget']:,} env steps per seed"
                   if SETTINGS[env]['budget'] else ""))
  text = "\n".join(head + [""] + md) + "\n"
  print(text)
  if args.quick:
    return
  png = os.path.join(RESULTS, "klpg_stable_em.png")
  plot(results, png)
  text = ("# KLPG learning benchmark\n\n" + text + f"\nLearning curves, stable EM off vs on: "
          f"{os.path.basename(png)}\n")
  _common.write_results("klpg", dict(command=_common.command(), machine=machine,
                                     total_wall_s=total_wall, train_wall_s=train_wall,
                                     summary=summary,
                                     stable_em=STABLE_EM, results=results), text)


if __name__ == "__main__":
  main()
