"""SAC benchmarks: learning on Brax inverted_pendulum, and speed against brax.training's SAC.

  python -m benchmarks.sac learning [--steps 50000 --seeds 4 --backend positional]
      SAC and SAC-FKL, S seeds vmapped in one program each, settings `LEARNING`;
      target: eval return >= 950 on every seed within 50,000 env steps per seed.
  python -m benchmarks.sac speed [--steps 12288]
      Side by side, same machine, same env, same settings (64 envs, batch 256,
      16 gradient updates per env step, 256x256 networks, one seed): env steps/s
      after compilation (targets ours/brax >= 1.5) and time to the end of the
      first training interval, i.e. mostly compilation (target <= 0.5x brax's).

Results go to benchmarks/results/sac_<mode>.json / .md with the command and the machine.
"""

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import jax
import numpy as np

from rlax_inf.agents import main_job

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def _machine():
  return dict(platform=platform.platform(), cpu_count=os.cpu_count(), jax=jax.__version__,
              backend=jax.default_backend(), devices=[str(d) for d in jax.devices()],
              processor=platform.processor() or platform.machine())


def _write(name, payload, md):
  os.makedirs(RESULTS, exist_ok=True)
  payload = dict(command="python -m benchmarks.sac " + " ".join(sys.argv[1:]),
                 machine=_machine(), **payload)
  with open(os.path.join(RESULTS, f"sac_{name}.json"), "w") as f:
    json.dump(payload, f, indent=2)
  with open(os.path.join(RESULTS, f"sac_{name}.md"), "w") as f:
    f.write(f"# SAC benchmark: {name}\n\nCommand: `{payload['command']}`\n\n"
            f"Machine: {payload['machine']}\n\n{md}\n")
  print(md)


# --- learning ----------------------------------------------------------------

#: Settings of the learning benchmark, the main job's (`--set key=value` overrides them).
LEARNING = main_job.MAIN_SETS


def learning(args):
  from rlax_inf.agents import run  # pylint: disable=g-import-not-at-top
  out_root = args.out
  rows, md = {}, ["| agent | seeds | env steps/seed | first step >= 950 per seed | "
                  "final eval return per seed | evaluations >= 950 after the first | wall s |",
                  "|---|---|---|---|---|---|---|"]
  for agent in ("sac", "sac-fkl"):
    sets = dict(LEARNING, **dict(args.set))
    train_cfg, agent_cfg = run.make_configs(
        agent, sets, env="inverted_pendulum", backend=args.backend, num_seeds=args.seeds,
        total_steps=args.steps)
    out = os.path.join(out_root, agent)
    summary = run.train_run(out, agent, train_cfg, agent_cfg, resume=True)
    metrics = run.read_metrics(out)
    per_seed = {}
    for r in metrics:
      per_seed.setdefault(r["seed"], []).append((r["step"], r["eval_return"]))
    final = {s: seq[-1][1] for s, seq in per_seed.items()}
    first = {s: next((st for st, v in seq if v >= 950), None) for s, seq in per_seed.items()}
    after = [v for s, seq in per_seed.items() for st, v in seq
             if first[s] is not None and st > first[s]]
    held = sum(v >= 950 for v in after)
    reached = all(v is not None and v <= 50_000 for v in first.values())
    rows[agent] = dict(final=final, first_step_ge_950=first, reached=reached,
                       evaluations_after_first=len(after), of_which_ge_950=held,
                       wall_s=summary["wall_s"], sets=sets,
                       train=dataclasses.asdict(train_cfg),
                       agent_config=dataclasses.asdict(agent_cfg))
    md.append(f"| {agent} | {args.seeds} | {args.steps} | "
              f"{', '.join(str(v) for v in first.values())} | "
              f"{', '.join(f'{v:.0f}' for v in final.values())} | "
              f"{held} of {len(after)} | {summary['wall_s']:.0f} |")
  from rlax_inf.agents import plotting  # pylint: disable=g-import-not-at-top
  png = os.path.join(RESULTS, "sac_learning_inverted_pendulum.png")
  plotting.plot_runs([os.path.join(out_root, a) for a in ("sac", "sac-fkl")], png)
  md.append(f"\nTarget (>= 950 on every seed within 50,000 env steps per seed): "
            + ", ".join(f"{a}: {'met' if r['reached'] else 'NOT met'}" for a, r in rows.items()))
  md.append(f"\nCPU only (no GPU). Learning curves: {os.path.basename(png)}")
  _write("learning", dict(results=rows), "\n".join(md))


# --- speed -------------------------------------------------------------------

SPEED = dict(num_envs=64, batch_size=256, grad_updates_per_step=16, hidden=(256, 256),
             episode_length=1000, min_replay=8192, num_eval_envs=16)


def _ours(args):
  from rlax_inf.agents import sac, training  # pylint: disable=g-import-not-at-top
  s = SPEED
  interval = args.steps // args.intervals
  cfg = training.TrainConfig(env="inverted_pendulum", backend=args.backend, num_seeds=1,
                             total_steps=s["min_replay"] + args.steps, num_envs=s["num_envs"],
                             batch_size=s["batch_size"],
                             grad_updates_per_step=s["grad_updates_per_step"],
                             prefill_steps=s["min_replay"], eval_every=interval,
                             num_eval_envs=s["num_eval_envs"], episode_length=s["episode_length"],
                             # Brax's AutoResetWrapper reuses one cached initial state.
                             fresh_resets=False)
  t0 = time.time()
  trainer = training.Trainer(cfg, sac.SACConfig(hidden=s["hidden"]), "sac")
  ts = trainer.init(trainer.seed_keys())
  ts, m = trainer.run_interval(ts)
  jax.block_until_ready(m)
  first = time.time() - t0
  times = []
  for _ in range(trainer.schedule.num_intervals - 1):
    t = time.time()
    ts, m = trainer.run_interval(ts)
    jax.block_until_ready(m)
    times.append(time.time() - t)
  # Our intervals end with the evaluation episodes; brax's training/sps leaves its
  # evaluation out. Time our evaluation program alone (same episodes) to take it out too.
  keys = trainer.seed_keys()
  jax.block_until_ready(trainer.evaluate(ts.agent, keys))
  eval_times = []
  for _ in range(3):
    t = time.time()
    jax.block_until_ready(trainer.evaluate(ts.agent, keys))
    eval_times.append(time.time() - t)
  eval_s = float(np.median(eval_times))
  steps = trainer.schedule.interval_vector_steps * s["num_envs"]
  sps_with_eval = steps * len(times) / sum(times)
  sps = steps * len(times) / (sum(times) - len(times) * eval_s)
  return dict(first_interval_s=first, env_steps_per_s=sps,
              env_steps_per_s_with_eval=sps_with_eval, eval_s=eval_s,
              interval_s=times, interval_env_steps=steps,
              compile_estimate_s=first - steps / sps_with_eval
              - s["min_replay"] / sps / s["grad_updates_per_step"])


def _install_brax_shim():
  """brax 0.14.2 calls jax.device_put_replicated, gone from current jax: a local stand-in."""
  if hasattr(jax, "device_put_replicated"):
    return

  def device_put_replicated(x, devices):
    # A leading device axis is all pmap needs; it places the shards itself.
    return jax.tree.map(lambda a: jax.numpy.stack([a] * len(devices)), x)

  jax.device_put_replicated = device_put_replicated


def _brax(args):
  _install_brax_shim()
  import functools  # pylint: disable=g-import-not-at-top
  from brax import envs as brax_envs  # pylint: disable=g-import-not-at-top
  from brax.training.agents.sac import networks as sac_networks  # pylint: disable=g-import-not-at-top
  from brax.training.agents.sac import train as sac_train  # pylint: disable=g-import-not-at-top
  s = SPEED
  env = brax_envs.get_environment("inverted_pendulum", backend=args.backend or "generalized")
  stamps = []
  t0 = time.time()

  def progress(step, metrics):
    stamps.append((time.time() - t0, step, float(metrics.get("training/sps", np.nan))))

  sac_train.train(
      environment=env, num_timesteps=s["min_replay"] + args.steps,
      episode_length=s["episode_length"], num_envs=s["num_envs"],
      num_eval_envs=s["num_eval_envs"], learning_rate=3e-4, discounting=0.99, seed=0,
      batch_size=s["batch_size"], num_evals=args.intervals + 1, normalize_observations=True,
      min_replay_size=s["min_replay"], max_replay_size=s["min_replay"] + args.steps,
      grad_updates_per_step=s["grad_updates_per_step"],
      network_factory=functools.partial(sac_networks.make_sac_networks,
                                        hidden_layer_sizes=s["hidden"]),
      progress_fn=progress)
  # stamps[0]: eval at step 0 (before training); stamps[1]: end of the first epoch.
  later = stamps[2:]
  sps = np.mean([x[2] for x in later])
  epoch_steps = stamps[1][1] - s["min_replay"]
  return dict(first_interval_s=stamps[1][0], env_steps_per_s=float(sps),
              interval_env_steps=int(epoch_steps),
              compile_estimate_s=stamps[1][0] - epoch_steps / sps
              - s["min_replay"] / sps / s["grad_updates_per_step"],
              stamps=stamps)


def speed(args):
  ours = _ours(args)
  print("ours", ours, flush=True)
  brax = _brax(args)
  print("brax", brax, flush=True)
  ratio = ours["env_steps_per_s"] / brax["env_steps_per_s"]
  first_ratio = ours["first_interval_s"] / brax["first_interval_s"]
  md = "\n".join([
      f"Settings: {SPEED}, env inverted_pendulum ({args.backend or 'generalized'}), one seed, "
      f"{args.steps} training env steps in {args.intervals} intervals. CPU only (no GPU). "
      "Ours uses fresh_resets=False (Brax's cached resets). Brax's env steps/s is its "
      "training/sps (evaluation excluded); ours is the wall time of whole intervals minus "
      f"the time of our evaluation program run alone ({ours['eval_s']:.2f} s per interval; "
      f"with evaluation: {ours['env_steps_per_s_with_eval']:.0f} env steps/s).",
      "", "| | ours (rlax_inf SAC) | brax.training SAC | ratio | target |", "|---|---|---|---|---|",
      f"| env steps/s (after compile) | {ours['env_steps_per_s']:.0f} | "
      f"{brax['env_steps_per_s']:.0f} | {ratio:.2f} | >= 1.5 ({'met' if ratio >= 1.5 else 'NOT met'}) |",
      f"| time to end of first training interval, s | {ours['first_interval_s']:.1f} | "
      f"{brax['first_interval_s']:.1f} | {first_ratio:.2f} | <= 0.5 "
      f"({'met' if first_ratio <= 0.5 else 'NOT met'}) |",
      f"| of which compile (estimate), s | {ours['compile_estimate_s']:.1f} | "
      f"{brax['compile_estimate_s']:.1f} | "
      f"{ours['compile_estimate_s'] / brax['compile_estimate_s']:.2f} | |",
  ])
  _write("speed", dict(settings={k: list(v) if isinstance(v, tuple) else v
                                 for k, v in SPEED.items()},
                       ours=ours, brax=brax, ratio_sps=ratio, ratio_first=first_ratio), md)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest="mode", required=True)
  le = sub.add_parser("learning")
  le.add_argument("--steps", type=int, default=50_000)
  le.add_argument("--seeds", type=int, default=4)
  le.add_argument("--backend", default="positional")
  le.add_argument("--out", default="runs/bench_learning")
  le.add_argument("--set", nargs="*", default=[], type=lambda s: tuple(s.split("=", 1)))
  sp = sub.add_parser("speed")
  sp.add_argument("--steps", type=int, default=12_288)
  sp.add_argument("--intervals", type=int, default=3)
  sp.add_argument("--backend", default=None)
  args = p.parse_args(argv)
  {"learning": learning, "speed": speed}[args.mode](args)


if __name__ == "__main__":
  main()
