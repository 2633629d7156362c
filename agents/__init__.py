"""rlax_inf.agents: the agent platform and agents built from rlax_inf losses.

  base.py         the Agent contract (NamedTuple of pure functions), Needs, Transition
  registry.py     name -> (default config, factory): the only place that lists agents
  config.py       TrainConfig: the loops' fields (env, seeds, budget, schedule)
  gradients.py    one gradient step (value_and_grad + optax update) for every optimiser
  acting.py       one vector step of acting, the shared evaluation
  off_policy.py   replay loop: one-step transitions or length-T sequences
  on_policy.py    rollout loop: T-step rollouts, epochs of minibatch updates
  replay.py       per-seed pure-JAX ring buffer (rows of num_envs items)
  training.py     Trainer: the agent's loop, seeds vmapped and sharded over devices
  sac.py, sql.py, klpg.py   one module per agent: config, losses, update
  networks.py, normalizer.py, _tanh_normal.py   shared building blocks
  the application (names no agent):
  errors.py       UsageError (exit 2) and NonFiniteError (exit 1)
  run_config.py   --set parsing and checks, config.json saved and read
  run_dir.py      a run directory's files: append-only metrics, atomic writes, the lock
  run.py          a run: opens, validates, resumes (falling back past damaged checkpoints)
  checkpointing.py  orbax checkpoints of the whole train state
  report.py       stages, the progress bar, the summary table
  plotting.py, compile_cache.py, distributed.py (jax.distributed), main_job.py, demo.py
  cli.py          the `rlax-inf` console script
"""
