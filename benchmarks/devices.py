"""1 vs 4 host devices: how far apart are the runs, and does always vmapping make them identical?

  XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m benchmarks.devices \
      [--agent sac|all] [--evaluations 8] [--always-vmap]

Trains the agent's tiny contract config (tests/agents/test_contract.py) with 4 seeds on
1 device and on 4 devices for `--evaluations` intervals and prints, as one JSON line,
how many arrays of the final agent state differ, the largest difference, and the
largest difference of the eval returns at each evaluation. `--always-vmap` replaces the
Trainer's program so that the seed axis is vmapped even with one seed per device (the
Trainer squeezes it there, for speed), to see whether that alone makes the per-seed
programs, and so the runs, bit-identical.
"""

import argparse
import json
import os
import sys
import time

import jax
from jax.sharding import PartitionSpec as P
import numpy as np

from rlax_inf.agents import training

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "agents"))
import test_contract as contract  # pylint: disable=g-import-not-at-top,wrong-import-position


def _always_vmap_program(self, fn, donate):
  sharded = jax.shard_map(jax.vmap(fn), mesh=self.mesh, in_specs=P("seed"),
                          out_specs=P("seed"), check_vma=False)
  return jax.jit(sharded, donate_argnums=(0,) if donate else ())


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--agent", default="sac", help="a registered agent, or 'all' (one line each)")
  p.add_argument("--evaluations", type=int, default=8)
  p.add_argument("--always-vmap", action="store_true")
  args = p.parse_args(argv)
  assert len(jax.devices()) >= 4, "set XLA_FLAGS=--xla_force_host_platform_device_count=4"
  if args.always_vmap:
    training.Trainer._program = _always_vmap_program  # pylint: disable=protected-access
  for agent in contract.AGENTS if args.agent == "all" else (args.agent,):
    _compare(agent, args)


def _compare(agent, args):
  """Train `agent` on 1 and on 4 devices and print how far apart the runs are."""
  args = argparse.Namespace(**{**vars(args), "agent": agent})
  runs = {}
  for n in (1, 4):
    start = time.time()
    cfg = contract.tiny_config(args.agent, num_seeds=4,
                               total_steps=32 + args.evaluations * 32)
    trainer = training.Trainer(cfg, contract.small(args.agent), args.agent,
                               devices=jax.devices()[:n])
    ts = trainer.init(trainer.seed_keys())
    returns = []
    for _ in range(args.evaluations):
      ts, metrics = trainer.run_interval(ts)
      returns.append(np.asarray(jax.device_get(metrics["eval_return"])))
    runs[n] = jax.device_get(ts.agent), np.stack(returns), time.time() - start
  one, four = jax.tree.leaves(runs[1][0]), jax.tree.leaves(runs[4][0])
  print(json.dumps(dict(
      agent=args.agent, always_vmap=args.always_vmap, evaluations=args.evaluations,
      xla_flags=os.environ.get("XLA_FLAGS", ""), arrays=len(one),
      arrays_differ=sum(int(not np.array_equal(a, b)) for a, b in zip(one, four)),
      max_abs_state_diff=max(float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))))
                             for a, b in zip(one, four) if np.size(a)),
      eval_return_max_abs_diff_per_evaluation=[
          float(x) for x in np.abs(runs[1][1] - runs[4][1]).max(axis=1)],
      returns_bit_identical=bool(np.array_equal(runs[1][1], runs[4][1])),
      wall_s={n: round(r[2], 1) for n, r in runs.items()})))


if __name__ == "__main__":
  main()
