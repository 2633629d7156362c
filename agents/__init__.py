"""rlax_inf.agents: agents built from rlax_inf losses (installed as rlax_inf.agents).

  sac.py          SAC / SAC-FKL: config dataclass + pure init / act / update
  replay.py       per-seed pure-JAX ring buffer (O(batch) insert, uniform sampling)
  normalizer.py   running observation mean / variance
  networks.py     MLP actor (tanh-Gaussian head) and twin critics
  training.py     one compiled program per evaluation interval; seeds vmapped and
                  sharded over devices with jax.shard_map; `train(config, agent)`
  run.py          a run directory: config.json, metrics.jsonl, orbax checkpoints, resume
  checkpointing.py, plotting.py, distributed.py (jax.distributed), main_job.py
  cli.py          the `rlax-inf` console script
"""
