"""EM-family agents' learning benchmark: mpo and virel (and sac, sac-fkl on a harder task).

  python -m benchmarks.em_agents [--task inverted_pendulum] [--agents mpo virel] [--seeds 4]
      Per agent, S seeds vmapped in one program (`training.Trainer`), the task's
      loop settings `TASKS[task]["train"]` and the agent's overrides
      `TASKS[task]["agents"][name]`. inverted_pendulum (Brax, positional, max
      return 1000): target deterministic eval return >= 950 on every seed at the
      last evaluation within 100,000 env steps per seed.
  python -m benchmarks.em_agents --task hopper --seeds 2 --host-devices 2
                                 [--agents mpo virel sac sac-fkl]
      The harder task: the four agents on the same seeds and budget, no target;
      one plot with every agent's curves. --host-devices N splits the CPU into N
      XLA devices that the seeds are sharded over (one per core is fastest).
  --steps N (shorter budget), --set agent.key=value (diagnostics; the runs are
      cached under their own settings; `train.key=value` sets the loop, e.g.
      train.grad_updates_per_step=16), --no-write (print only).
  python -m benchmarks.em_agents --quick
      CI size: the pure-JAX pendulum, a few thousand steps, 2 seeds, mpo and virel,
      XLA's LLVM optimisation level 0 (as the tests); checks that everything runs
      and prints the table; writes nothing.

Results: benchmarks/results/em_agents.json (every task run so far, merged) and
em_agents.md, plots em_agents_<task>.png.

Resuming: after every evaluation interval the train state (agent, replay buffer,
envs, keys) and the rows so far are written to runs/bench_em_agents/ (git-ignored),
one file per agent, task and settings; a run killed half-way (the 2-core machine
is shared) restarts from its last interval, and a finished run is read back
instead of trained. The persistent compilation cache (`compile_cache`, as the CLI)
is on, so a restarted run does not compile again.

Evaluation (the shared `acting.evaluate`): mean first-episode return of
`num_eval_envs` fresh envs with the deterministic policy (tanh of the mean), after
every evaluation interval.
"""

import argparse
import ast
import dataclasses
import hashlib
import json
import os
import pickle
import time

import jax
import numpy as np

from benchmarks import _common
from rlax_inf.agents import compile_cache
from rlax_inf.agents import distributed
from rlax_inf.agents import off_policy
from rlax_inf.agents import registry
from rlax_inf.agents import training
from rlax_inf.agents.config import TrainConfig

RESULTS = _common.RESULTS_DIR
CACHE = "runs/bench_em_agents"
MACHINE = "2-core Intel Xeon @ 2.00GHz VM, CPU only"
#: Written instead of MACHINE when the run is on a GPU (the device machine lent to a session).
GPU_MACHINE = "one NVIDIA H100 80GB GPU, 16 CPU cores (lent device machine)"

#: The loop of every task: 16 envs, 4 updates of batch 256 per vector step (one update
#: per 4 env steps), small networks, an evaluation every 4,992 env steps per seed.
_LOOP = dict(backend="positional", num_envs=16, batch_size=256, grad_updates_per_step=4,
             prefill_steps=2048, eval_every=5_000, num_eval_envs=8, episode_length=1000)
_SMALL = dict(hidden=(64, 64))
TASKS = {
    "inverted_pendulum": dict(
        train=dict(_LOOP, env="inverted_pendulum", total_steps=100_000),
        agents={"mpo": dict(_SMALL, epsilon_stddev=1e-3, action_penalty_epsilon=1e-3),
                "virel": dict(_SMALL, temperature_scale=0.01)},
        # Both at sac's benchmark ratio, one update per env step (at one per 4 env steps
        # mpo's critic had not converged when its runs collapsed: see the results).
        loop={"virel": dict(grad_updates_per_step=16), "mpo": dict(grad_updates_per_step=16)},
        target=950.0, budget=100_000),
    # Every agent at one update per env step (the ratio mpo and virel needed on
    # inverted_pendulum, and sac's benchmark ratio), each agent's inverted_pendulum
    # settings; 2 seeds on 2 host devices (`--host-devices 2`): sac, sac-fkl and virel
    # took 4-7 minutes each on the shared 2-core CPU, mpo (not measured idle) longer:
    # see benchmarks/results.
    "hopper": dict(
        train=dict(_LOOP, env="hopper", total_steps=50_000, grad_updates_per_step=16),
        agents={"mpo": dict(_SMALL, epsilon_stddev=1e-3, action_penalty_epsilon=1e-3),
                "virel": dict(_SMALL, temperature_scale=0.01), "sac": dict(_SMALL),
                "sac-fkl": dict(_SMALL)},
        target=None, budget=50_000),
}
QUICK = dict(env="pendulum", backend=None, total_steps=3_072, num_envs=8, batch_size=64,
             prefill_steps=512, eval_every=1_024, num_eval_envs=2, episode_length=100)
#: Printed every interval (mean over seeds) when the agent logs them.
_SHOWN = ("temperature", "kl_mean", "kl_stddev", "alpha_mean", "alpha_stddev", "std", "mean_abs",
          "ess_fraction", "msbe", "entropy", "q_mean", "critic_loss")


def _settings_key(settings: dict) -> str:
  return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def _result(settings: dict, rows: list, walls: list, steps_after, partial: bool) -> dict:
  """`steps_after(k)`: env steps per seed after k intervals (`training.env_steps_after`)."""
  steps = [steps_after(i + 1) for i in range(len(rows))]
  curves = {k: [r[k] for r in rows] for k in rows[0]}  # [I][S]
  return dict(settings, steps=steps, wall_s=walls[-1], first_interval_s=walls[0],
              curves=curves, partial=partial)


def run(name: str, train_kw: dict, agent_kw: dict, seeds: int, cache_dir: str = None,
        report_only: bool = False) -> dict:
  """Train `seeds` seeds of agent `name` (vmapped); per evaluation: returns and metrics.

  With `cache_dir`, a finished run with the same settings is read back instead of
  trained, and an unfinished one resumes from its last evaluation interval. With
  `report_only`, nothing is trained: the finished run, else the intervals done so
  far (marked partial), else None.
  """
  cfg = TrainConfig(num_seeds=seeds, **train_kw)
  agent_cfg = dataclasses.replace(registry.get(name).config, **agent_kw)
  settings = json.loads(json.dumps(dict(agent=name, train=dataclasses.asdict(cfg),
                                        agent_config=dataclasses.asdict(agent_cfg))))
  base_path = None
  if cache_dir:
    os.makedirs(cache_dir, exist_ok=True)
    base_path = os.path.join(cache_dir, f"{name}_{train_kw['env']}_{_settings_key(settings)}")
    if os.path.exists(base_path + ".json"):
      with open(base_path + ".json") as f:
        cached = json.load(f)
      if {k: cached[k] for k in settings} == settings:
        print(f"  reusing {base_path}.json", flush=True)
        return cached
  if report_only:
    if not (base_path and os.path.exists(base_path + ".partial.pkl")):
      return None
    with open(base_path + ".partial.pkl", "rb") as f:
      partial = pickle.load(f)
    sch = off_policy.schedule(cfg)  # every agent here learns from one-step transitions
    return _result(settings, partial["rows"], partial["walls"],
                   lambda k: training.env_steps_after(sch, cfg.num_envs, k), True)
  trainer = training.Trainer(cfg, agent_cfg, name)
  rows, walls, t_spent = [], [], 0.0
  t0 = time.time()
  if base_path and os.path.exists(base_path + ".partial.pkl"):
    with open(base_path + ".partial.pkl", "rb") as f:
      partial = pickle.load(f)
    assert partial["settings"] == settings
    rows, walls, t_spent = partial["rows"], partial["walls"], partial["walls"][-1]
    ts = jax.tree.map(lambda x: jax.device_put(x, trainer.sharding), partial["state"])
    print(f"  resuming {base_path} after {len(rows)} intervals", flush=True)
  else:
    ts = trainer.init(trainer.seed_keys())
  for i in range(len(rows), trainer.schedule.num_intervals):
    ts, metrics = trainer.run_interval(ts)
    metrics = training.to_host(metrics)
    walls.append(t_spent + time.time() - t0)
    rows.append({k: np.asarray(v, np.float64).tolist() for k, v in metrics.items()})
    step = trainer.env_steps_after(i + 1)
    shown = "  ".join(f"{k} {np.mean(metrics[k]):.3g}" for k in _SHOWN if k in metrics)
    print(f"  {name} step {step:>7,}  eval {np.round(metrics['eval_return'], 1)}  "
          f"[{shown}]  {walls[-1]:.0f} s", flush=True)
    if base_path:
      tmp = base_path + ".partial.tmp"
      with open(tmp, "wb") as f:
        pickle.dump(dict(settings=settings, rows=rows, walls=walls,
                         state=jax.device_get(ts)), f)
      os.replace(tmp, base_path + ".partial.pkl")
  result = _result(settings, rows, walls, trainer.env_steps_after, False)
  if base_path:
    with open(base_path + ".json", "w") as f:
      json.dump(result, f)
    os.remove(base_path + ".partial.pkl")
  return result


def summarise(result: dict, target: float, budget: int) -> dict:
  """Per seed: final eval return within `budget`, first evaluation >= target, last-3 mean."""
  steps = np.array(result["steps"])
  ret = np.array(result["curves"]["eval_return"])  # [I, S]
  within = steps <= budget
  steps, ret = steps[within], ret[within]
  out = dict(final=ret[-1].tolist(), last3=ret[-3:].mean(0).tolist(),
             best=ret.max(0).tolist(), final_step=int(steps[-1]))
  if target is not None:
    first = [next((int(s) for s, v in zip(steps, ret[:, j]) if v >= target), None)
             for j in range(ret.shape[1])]
    after = [v for j, f in enumerate(first) if f is not None
             for s, v in zip(steps, ret[:, j]) if s > f]
    out.update(first_step_ge_target=first, evaluations_after_first=len(after),
               of_which_ge_target=int(sum(v >= target for v in after)),
               seeds_met=int(np.sum(ret[-1] >= target)))
  return out


def plot(task: str, results: dict, target, out_png: str) -> None:
  """inverted_pendulum: one panel per agent, every seed; else one panel, mean ± range."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  per_seed = target is not None
  n = len(results) if per_seed else 1
  fig, axes = plt.subplots(1, n, figsize=(6 * n, 4), squeeze=False)
  for i, (name, r) in enumerate(results.items()):
    ax = axes[0][i if per_seed else 0]
    steps, ret = np.array(r["steps"]), np.array(r["curves"]["eval_return"])
    if per_seed:
      for j in range(ret.shape[1]):
        ax.plot(steps, ret[:, j], lw=1, alpha=0.7, label=f"seed {j}")
      ax.plot(steps, ret.mean(1), color="k", lw=2, label="mean")
      ax.axhline(target, color="k", ls=":", lw=1, label="target")
      ax.set_title(f"{name} on {task} ({r['train']['backend']})")
    else:
      line, = ax.plot(steps, ret.mean(1), lw=2, label=f"{name} (mean of {ret.shape[1]})")
      ax.fill_between(steps, ret.min(1), ret.max(1), color=line.get_color(), alpha=0.15)
      ax.set_title(f"{task} ({r['train']['backend']}): mean, shaded min-max over seeds")
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel("deterministic eval return")
    ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  fig.savefig(out_png, dpi=110)
  plt.close(fig)


def _fmt(xs):
  return ", ".join("-" if x is None else f"{x:,.0f}" if isinstance(x, float) else f"{x:,}"
                   for x in xs)


def _table(task: str, entry: dict) -> list:
  target, seeds = entry["target"], entry["seeds"]
  if target is not None:
    lines = ["| agent | seeds | env steps/seed | final eval return per seed | "
             f"mean of last 3 evals per seed | first step >= {target:.0f} per seed | "
             f"evals >= {target:.0f} after the first | target met (final eval) | "
             "wall s (first interval s) |", "|---|---|---|---|---|---|---|---|---|"]
  else:
    lines = ["| agent | seeds | env steps/seed | final eval return per seed | "
             "mean of last 3 evals per seed | best eval per seed | wall s (first interval s) |",
             "|---|---|---|---|---|---|---|"]
  for name, r in entry["summary"].items():
    stopped = " (stopped: partial run)" if r.get("partial") else ""
    row = (f"| {name} | {seeds} | {r['final_step']:,}{stopped} | {_fmt(r['final'])} | "
           f"{_fmt(r['last3'])} | ")
    if target is not None:
      row += (f"{_fmt(r['first_step_ge_target'])} | {r['of_which_ge_target']} of "
              f"{r['evaluations_after_first']} | {r['seeds_met']}/{seeds} | ")
    else:
      row += f"{_fmt(r['best'])} | "
    lines.append(row + f"{r['wall_s']:.0f} ({r['first_interval_s']:.0f}) |")
  return lines


def _parse_sets(sets):
  out = {}
  for s in sets:
    key, value = s.split("=", 1)
    agent, field = key.split(".", 1)
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      pass
    out.setdefault(agent, {})[field] = tuple(value) if isinstance(value, list) else value
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--task", default="inverted_pendulum", choices=list(TASKS))
  p.add_argument("--agents", nargs="*", default=None)
  p.add_argument("--seeds", type=int, default=4)
  p.add_argument("--steps", type=int, default=None)
  p.add_argument("--set", action="append", default=[], metavar="AGENT.KEY=VALUE")
  p.add_argument("--no-write", action="store_true")
  p.add_argument("--report", action="store_true",
                 help="train nothing: tabulate the finished runs and the intervals done so "
                      "far of unfinished ones (marked partial)")
  p.add_argument("--quick", action="store_true")
  p.add_argument("--host-devices", type=int, default=1,
                 help="split the host CPU into N XLA devices; the seeds are sharded over as "
                      "many as divide --seeds (as `rlax-inf train --host-devices`)")
  args = p.parse_args(argv)
  if args.host_devices > 1:  # before the backend starts
    distributed.split_host_cpu(args.host_devices)
  task = TASKS[args.task]
  agents = args.agents or (["mpo", "virel"] if args.quick else list(task["agents"]))
  seeds = 2 if args.quick else args.seeds
  if args.quick and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    # Read when the backend starts (the first computation), not at import.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()
  if not args.quick:
    compile_cache.configure()
  train_kw = dict(task["train"], **QUICK) if args.quick else dict(task["train"])
  if args.steps:
    train_kw["total_steps"] = args.steps
  budget = train_kw["total_steps"] if args.quick or args.steps else task["budget"]
  target = None if args.quick else task["target"]
  sets = _parse_sets(args.set)
  train_sets = sets.pop("train", {})
  t_start = time.time()
  results, summary, loops = {}, {}, {}
  for name in agents:
    agent_kw = dict(task["agents"].get(name, _SMALL), **sets.get(name, {}))
    loops[name] = {**({} if args.quick else task.get("loop", {}).get(name, {})), **train_sets}
    agent_train = {**train_kw, **loops[name]}
    print(f"{name}: {agent_train} {agent_kw}", flush=True)
    result = run(name, agent_train, agent_kw, seeds, None if args.quick else CACHE,
                 args.report)
    if result is None:
      print(f"  {name}: no interval finished yet")
      continue
    results[name] = result
    summary[name] = dict(summarise(results[name], target, budget),
                         partial=result.get("partial", False),
                         wall_s=results[name]["wall_s"],
                         first_interval_s=results[name]["first_interval_s"])
  machine = GPU_MACHINE if jax.default_backend() == "gpu" else MACHINE
  entry = dict(command=_common.command(), machine=machine, seeds=seeds,
               devices=len(jax.devices()), target=target,
               budget=budget, train=train_kw, invocation_wall_s=time.time() - t_start,
               agent_configs={k: r["agent_config"] for k, r in results.items()},
               agent_loops={k: loops[k] for k in results},
               summary=summary)
  print("\n".join(_table(args.task, entry)))
  if args.quick or args.no_write:
    return
  json_path = os.path.join(RESULTS, "em_agents.json")
  everything = {}
  if os.path.exists(json_path):
    with open(json_path) as f:
      everything = json.load(f)
    everything = everything if "tasks" in everything else {}
  everything.setdefault("tasks", {})[args.task] = dict(entry, results=results)
  png = os.path.join(RESULTS, f"em_agents_{args.task}.png")
  plot(args.task, results, target, png)
  _common.write_results("em_agents", everything, _markdown(everything), keep_reading=True)


#: em_agents.md keeps everything from this line on (the hand-written reading) when rewritten.
READING_MARK = _common.READING_MARK


def _markdown(everything: dict) -> str:
  """The tables of every task run so far (the hand-written reading is appended after)."""
  text = ["# MPO and VIREL learning benchmark (issue 12)", "",
          "Tables generated by `benchmarks/em_agents.py`; the reading below them is "
          "written by hand.", ""]
  for task, e in everything["tasks"].items():
    text += [f"## {task}", "", f"Command: `{e['command']}`", "",
             f"Machine: {e['machine']}" + (
                 " (shared with other jobs while the runs trained: wall times are not "
                 "speed figures)."
                 if e["machine"] == MACHINE else "."), "",
             f"Loop: {e['train']}, {e['seeds']} seeds vmapped (seeds 0..{e['seeds'] - 1})"
             + (f", sharded over {e['devices']} host devices." if e.get("devices", 1) > 1
                else "."), ""]
    text += [f"* {k}: {v}" + (f"; loop overrides: {e['agent_loops'][k]}"
                               if e.get("agent_loops", {}).get(k) else "")
             for k, v in e["agent_configs"].items()] + [""]
    text += _table(task, e) + ["", f"Curves: em_agents_{task}.png", ""]
  return "\n".join(text)


if __name__ == "__main__":
  main()
