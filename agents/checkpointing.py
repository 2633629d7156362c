"""Full-state checkpoints with orbax: params, optimiser states, temperature,
normaliser, replay buffer, env states, PRNG keys and counters (the whole
`TrainState` pytree, seed-sharded arrays saved as global arrays).

Checkpoint steps are evaluation counts. Saves are atomic (orbax writes to a
temporary directory and renames it), so a run killed with SIGKILL at any time
leaves the last complete checkpoint readable.
"""

import os

import jax
import orbax.checkpoint as ocp


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
  """Save `state` at `step` and wait until it is on disk (donation-safe)."""
  mngr.save(step, args=ocp.args.StandardSave(state))
  mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, abstract_state, step=None):
  """Restore the checkpoint at `step` (the latest when None) into `abstract_state`'s structure.

  `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with shardings, e.g.
  `Trainer.abstract_state()`; the static (non-array) parts of the state come
  from its tree structure.
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
  leaves, treedef = jax.tree.flatten(abstract_state)
  restored = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
  return jax.tree.unflatten(treedef, jax.tree.leaves(restored)), step
