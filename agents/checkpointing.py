"""Full-state checkpoints with orbax: params, optimiser states, temperature,
normaliser, replay buffer, env states, PRNG keys and counters (the whole
`TrainState` pytree, seed-sharded arrays saved as global arrays).

Checkpoint steps are evaluation counts. Saves are atomic (orbax writes to a
temporary directory and renames it), so a run killed with SIGKILL at any time
leaves the last complete checkpoint readable. A checkpoint whose tree, shapes or
dtypes differ from the state this code builds (an older version of the state, or
another config) raises `IncompatibleCheckpoint` naming the first difference,
before anything is read into memory.
"""

import os
from typing import Dict, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp


class IncompatibleCheckpoint(ValueError):
  """The stored train state does not fit the one this code and config build."""


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_handlers=ocp.StandardCheckpointHandler())  # lets item_metadata read the tree


def _leaves(tree) -> Dict[str, Tuple[tuple, np.dtype]]:
  """{dotted path: (shape, dtype)}; a TrainState and its stored dict give the same paths."""
  return {jax.tree_util.keystr(path, simple=True, separator="."): (tuple(x.shape),
                                                                   np.dtype(x.dtype))
          for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_compatible(mngr: ocp.CheckpointManager, step: int, abstract_state) -> None:
  """Raise `IncompatibleCheckpoint` if checkpoint `step` does not fit `abstract_state`.

  orbax itself refuses other trees and shapes with long multi-line messages,
  and silently casts other dtypes; this compares the stored metadata leaf by leaf.
  """
  metadata = mngr.item_metadata(step)
  if metadata is None:
    raise IncompatibleCheckpoint(f"checkpoint {step} has no readable metadata")
  stored = _leaves(getattr(metadata, "tree", metadata))
  wanted = _leaves(abstract_state)
  missing = sorted(set(wanted) - set(stored))
  extra = sorted(set(stored) - set(wanted))
  if missing or extra:
    more = lambda names: names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")
    parts = ([f"it lacks {more(missing)}"] if missing else []) + (
        [f"it has {more(extra)} unknown to this version"] if extra else [])
    raise IncompatibleCheckpoint("a different train state: " + "; ".join(parts))
  for name, (shape, dtype) in wanted.items():
    if stored[name] != (shape, dtype):
      s_shape, s_dtype = stored[name]
      raise IncompatibleCheckpoint(f"{name} is stored as {s_shape} {s_dtype}, "
                                   f"this config needs {shape} {dtype}")


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
  """Save `state` at `step` and wait until it is on disk (donation-safe)."""
  mngr.save(step, args=ocp.args.StandardSave(state))
  mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, abstract_state, step=None):
  """Restore the checkpoint at `step` (the latest when None) into `abstract_state`'s structure.

  `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with shardings, e.g.
  `Trainer.abstract_state()`; the static (non-array) parts of the state come
  from its tree structure.

  Raises:
    FileNotFoundError: there is no checkpoint.
    IncompatibleCheckpoint: the checkpoint does not fit `abstract_state`.
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
  check_compatible(mngr, step, abstract_state)
  treedef = jax.tree.structure(abstract_state)
  try:
    restored = mngr.restore(step, args=ocp.args.StandardRestore(abstract_state))
  except ValueError as e:  # whatever the check above misses: orbax's own mismatch errors
    raise IncompatibleCheckpoint(str(e).splitlines()[0]) from e
  return jax.tree.unflatten(treedef, jax.tree.leaves(restored)), step
