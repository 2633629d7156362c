"""Full-state checkpoints with orbax: params, optimiser states, temperature,
normaliser, replay buffer, env states, PRNG keys and counters (the whole
`TrainState` pytree, seed-sharded arrays saved as global arrays).

Checkpoint steps are evaluation counts. Saves are atomic (orbax writes to a
temporary directory and renames it), so a run killed with SIGKILL at any time
leaves the last complete checkpoint readable. A checkpoint whose tree, shapes or
dtypes differ from the state this code builds (an older version of the state, or
another config) raises `IncompatibleCheckpoint` naming the first difference,
before anything is read into memory. A checkpoint that fits but cannot be read
(a truncated array file, a missing manifest or metadata file: a disk fault, or a
copy cut short) raises `DamagedCheckpoint`; `restore_latest` then falls back to
the newest one that reads.

Leaves with zero size (MJX and MuJoCo Playground states keep some, e.g. `act`
of a model without actuator activations) carry no data and orbax refuses to
save them: they are stored as None, and `restore` rebuilds them as zeros with
the shape, dtype and sharding of the abstract state.
"""

import contextlib
import math
import os
import sys
from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp


class IncompatibleCheckpoint(ValueError):
  """The stored train state does not fit the one this code and config build."""


class DamagedCheckpoint(ValueError):
  """A checkpoint's files cannot be read (truncated, missing): the message says which step."""


def manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_handlers=ocp.StandardCheckpointHandler())  # lets item_metadata read the tree


def _is_empty(x) -> bool:
  """A leaf with no data: zero size (not saved, see `save`) or None."""
  return x is None or (hasattr(x, "shape") and math.prod(x.shape) == 0)


def _leaf(x) -> Optional[Tuple[tuple, np.dtype]]:
  """(shape, dtype) of a leaf as stored: None when it has no data, key data for typed keys."""
  if _is_empty(x):
    return None
  if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # orbax stores the key data
    x = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(x.shape, x.dtype))
  return tuple(x.shape), np.dtype(x.dtype)


def _leaves(tree, nones: bool = False) -> Dict[str, Optional[Tuple[tuple, np.dtype]]]:
  """{dotted path: (shape, dtype), or None for a zero-size leaf (and, with `nones`, for a
  None)}; a TrainState and its stored dict give the same paths."""
  return {jax.tree_util.keystr(path, simple=True, separator="."): _leaf(x)
          for path, x in jax.tree_util.tree_flatten_with_path(
              tree, is_leaf=(lambda x: x is None) if nones else None)[0]}


def _describe(leaf: Optional[Tuple[tuple, np.dtype]]) -> str:
  return "an array of zero size" if leaf is None else f"{leaf[0]} {leaf[1]}"


def check_compatible(mngr: ocp.CheckpointManager, step: int, abstract_state) -> None:
  """Raise `IncompatibleCheckpoint` if checkpoint `step` does not fit `abstract_state`.

  orbax itself refuses other trees and shapes with long multi-line messages,
  and silently casts other dtypes; this compares the stored metadata leaf by leaf.
  Leaves of zero size (stored as None) must be of zero size here too, of any shape.
  """
  try:
    metadata = mngr.item_metadata(step)
  except Exception as e:  # pylint: disable=broad-except  # orbax/TensorStore read errors
    raise DamagedCheckpoint(f"checkpoint {step}: its metadata cannot be read "
                            f"({describe_error(e)})") from e
  if metadata is None:
    raise DamagedCheckpoint(f"checkpoint {step}: its metadata file is missing")
  wanted = _leaves(abstract_state)
  # The Nones in the stored tree where this state has leaves are the zero-size leaves
  # `save` left out; others are orbax's for empty containers (e.g. optax's EmptyState).
  stored = {name: leaf
            for name, leaf in _leaves(getattr(metadata, "tree", metadata), nones=True).items()
            if leaf is not None or name in wanted}
  missing = sorted(set(wanted) - set(stored))
  extra = sorted(set(stored) - set(wanted))
  if missing or extra:
    more = lambda names: names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")
    parts = ([f"it lacks {more(missing)}"] if missing else []) + (
        [f"it has {more(extra)} unknown to this version"] if extra else [])
    raise IncompatibleCheckpoint("a different train state: " + "; ".join(parts))
  for name, leaf in wanted.items():
    if stored[name] != leaf:
      raise IncompatibleCheckpoint(f"{name} is stored as {_describe(stored[name])}, "
                                   f"this config needs {_describe(leaf)}")


def describe_error(e: BaseException, limit: int = 160) -> str:
  """A one-line description of an orbax / TensorStore error (theirs run to kilobytes)."""
  text = (str(e).strip().splitlines() or [type(e).__name__])[0]
  text = text.split(" See full TensorStore details")[0].split(" [tensorstore_spec=")[0]
  return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def _quiet_unraisable():
  """Drop "Exception ignored in <coroutine>" reports while a read fails.

  When one array of a checkpoint cannot be read, orbax abandons the reads of the
  others and Python reports each abandoned coroutine on stderr, with a
  TensorStore spec of some kilobytes; the failure itself is raised as usual.
  """
  hook = sys.unraisablehook
  sys.unraisablehook = lambda unraisable: None
  try:
    yield
  finally:
    sys.unraisablehook = hook


def _without_empty(tree):
  """`tree` with None in place of its zero-size leaves (orbax cannot save those)."""
  return jax.tree.map(lambda x: None if _is_empty(x) else x, tree)


def _zeros(abstract_leaves):
  """Zero-size arrays for the `jax.ShapeDtypeStruct`s `abstract_leaves`, with their
  shardings (one jit for all, so that global shardings work on several processes)."""
  sharded = [s for s in abstract_leaves if getattr(s, "sharding", None) is not None]
  made = iter(jax.jit(lambda: [jnp.zeros(s.shape, s.dtype) for s in sharded],
                      out_shardings=[s.sharding for s in sharded])() if sharded else [])
  return [next(made) if getattr(s, "sharding", None) is not None else jnp.zeros(s.shape, s.dtype)
          for s in abstract_leaves]


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
  """Save `state` at `step` and wait until it is on disk (donation-safe).

  Zero-size leaves are saved as None (`restore` rebuilds them).
  """
  mngr.save(step, args=ocp.args.StandardSave(_without_empty(state)))
  mngr.wait_until_finished()


def restore(mngr: ocp.CheckpointManager, abstract_state, step=None):
  """Restore the checkpoint at `step` (the latest when None) into `abstract_state`'s structure.

  `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with shardings, e.g.
  `Trainer.abstract_state()`; the static (non-array) parts of the state come
  from its tree structure.

  Raises:
    FileNotFoundError: there is no checkpoint.
    IncompatibleCheckpoint: the checkpoint does not fit `abstract_state`.
    DamagedCheckpoint: it fits, but its files cannot be read.
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
  check_compatible(mngr, step, abstract_state)
  abstract, treedef = jax.tree.flatten(abstract_state)
  empty = [_is_empty(s) for s in abstract]
  try:
    with _quiet_unraisable():
      restored = mngr.restore(step, args=ocp.args.StandardRestore(jax.tree.unflatten(
          treedef, [None if e else s for s, e in zip(abstract, empty)])))
  # The metadata matched `abstract_state` leaf by leaf, so what fails now is reading
  # the files: TensorStore's NOT_FOUND / DATA_LOSS (ValueError) or orbax's bare
  # Exception for an array that does not decode.
  except Exception as e:  # pylint: disable=broad-except
    raise DamagedCheckpoint(f"checkpoint {step}: {describe_error(e)}") from e
  data = jax.tree.leaves(restored)
  assert len(data) == len(abstract) - sum(empty), (len(data), len(abstract), sum(empty))
  data, zeros = iter(data), iter(_zeros([s for s, e in zip(abstract, empty) if e]))
  return jax.tree.unflatten(treedef, [next(zeros) if e else next(data) for e in empty]), step


def restore_latest(mngr: ocp.CheckpointManager, abstract_state,
                   on_damaged: Callable[[int, str], None] = lambda step, why: None):
  """Restore the newest checkpoint that reads, falling back past damaged ones.

  Args:
    mngr: the checkpoint manager.
    abstract_state: as for `restore`.
    on_damaged: called with (step, one-line reason) for each damaged checkpoint
      passed over, newest first.

  Returns:
    (state, step) of the newest readable checkpoint.

  Raises:
    FileNotFoundError: there is no checkpoint.
    IncompatibleCheckpoint: the newest checkpoint whose metadata reads does not
      fit `abstract_state` (older ones were written by the same config: no fallback).
    DamagedCheckpoint: every checkpoint is damaged (the message names the newest).
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  if not steps:
    raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
  first = None
  for step in steps:
    try:
      return restore(mngr, abstract_state, step)
    except DamagedCheckpoint as e:
      first = first or e
      on_damaged(step, str(e))
  raise DamagedCheckpoint(f"every checkpoint is damaged, the newest {first}")
