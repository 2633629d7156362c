"""Guided cost learning on Brax inverted_pendulum: SAC on the learned reward vs on the true one.

  python -m benchmarks.gcl [--seeds 4] [--steps 30000] [--eval-every 5000] [--label TEXT]
                           [--fast-compile]
      (a) `sac` on the true reward, S seeds vmapped, the main job's settings
          (`LOOP`); it is both the baseline and the expert: the final policy of its
          best seed (final deterministic eval) rolls out `NUM_DEMOS` episodes of
          its deterministic policy (tanh of the mean; `--stochastic-demos`: sampled
          actions) from fresh resets into a demonstrations file. Run and file (and gcl's
          run) are cached under runs/bench_gcl/ (git-ignored) and rebuilt when
          missing or made with other settings, so a fresh clone regenerates them.
      (b) `gcl` (reward learned from those demonstrations, SAC on it), the same S
          seeds (0..S−1), loop settings and budget: env steps, gradient updates,
          and B·T = 256 transitions per SAC step (gcl samples B = 256/T windows of
          T steps).
      Reports the true deterministic eval return per seed and evaluation, and gcl's
      ESS of the self-normalised weights (the mean over each interval's updates,
      out of B windows). Writes benchmarks/results/gcl.json, gcl.md, gcl.png.
      --fast-compile: XLA's LLVM optimisation level 0 (compiles dominate on a
      loaded 2-core machine).
  python -m benchmarks.gcl --quick
      CI size on the pure-JAX pendulum (no Brax compile): sac (the expert), demos,
      gcl, a few thousand steps each, 2 seeds, XLA's LLVM optimisation
      level 0; checks that everything runs and prints the table; writes nothing.

Evaluation (the shared `acting.evaluate`): mean first-episode true return of
`num_eval_envs` fresh envs with the deterministic policy (tanh of the mean).
"""

import argparse
import ast
import dataclasses
import json
import os
import time

import jax
import numpy as np

from benchmarks import _common
from rlax_inf.agents import gcl
from rlax_inf.agents import sac
from rlax_inf.agents import training
from rlax_inf.agents.config import TrainConfig
from rlax_inf.envs import demonstrations as demos_lib

RESULTS = _common.RESULTS_DIR
CACHE = "runs/bench_gcl"

#: The loop's settings of every run: the main job's (agents/main_job.py MAIN_SETS).
LOOP = dict(env="inverted_pendulum", backend="positional", num_envs=16,
            batch_size=256, grad_updates_per_step=16, prefill_steps=2048, eval_every=5000,
            num_eval_envs=8, episode_length=1000, checkpoint_every=1)
HIDDEN = (64, 64)
NUM_DEMOS = 16
#: gcl's own settings (window T; the loop's batch_size becomes 256 // T windows).
GCL = dict(window=8, reward_hidden=(64, 64), reward_lr=3e-4, reward_l2=1.0)
QUICK = dict(env="pendulum", backend=None, num_envs=8, batch_size=64,
             grad_updates_per_step=2, prefill_steps=256, eval_every=1024, num_eval_envs=2,
             episode_length=100)
QUICK_STEPS, QUICK_DEMOS = 3072, 4


def _train(agent: str, cfg: TrainConfig, agent_cfg, label: str):
  """Train; per evaluation the metrics [S] as lists, the final state, the wall time."""
  trainer = training.Trainer(cfg, agent_cfg, agent)
  sch = trainer.schedule
  steps = [(sch.prefill_vector_steps + (i + 1) * sch.interval_vector_steps) * cfg.num_envs
           for i in range(sch.num_intervals)]
  t0 = time.time()
  ts = trainer.init(trainer.seed_keys())
  rows = []
  for i in range(sch.num_intervals):
    ts, metrics = trainer.run_interval(ts)
    metrics = training.to_host(metrics)
    rows.append({k: np.asarray(v, np.float64).tolist() for k, v in metrics.items()})
    extra = f"  ess {np.round(metrics['ess'], 1)}" if "ess" in metrics else ""
    print(f"  {label} step {steps[i]:>7,}  eval {np.round(metrics['eval_return'], 1)}{extra}"
          f"  {time.time() - t0:.0f} s", flush=True)
  curves = {k: [r[k] for r in rows] for k in rows[0]}  # [I][S]
  return dict(steps=steps, curves=curves, wall_s=time.time() - t0), ts, trainer


def rollout_demonstrations(trainer, agent_state, key, num_episodes: int,
                           deterministic: bool = True):
  """`num_episodes` episodes of the policy, each cut after its first `done`.

  `deterministic`: the policy's mode (tanh of the mean), else sampled actions.
  """
  env, agent = trainer.env, trainer.agent
  params = agent.policy_params(agent_state)
  k_reset, k_act = jax.random.split(key)

  @jax.jit
  def run(k_reset, k_act):
    states = jax.vmap(env.reset)(jax.random.split(k_reset, num_episodes))

    def body(states, k):
      action, _ = agent.act(params, states.obs, k, deterministic)
      nxt = env.batch_step(states, action)
      return nxt, (states.obs, action, nxt.reward, nxt.done)

    _, out = jax.lax.scan(body, states, jax.random.split(k_act, env.spec.episode_length))
    return out

  obs, act, rew, done = (np.asarray(x) for x in run(k_reset, k_act))  # [L, N, ...]
  episodes = []
  for n in range(num_episodes):
    ends = np.flatnonzero(done[:, n] > 0)
    end = ends[0] + 1 if ends.size else done.shape[0]
    episodes.append((obs[:end, n], act[:end, n], rew[:end, n]))
  starts = np.concatenate([np.arange(len(e[0])) == 0 for e in episodes])
  cat = lambda i: np.concatenate([e[i] for e in episodes])
  return demos_lib.make_demonstrations(cat(0), cat(1), starts, cat(2))


def sac_and_demonstrations(cfg: TrainConfig, num_demos: int, cache: str,
                           deterministic: bool = True):
  """The `sac` run on the true reward and the path of its best seed's demonstrations.

  Both are cached in `cache` and reused when the settings match.
  """
  agent_cfg = sac.SACConfig(hidden=HIDDEN)
  settings = json.loads(json.dumps(dict(train=dataclasses.asdict(cfg),
                                        agent=dataclasses.asdict(agent_cfg),
                                        num_demos=num_demos,
                                        demo_policy="deterministic" if deterministic
                                        else "stochastic")))
  path = os.path.join(cache, "expert_demos.npz")
  meta = os.path.join(cache, "sac_expert.json")
  if os.path.exists(path) and os.path.exists(meta):
    with open(meta) as f:
      cached = json.load(f)
    if cached["settings"] == settings:
      print(f"sac (the expert): reusing {meta} and {path}", flush=True)
      return cached, path
  print(f"sac (true reward; the expert): {cfg} {agent_cfg}", flush=True)
  result, ts, trainer = _train("sac", cfg, agent_cfg, "sac")
  final = np.asarray(result["curves"]["eval_return"][-1])
  best = int(np.argmax(final))
  state = jax.tree.map(lambda x: x[best], jax.device_get(ts.agent))
  demos = rollout_demonstrations(trainer, state, jax.random.PRNGKey(1234), num_demos,
                                 deterministic)
  os.makedirs(cache, exist_ok=True)
  demos_lib.save_demonstrations(path, demos)
  lengths = demos_lib.episode_lengths(demos)
  returns = [float(np.sum(r)) for r in np.split(np.asarray(demos.rewards),
                                                np.cumsum(lengths)[:-1])]
  result.update(settings=settings, expert_seed=best, demo_returns=returns,
                demo_steps=int(demos.num_steps))
  with open(meta, "w") as f:
    json.dump(result, f)
  return result, path


def plot(results: dict, out_png: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax, ax_ess) = plt.subplots(1, 2, figsize=(12, 4))
  for name, color in (("sac", "C0"), ("gcl", "C3")):
    r = results[name]
    steps, ret = np.array(r["steps"]), np.array(r["curves"]["eval_return"])
    ax.plot(steps, ret, color=color, alpha=0.25, lw=0.8)
    label = "sac, true reward" if name == "sac" else "gcl, learned reward"
    ax.plot(steps, ret.mean(1), color=color, lw=2,
            label=f"{label} (mean of {ret.shape[1]} seeds; thin: each seed)")
  ax.set_xlabel("env steps per seed")
  ax.set_ylabel("true deterministic eval return")
  ax.set_title("inverted_pendulum: true return")
  ax.legend(fontsize=8, loc="best")
  r = results["gcl"]
  steps, ess = np.array(r["steps"]), np.array(r["curves"]["ess"])
  ax_ess.plot(steps, ess, color="C3", alpha=0.4, lw=0.8)
  ax_ess.plot(steps, ess.mean(1), color="C3", lw=2, label="mean over seeds")
  ax_ess.axhline(r["windows_per_batch"], color="k", ls=":", lw=1, label="B (windows per batch)")
  ax_ess.set_yscale("log")
  ax_ess.set_xlabel("env steps per seed")
  ax_ess.set_ylabel("ESS of the SNIS weights (interval mean)")
  ax_ess.set_title("gcl: effective sample size of log Z's weights")
  ax_ess.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)


def _fmt(xs, digits=0):
  return ", ".join(f"{x:,.{digits}f}" for x in xs)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seeds", type=int, default=4)
  p.add_argument("--steps", type=int, default=30_000)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--label", default="", help="a note on the run (e.g. reduced) for gcl.md")
  p.add_argument("--eval-every", type=int, default=LOOP["eval_every"])
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="a gcl config field for a variant (e.g. absorbing_reward=False): "
                      "cached on its own, printed, writes no results file")
  p.add_argument("--stochastic-demos", action="store_true",
                 help="demonstrations from the expert's sampled actions (default: its mode)")
  p.add_argument("--fast-compile", action="store_true",
                 help="XLA's LLVM optimisation level 0 (as --quick): about half the compile "
                      "time, slower programs; for a loaded machine")
  args = p.parse_args(argv)
  if (args.quick or args.fast_compile) and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()
  seeds = 2 if args.quick else args.seeds
  loop = dict(LOOP, **QUICK) if args.quick else dict(LOOP, eval_every=args.eval_every)
  steps = QUICK_STEPS if args.quick else args.steps
  t_start = time.time()
  cache = os.path.join(CACHE, "quick") if args.quick else CACHE
  window = GCL["window"]
  windows_per_batch = loop["batch_size"] // window
  results = {}
  results["sac"], demo_path = sac_and_demonstrations(
      TrainConfig(**dict(loop, num_seeds=seeds, total_steps=steps)),
      QUICK_DEMOS if args.quick else NUM_DEMOS, cache, not args.stochastic_demos)
  expert = results["sac"]
  print(f"demonstrations: {len(expert['demo_returns'])} episodes, {expert['demo_steps']} "
        f"steps, true returns {_fmt(expert['demo_returns'])}", flush=True)
  cfg = TrainConfig(**dict(loop, num_seeds=seeds, total_steps=steps,
                           batch_size=windows_per_batch))
  variant = {}
  for item in args.set:
    key, value = item.split("=", 1)
    variant[key] = ast.literal_eval(value)
  agent_cfg = gcl.GCLConfig(hidden=HIDDEN, demonstrations=demo_path, **dict(GCL, **variant))
  settings = json.loads(json.dumps(dict(train=dataclasses.asdict(cfg),
                                        agent=dataclasses.asdict(agent_cfg))))
  gcl_cache = os.path.join(cache, "gcl.json" if not variant else "gcl_" + "_".join(
      f"{k}={v}" for k, v in sorted(variant.items())) + ".json")
  cached = None
  if os.path.exists(gcl_cache):
    with open(gcl_cache) as f:
      cached = json.load(f)
  if cached and cached["settings"] == settings:
    print(f"gcl: reusing {gcl_cache}", flush=True)
    results["gcl"] = cached
  else:
    print(f"gcl: {cfg} {agent_cfg}", flush=True)
    results["gcl"], _, _ = _train("gcl", cfg, agent_cfg, "gcl")
    results["gcl"]["settings"] = settings
    with open(gcl_cache, "w") as f:
      json.dump(results["gcl"], f)
  results["gcl"]["windows_per_batch"] = windows_per_batch
  total_wall = time.time() - t_start

  md = ["| agent | reward trained on | seeds | env steps/seed | final true eval return per "
        "seed | mean of last 3 evals per seed | mean final | wall s |", "|---|---|---|---|---|---|---|---|"]
  summary = {}
  for name in ("gcl", "sac"):
    r = results[name]
    ret = np.array(r["curves"]["eval_return"])
    summary[name] = dict(final=ret[-1].tolist(), last3=ret[-3:].mean(0).tolist(),
                         mean_final=float(ret[-1].mean()), steps=r["steps"][-1],
                         wall_s=r["wall_s"])
    md.append(f"| {name} | {'learned r_ψ' if name == 'gcl' else 'true'} | {seeds} | "
              f"{r['steps'][-1]:,} | {_fmt(ret[-1])} | {_fmt(ret[-3:].mean(0))} | "
              f"{ret[-1].mean():.0f} | {r['wall_s']:.0f} |")
  ess = np.array(results["gcl"]["curves"]["ess"])
  md += ["", f"gcl's ESS (interval mean over updates, out of B = {windows_per_batch} windows), "
         "per evaluation, mean over seeds [min, max]:", "",
         "| env steps | " + " | ".join(f"{s:,}" for s in results["gcl"]["steps"]) + " |",
         "|---|" + "---|" * len(results["gcl"]["steps"]),
         "| ESS | " + " | ".join(f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in
                               zip(ess.mean(1), ess.min(1), ess.max(1))) + " |"]
  ret = {n: np.array(results[n]["curves"]["eval_return"]) for n in results}
  md += ["", "True eval return per evaluation (seeds 0..S−1):", "",
         "| env steps | gcl | sac |", "|---|---|---|"]
  md += [f"| {s:,} | {_fmt(ret['gcl'][i])} | {_fmt(ret['sac'][i])} |"
         for i, s in enumerate(results["gcl"]["steps"])]
  machine = _common.machine()
  head = [f"Command: `{_common.command()}`" + (f" ({args.label})" if args.label else ""), "",
          f"Machine: {machine['cpu']}, {machine['cores']} CPU cores, jax {machine['jax']} "
          f"({machine['backend']}); this invocation {total_wall:.0f} s wall.", "",
          f"Expert: the sac run below (true reward), its seed {expert['expert_seed']}'s "
          f"final policy ({expert['settings']['demo_policy']} actions): "
          f"{len(expert['demo_returns'])} demonstrations "
          f"({expert['demo_steps']:,} steps, true returns {_fmt(expert['demo_returns'])}); "
          f"the run and the file are cached in {cache}/ and reused when the settings "
          "match (their wall time is that of the run that made them).", "",
          f"Loop (both agents): {dict(loop, num_seeds=seeds, total_steps=steps)}; gcl's "
          f"batch_size = {windows_per_batch} windows of T = {window} (B·T = "
          f"{windows_per_batch * window} transitions per SAC step, as sac's "
          f"{loop['batch_size']}). Networks {HIDDEN}; gcl {GCL}.", ""]
  text = "\n".join(head + md) + "\n"
  print(text)
  if args.quick or variant:
    return
  png = os.path.join(RESULTS, "gcl.png")
  plot(results, png)
  text = ("# Guided cost learning on inverted_pendulum\n\n" + text
          + f"\nCurves (true return of both; gcl's ESS): {os.path.basename(png)}\n")
  _common.write_results("gcl", dict(command=_common.command(), label=args.label,
                                    machine=machine, total_wall_s=total_wall,
                                    expert=dict(seed=expert["expert_seed"],
                                                demo_returns=expert["demo_returns"],
                                                demo_steps=expert["demo_steps"]),
                                    summary=summary, results=results), text,
                        keep_reading=True)


if __name__ == "__main__":
  main()
