"""Speed of every registered agent's update and of the two loops, against the matmul limit.

    python -m benchmarks.agents_speed [--quick] [--repeats 15] [--old-commit REV]

1. `update`: each agent's compiled update at batch 256 (klpg: 8 rollouts × T = 32) with
   256×256 networks, K updates per jitted `lax.scan`. FLOPs per update from XLA's
   `cost_analysis` of the compiled scan; the machine's matmul rate from a plain jitted
   scan of K [256, 256] × [256, 256] matmuls (the shapes of the networks' hidden
   layers; sac-fkl's actor step also runs [4096, 256] × [256, 256], timed too). The
   achieved rate FLOPs / time is reported as a fraction of that matmul rate (target
   ≥ 0.8). All programs are timed interleaved in one process.
2. `loop`: wall time per gradient update inside each loop — off-policy (sac, sql) and
   on-policy (klpg) — at the same batch and network sizes on the pure-JAX envs
   (pendulum / cartpole), one interval's program minus its evaluation, interleaved.
   With `--old-commit REV` (default: the last commit before the agent platform) the
   SAC loop of that commit is timed too, in alternating subprocesses: "neither new
   loop is slower per gradient update than SAC's loop was".
"""

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _common
from rlax_inf import envs
from rlax_inf.agents import base
from rlax_inf.agents import registry
from rlax_inf.agents import training

HIDDEN = (256, 256)
BATCH = 256
UNROLL = 32
OLD_COMMIT = "1b59244"  # main before the agent platform

# Agent -> env whose spec it is measured with (sizes only matter for the update).
UPDATE_ENVS = {"sac": "inverted_pendulum", "sac-fkl": "inverted_pendulum", "sql": "cartpole",
               "klpg": "inverted_pendulum"}
LOOP_ENVS = {"sac": "pendulum", "sql": "cartpole", "klpg": "pendulum"}


def agent_config(name):
  cfg = registry.get(name).config
  fields = {f.name for f in dataclasses.fields(cfg)}
  kw = {"hidden": HIDDEN}
  if "unroll_length" in fields:
    kw["unroll_length"] = UNROLL
  return dataclasses.replace(cfg, **kw)


def _batches(agent, spec, k_updates, key):
  """K random batches of the agent's shape: [K, 256] or [K, 256 / T, T]."""
  n = agent.needs
  if n.loop == base.OFF_POLICY and n.sequence_length == 1:
    shape = (k_updates, BATCH)
  else:
    shape = (k_updates, BATCH // n.sequence_length, n.sequence_length)
  ks = jax.random.split(key, 4)
  obs = jax.random.normal(ks[0], shape + (spec.observation_size,))
  params = agent.policy_params(agent.init(ks[1]))
  flat = jnp.reshape(obs, (-1, spec.observation_size))
  action, extras = agent.act(params, flat, ks[2], False)
  unflat = lambda x: jnp.reshape(x, shape + x.shape[1:])
  zeros = jnp.zeros(shape)
  return base.Transition(obs=obs, action=unflat(action), reward=jax.random.normal(ks[3], shape),
                         terminated=zeros, done=zeros, next_obs=obs + 0.01,
                         extras=jax.tree.map(unflat, extras))


def update_programs(k_updates):
  """{name: (run, flops per update)} for every agent, plus the matmul references."""
  progs = {}
  for name in registry.names():
    env = UPDATE_ENVS.get(name, "inverted_pendulum")
    spec = envs.make(env, episode_length=10).spec
    agent = registry.get(name).make(agent_config(name), spec)
    state = agent.init(jax.random.PRNGKey(0))
    batches = _batches(agent, spec, k_updates, jax.random.PRNGKey(1))
    keys = jax.random.split(jax.random.PRNGKey(2), k_updates)
    fn = jax.jit(lambda st, bs, ks, agent=agent: jax.lax.scan(
        lambda s, x: agent.update(s, *x), st, (bs, ks)))
    compiled = fn.lower(state, batches, keys).compile()
    # XLA counts a loop body once, whatever its trip count: FLOPs of one update come
    # from the compiled single update.
    one = jax.tree.map(lambda x: x[0], batches)
    flops = _flops(jax.jit(agent.update).lower(state, one, keys[0]).compile())
    progs[name] = ((lambda c=compiled, s=state, b=batches, k=keys: c(s, b, k)), flops)
  for rows in (BATCH, 16 * BATCH):
    x = jax.random.normal(jax.random.PRNGKey(3), (rows, HIDDEN[0]))
    ws = jax.random.normal(jax.random.PRNGKey(4), (k_updates, HIDDEN[0], HIDDEN[1])) * 0.06
    fn = jax.jit(lambda x, ws: jax.lax.scan(lambda h, w: (jnp.tanh(h @ w), None), x, ws)[0])
    compiled = fn.lower(x, ws).compile()
    flops = _flops(jax.jit(lambda x, w: jnp.tanh(x @ w)).lower(x, ws[0]).compile())
    progs[f"matmul {rows}x256x256"] = ((lambda c=compiled, x=x, ws=ws: c(x, ws)), flops)
  return progs


def _flops(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost["flops"])


def loop_trainer(name, quick):
  env = LOOP_ENVS[name]
  entry = registry.get(name)
  common = dict(env=env, num_seeds=1, num_envs=16, batch_size=BATCH, episode_length=200,
                num_eval_envs=1)
  if entry.loop == base.OFF_POLICY:
    cfg = training.TrainConfig(**common, grad_updates_per_step=16, prefill_steps=BATCH,
                               eval_every=16 * (8 if quick else 64), total_steps=10 ** 6)
  else:  # 64 envs × T = 32 = 2048 transitions: 8 minibatches of 256, 4 epochs
    cfg = training.TrainConfig(**dict(common, num_envs=64), num_minibatches=8, num_epochs=4,
                               eval_every=64 * UNROLL * (1 if quick else 4),
                               total_steps=10 ** 6)
  trainer = training.Trainer(cfg, agent_config(name), name)
  sch = trainer.schedule
  if entry.loop == base.OFF_POLICY:
    updates = sch.interval_vector_steps * cfg.grad_updates_per_step
  else:
    updates = sch.interval_iterations * cfg.num_epochs * cfg.num_minibatches
  return trainer, updates


def loop_programs(quick):
  progs, updates = {}, {}
  for name in LOOP_ENVS:
    trainer, n = loop_trainer(name, quick)
    ts = trainer.init(trainer.seed_keys())
    holder = {"ts": ts}

    def run(trainer=trainer, holder=holder):
      holder["ts"], metrics = trainer.run_interval(holder["ts"])
      return metrics

    def evaluate(trainer=trainer, holder=holder):
      return trainer.evaluate(holder["ts"].agent, holder["ts"].key)

    progs[f"{name} interval"], progs[f"{name} eval"] = run, evaluate
    updates[name] = n
  return progs, updates


OLD_SCRIPT = textwrap.dedent("""
    import statistics, time, jax
    from rlax_inf.agents import sac, training
    cfg = training.TrainConfig(env="pendulum", num_seeds=1, num_envs=16, batch_size=256,
                               episode_length=200, num_eval_envs=1, grad_updates_per_step=16,
                               prefill_steps=256, eval_every={eval_every}, total_steps=10 ** 6)
    tr = training.Trainer(cfg, sac.SACConfig(hidden=(256, 256)), "sac")
    ts = tr.init(tr.seed_keys())
    t_int, t_eval = [], []
    for i in range({repeats} + 2):
      t0 = time.perf_counter(); ts, m = tr.run_interval(ts); jax.block_until_ready(m)
      t1 = time.perf_counter(); e = tr.evaluate(ts.agent, ts.key); jax.block_until_ready(e)
      t2 = time.perf_counter()
      if i >= 2:
        t_int.append(t1 - t0); t_eval.append(t2 - t1)
    n = tr.schedule.interval_vector_steps * cfg.grad_updates_per_step
    print("RESULT", (statistics.median(t_int) - statistics.median(t_eval)) / n)
""")


def _old_checkout(rev):
  """A PYTHONPATH under which `rlax_inf` is the code of commit `rev`."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  tmp = tempfile.mkdtemp(prefix="rlax_inf_old_")
  subprocess.run(["git", "-C", root, "worktree", "add", "--detach", os.path.join(tmp, "src"),
                  rev], check=True, capture_output=True)
  pkg = os.path.join(tmp, "path", "rlax_inf")
  os.makedirs(pkg)
  src = os.path.join(tmp, "src")
  for f in os.listdir(os.path.join(src, "rlax_inf")):
    os.symlink(os.path.join(src, "rlax_inf", f), os.path.join(pkg, f))
  for sub in ("agents", "envs"):
    os.symlink(os.path.join(src, sub), os.path.join(pkg, sub))
  return root, src, os.path.join(tmp, "path")


def old_sac_loop(rev, quick, repeats, rounds):
  """Seconds per update of the old SAC loop, one subprocess per round."""
  root, src, path = _old_checkout(rev)
  script = OLD_SCRIPT.format(eval_every=16 * (8 if quick else 64), repeats=repeats)
  out = []
  try:
    for _ in range(rounds):
      env = dict(os.environ, PYTHONPATH=path)
      res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, check=True, cwd=tempfile.gettempdir())
      out.append(float(res.stdout.split("RESULT")[-1]))
  finally:
    subprocess.run(["git", "-C", root, "worktree", "remove", "--force", src],
                   capture_output=True)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--quick", action="store_true", help="CI-sized: few repeats, short scans")
  p.add_argument("--repeats", type=int, default=15)
  p.add_argument("--old-commit", default=OLD_COMMIT, help="'' to skip the old SAC loop")
  args = p.parse_args(argv)
  repeats = 2 if args.quick else args.repeats
  k_updates = 4 if args.quick else 32

  progs = update_programs(k_updates)
  times = _common.time_interleaved({k: v[0] for k, v in progs.items()}, repeats=repeats)
  mm = {k: progs[k][1] / times[k]["median_s"] * k_updates for k in progs if k.startswith("matmul")}
  ref_rate = mm[f"matmul {BATCH}x256x256"]
  update_rows = []
  for name in registry.names():
    flops = progs[name][1]
    s = times[name]["median_s"] / k_updates
    update_rows.append(dict(agent=name, mflop_per_update=flops / 1e6, ms_per_update=s * 1e3,
                            gflops=flops / s / 1e9, fraction_of_matmul=flops / s / ref_rate))

  lp, updates = loop_programs(args.quick)
  lt = _common.time_interleaved(lp, repeats=repeats, warmup=1)
  loop_rows = []
  for name, n in updates.items():
    per = (lt[f"{name} interval"]["median_s"] - lt[f"{name} eval"]["median_s"]) / n
    loop_rows.append(dict(agent=name, loop=registry.get(name).loop, updates_per_interval=n,
                          ms_per_update=per * 1e3))
  old = []
  if args.old_commit:
    old = old_sac_loop(args.old_commit, args.quick, repeats, rounds=1 if args.quick else 3)
  sac_new = next(r["ms_per_update"] for r in loop_rows if r["agent"] == "sac")

  lines = ["# Agent update and loop speed", "",
           f"Command: `{_common.command()}`", "", f"Machine: {_common.machine()}", "",
           f"## Updates: batch {BATCH} (klpg: {BATCH // UNROLL} rollouts × T = {UNROLL}), "
           f"networks {HIDDEN}, {k_updates} updates per jitted scan, median of {repeats} "
           "interleaved runs", "",
           "FLOPs from XLA's cost_analysis of the compiled scan. Matmul rate: a jitted scan of "
           f"[{BATCH}, 256] × [256, 256] matmuls (+ tanh): {ref_rate / 1e9:.1f} GFLOP/s; "
           f"[{16 * BATCH}, 256] × [256, 256]: {mm[f'matmul {16 * BATCH}x256x256'] / 1e9:.1f} "
           "GFLOP/s.", "",
           "| agent | MFLOP / update | ms / update | GFLOP/s | fraction of the 256³ matmul rate |",
           "|---|---|---|---|---|"]
  for r in update_rows:
    lines.append(f"| {r['agent']} | {r['mflop_per_update']:.0f} | {r['ms_per_update']:.2f} | "
                 f"{r['gflops']:.1f} | {r['fraction_of_matmul']:.2f} |")
  lines += ["", "## Loops: wall time per gradient update (interval program minus its evaluation)",
            "", "Off-policy: 16 envs, 16 updates per vector step, batch 256. On-policy (klpg): "
            "64 envs × T = 32, 4 epochs × 8 minibatches of 256 transitions. Pure-JAX envs "
            "(sac, klpg: pendulum; sql: cartpole); networks 256×256.", "",
            "| agent | loop | updates per interval | ms / update | vs new SAC loop |",
            "|---|---|---|---|---|"]
  for r in loop_rows:
    lines.append(f"| {r['agent']} | {r['loop']} | {r['updates_per_interval']} | "
                 f"{r['ms_per_update']:.2f} | {r['ms_per_update'] / sac_new:.2f} |")
  if old:
    lines += ["", f"SAC loop of commit {args.old_commit} (before the platform), same settings, "
              f"{len(old)} subprocess rounds (not interleaved with the above): "
              f"{', '.join(f'{x * 1e3:.2f}' for x in old)} ms / update; new SAC loop / old: "
              f"{sac_new / (np.median(old) * 1e3):.2f}."]
  _common.write_results("agents_speed" + ("_quick" if args.quick else ""),
                        dict(machine=_common.machine(), command=_common.command(),
                             matmul_gflops={k: v / 1e9 for k, v in mm.items()},
                             updates=update_rows, loops=loop_rows,
                             old_sac_loop_ms=[x * 1e3 for x in old]), "\n".join(lines) + "\n")
  print("\n".join(lines))
  worst = min(r["fraction_of_matmul"] for r in update_rows)
  print(f"\nheadline: slowest update at {worst:.2f} of the matmul rate; loops per update "
        + ", ".join(f"{r['agent']} {r['ms_per_update']:.2f} ms" for r in loop_rows))


if __name__ == "__main__":
  main()
