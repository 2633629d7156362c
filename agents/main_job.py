"""The README's main job: SAC and SAC-FKL on Brax inverted_pendulum, several seeds vmapped.

  rlax-inf main [--out runs/main] [--seeds 4] [--steps N] [--set key=value] [--resume]

Each agent trains all seeds in one compiled program per evaluation interval
(progress bar with env steps/s and the latest returns), then both learning
curves go into one plot, `OUT/learning_curves.png`, and a summary table is
printed. Settings are chosen to finish in minutes on 2 CPU cores: small
networks and the fast 'positional' Brax backend.
"""

import os

from rlax_inf.agents import plotting
from rlax_inf.agents import report
from rlax_inf.agents import run
from rlax_inf.agents import run_dir

#: Config overrides of the main job (strings, as `--set key=value` takes them), also
#: the settings of the learning benchmark (`python -m benchmarks.sac learning`):
#: one gradient update per env transition (16 per vector step of 16 envs), 64x64
#: networks, an evaluation and a checkpoint every ~5k env steps per seed.
MAIN_SETS = dict(hidden="64,64", num_envs="16", batch_size="256", grad_updates_per_step="16",
                 prefill_steps="2048", eval_every="5000", num_eval_envs="8",
                 episode_length="1000", checkpoint_every="1")
MAIN_STEPS = 30_000
MAIN_BACKEND = "positional"


def main(args, overrides=None) -> int:
  """Train both agents on `args.env`; `overrides` (key -> string) update `MAIN_SETS`.

  On `args.resume` a run keeps its own --steps unless `args.steps` extends it.
  """
  sets = dict(MAIN_SETS, **(overrides or {}))
  backend = args.backend or (MAIN_BACKEND if args.env == "inverted_pendulum" else None)
  summaries = []
  dirs = []
  for agent in ("sac", "sac-fkl"):
    out = os.path.join(args.out, agent)
    agent, train_cfg, agent_cfg = run.requested_configs(
        out, args.resume, agent, sets, defaults=dict(total_steps=MAIN_STEPS), env=args.env,
        backend=backend, num_seeds=args.seeds, total_steps=args.steps)
    summaries.append(run.train_run(out, agent, train_cfg, agent_cfg, resume=args.resume,
                                   desc=f"{agent} {args.env} ×{args.seeds} seeds"))
    dirs.append(out)
  png = plotting.plot_runs(dirs, os.path.join(args.out, run_dir.PLOT_FILE))
  print()
  print(report.summary_table(summaries))
  print(f"\nlearning curves: {png}")
  return 0
