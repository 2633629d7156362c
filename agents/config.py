"""The loop's configuration: environment, seeds, budget and schedule (no agent fields).

Agents keep their hyper-parameters in their own config dataclass; the registry
refuses an agent config whose field names collide with `TrainConfig`'s, so a
`--set key=value` always names exactly one field.
"""

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How to train: environment, seeds, budget and the loop's schedule.

  `total_steps`, `prefill_steps`, `eval_every` count environment transitions
  per seed (agent steps × `num_envs`).

  Off-policy loop: `grad_updates_per_step` gradient updates per vector step of
  `num_envs` envs (brax.training's convention), each on `batch_size`
  transitions (or sequences) sampled from a buffer of `replay_size`
  transitions, prefilled with `prefill_steps` transitions of random actions.

  On-policy loop: each iteration collects a rollout of T steps (the agent's
  `needs.sequence_length`) from `num_envs` envs, then runs `num_epochs` passes
  over it in `num_minibatches` minibatches of whole rollouts.
  """

  env: str = "inverted_pendulum"
  backend: Optional[str] = None
  num_seeds: int = 1
  seed: int = 0
  total_steps: int = 50_000
  num_envs: int = 64
  batch_size: int = 256
  grad_updates_per_step: int = 16
  replay_size: int = 1_000_000
  prefill_steps: int = 8192
  num_minibatches: int = 4
  num_epochs: int = 4
  eval_every: int = 5_000
  num_eval_envs: int = 16
  eval_stochastic: bool = True  # False: score the deterministic policy only (brax.training's)
  episode_length: int = 1000
  action_repeat: int = 1
  fresh_resets: bool = True  # False: Brax's cached initial state per env (cheaper step)
  checkpoint_every: int = 1  # evaluations between checkpoints
  num_devices: int = 0  # 0: as many as divide num_seeds
  fast_compile: bool = True  # compile with training.FAST_COMPILE_OPTIONS (False: XLA's own)

  def __post_init__(self):
    for name in ("num_seeds", "total_steps", "num_envs", "batch_size", "eval_every",
                 "num_eval_envs", "episode_length", "action_repeat", "checkpoint_every",
                 "num_minibatches", "num_epochs"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.grad_updates_per_step < 0 or self.prefill_steps < 0:
      raise ValueError("grad_updates_per_step and prefill_steps must be >= 0")


def field_names() -> frozenset:
  return frozenset(f.name for f in dataclasses.fields(TrainConfig))
