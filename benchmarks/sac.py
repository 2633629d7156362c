"""SAC benchmarks: learning on Brax inverted_pendulum, and speed against brax.training's SAC.

  python -m benchmarks.sac learning [--steps 50000 --seeds 4 --backend positional]
      SAC and SAC-FKL, S seeds vmapped in one program each, settings `LEARNING`;
      target: eval return >= 950 on every seed within 50,000 env steps per seed.
  python -m benchmarks.sac speed [--steps 12288]
      Side by side, same machine, same env, same settings (64 envs, batch 256,
      16 gradient updates per env step, 256x256 networks, one seed): env steps/s
      after compilation (targets ours/brax >= 1.5) and time to the end of the
      first training interval, i.e. mostly compilation (target <= 0.5x brax's).
  python -m benchmarks.sac update [--updates 64 --repeats 9]
      The SAC gradient update alone, ours vs brax.training's sgd step on the same
      batches: ms per update and compile time.

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

from benchmarks import _common
from rlax_inf.agents import main_job

RESULTS = _common.RESULTS_DIR


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
  # Env construction (Brax system loading) is outside both timings, as in `_brax`.
  env = training.make_env(cfg)
  t0 = time.time()
  trainer = training.Trainer(cfg, sac.SACConfig(hidden=s["hidden"]), "sac", env=env)
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
    # One copy per device along a leading axis, sharded over `devices` (pmap's layout:
    # brax reads `addressable_shards[0]` back as one device's copy).
    sharding = jax.sharding.NamedSharding(jax.sharding.Mesh(np.asarray(devices), ("d",)),
                                          jax.sharding.PartitionSpec("d"))

    def put(a):
      a = jax.numpy.asarray(a)
      return jax.make_array_from_single_device_arrays(
          (len(devices),) + a.shape, sharding, [jax.device_put(a[None], d) for d in devices])

    return jax.tree.map(put, x)

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


def _update_programs(k_updates, seed=0):
  """Jitted scans of `k_updates` SAC updates: ours (`sac.make(...).update`) and brax.training's
  sgd step rebuilt from its own losses and `gradient_update_fn` (no pmap axis), on the
  same random batches (inverted_pendulum sizes: 4 observations, 1 action)."""
  import optax  # pylint: disable=g-import-not-at-top
  from brax.training import gradients, types  # pylint: disable=g-import-not-at-top
  from brax.training.acme import running_statistics, specs  # pylint: disable=g-import-not-at-top
  from brax.training.agents.sac import losses as brax_losses  # pylint: disable=g-import-not-at-top
  from brax.training.agents.sac import networks as brax_networks  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import base, sac  # pylint: disable=g-import-not-at-top
  obs_size, action_size, b, hidden = 4, 1, SPEED["batch_size"], SPEED["hidden"]
  ks = jax.random.split(jax.random.PRNGKey(seed), 6)
  shape = (k_updates, b)
  obs = jax.random.normal(ks[0], shape + (obs_size,))
  next_obs = jax.random.normal(ks[1], shape + (obs_size,))
  action = jax.numpy.tanh(jax.random.normal(ks[2], shape + (action_size,)))
  reward = jax.random.normal(ks[3], shape)
  zeros = jax.numpy.zeros(shape)

  spec = argparse.Namespace(observation_size=obs_size, action_size=action_size,
                            discrete=False, name="inverted_pendulum")
  agent = sac.make(sac.SACConfig(hidden=hidden), spec)
  ours_state = agent.init(ks[4])
  ours_batches = (base.Transition(obs=obs, action=action, reward=reward, terminated=zeros,
                                  done=zeros, next_obs=next_obs),
                  jax.random.split(ks[4], k_updates))
  ours = jax.jit(lambda st, bs: jax.lax.scan(lambda s, x: agent.update(s, *x), st, bs))

  net = brax_networks.make_sac_networks(
      obs_size, action_size, preprocess_observations_fn=running_statistics.normalize,
      hidden_layer_sizes=hidden)
  alpha_loss, critic_loss, actor_loss = brax_losses.make_losses(net, 1.0, 0.99, action_size)
  opt = optax.adam(3e-4)
  alpha_update = gradients.gradient_update_fn(alpha_loss, opt, None)
  critic_update = gradients.gradient_update_fn(critic_loss, opt, None)
  actor_update = gradients.gradient_update_fn(actor_loss, opt, None)
  normalizer = running_statistics.init_state(specs.Array((obs_size,), jax.numpy.float32))
  policy, q = net.policy_network.init(ks[5]), net.q_network.init(ks[5])
  log_alpha = jax.numpy.zeros(())
  brax_state = (policy, q, q, log_alpha, opt.init(policy), opt.init(q), opt.init(log_alpha),
                ks[5])
  brax_batches = types.Transition(
      observation=obs, action=action, reward=reward, discount=1.0 - zeros,
      next_observation=next_obs, extras={"state_extras": {"truncation": zeros},
                                         "policy_extras": {}})

  def brax_sgd_step(carry, t):  # brax.training.agents.sac.train's sgd_step, pmap-free
    policy, q, target_q, log_alpha, p_opt, q_opt, a_opt, key = carry
    key, k_alpha, k_critic, k_actor = jax.random.split(key, 4)
    _, new_log_alpha, a_opt = alpha_update(log_alpha, policy, normalizer, t, k_alpha,
                                           optimizer_state=a_opt)
    alpha = jax.numpy.exp(log_alpha)
    _, new_q, q_opt = critic_update(q, policy, normalizer, target_q, alpha, t, k_critic,
                                    optimizer_state=q_opt)
    _, policy, p_opt = actor_update(policy, normalizer, q, alpha, t, k_actor,
                                    optimizer_state=p_opt)
    target_q = jax.tree.map(lambda x, y: x * 0.995 + y * 0.005, target_q, new_q)
    return (policy, new_q, target_q, new_log_alpha, p_opt, q_opt, a_opt, key), None

  brax = jax.jit(lambda st, bs: jax.lax.scan(brax_sgd_step, st, bs))
  return ({"ours": lambda: ours(ours_state, ours_batches),
           "brax": lambda: brax(brax_state, brax_batches)},
          {"ours": lambda: ours.lower(ours_state, ours_batches).compile(),
           "brax": lambda: brax.lower(brax_state, brax_batches).compile()})


def update(args):
  """Per-update cost of the SAC gradient step alone, ours vs brax.training's."""
  _install_brax_shim()
  runs, compiles = _update_programs(args.updates)
  compile_s = {}
  for name, fn in compiles.items():
    t = time.perf_counter()
    fn()
    compile_s[name] = time.perf_counter() - t
  # Interleaved run by run, so load drifts hit both alike.
  timings = _common.time_interleaved(runs, repeats=args.repeats, warmup=1)
  ms = {k: 1000 * v["median_s"] / args.updates for k, v in timings.items()}
  ratio = ms["brax"] / ms["ours"]
  md = "\n".join([
      f"One SAC gradient update (batch {SPEED['batch_size']}, networks {SPEED['hidden']}, "
      f"4 observations, 1 action), {args.updates} updates per jitted `lax.scan`, median of "
      f"{args.repeats} interleaved runs. brax: brax.training's sgd_step (alpha, critic, actor "
      "updates with its own losses and `gradient_update_fn`), one device, no pmap. Ours: "
      "`rlax_inf.agents.sac.update`. CPU only.", "",
      "| | ours | brax.training | brax / ours |", "|---|---|---|---|",
      f"| ms per update | {ms['ours']:.2f} | {ms['brax']:.2f} | {ratio:.2f} |",
      f"| compile, s | {compile_s['ours']:.1f} | {compile_s['brax']:.1f} | "
      f"{compile_s['brax'] / compile_s['ours']:.2f} |",
  ])
  _write("update", dict(ms_per_update=ms, compile_s=compile_s, updates=args.updates,
                        repeats=args.repeats, timings_s=timings), md)


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
  up = sub.add_parser("update")
  up.add_argument("--updates", type=int, default=64)
  up.add_argument("--repeats", type=int, default=9)
  args = p.parse_args(argv)
  {"learning": learning, "speed": speed, "update": update}[args.mode](args)


if __name__ == "__main__":
  main()
