"""Checkpoints of train states with zero-size leaves (MJX, MuJoCo Playground) and empty dicts."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from rlax_inf.agents import base, checkpointing

N = 2  # seeds (the leading axis, sharded over 'seed')


def _seed_sharding():
  return NamedSharding(Mesh(np.array(jax.devices()[:1]), ("seed",)), P("seed"))


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      tree)


def _round_trip(tmp_path, state, abstract=None):
  mngr = checkpointing.manager(str(tmp_path / "checkpoints"))
  checkpointing.save(mngr, 3, state)
  restored, step = checkpointing.restore(mngr, _abstract(state) if abstract is None
                                         else abstract)
  mngr.close()
  assert step == 3
  return restored


def _assert_identical(restored, state):
  """Same tree (static parts included), and every leaf with the same shape, dtype,
  sharding and bits."""
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(state)[0],
                          jax.tree.leaves(restored)):
    name = jax.tree_util.keystr(path)
    assert (b.shape, b.dtype) == (a.shape, a.dtype), name
    assert b.sharding.is_equivalent_to(a.sharding, a.ndim), name
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    assert np.asarray(b).tobytes() == np.asarray(a).tobytes(), name


def _state():
  """Normal, zero-size (mixed dtypes, some only zero in a middle axis) and empty parts."""
  rng = np.random.default_rng(0)
  tree = dict(
      transition=base.Transition(
          obs=rng.normal(size=(N, 5, 3)).astype(np.float32),
          action=rng.normal(size=(N, 5, 1)).astype(np.float32),
          reward=np.array([[np.nan, -0.0, np.inf, 1e-40, 2.0]] * N, np.float32),
          terminated=np.zeros((N, 5), np.float32), done=np.ones((N, 5), np.float32),
          next_obs=rng.normal(size=(N, 5, 3)).astype(np.float32), extras={}),
      act=np.zeros((N, 0), np.float32),
      mocap_quat=np.zeros((N, 0, 4), np.float32),
      eq_active=np.zeros((N, 0), bool),
      wrap_obj=np.zeros((N, 0, 2), np.int32),
      nothing=np.zeros((0,), np.float64 if jax.config.jax_enable_x64 else np.float32),
      link_idx=(np.zeros((N, 0), np.int32), np.zeros((N, 0), np.int32)),
      counts=np.arange(N, dtype=np.int32),
      raw_key=np.stack([np.asarray(jax.random.PRNGKey(i)) for i in range(N)]),
      meta={"empty": {}, "also_empty": (), "x": rng.normal(size=(N,)).astype(np.float32)},
      # containers without leaves that orbax stores as None, as in an optax state
      opt=(optax.EmptyState(), optax.ScaleByAdamState(np.zeros(N, np.int32), {}, {}), None))
  sharding = _seed_sharding()
  state = jax.tree.map(lambda x: jax.device_put(x, sharding), tree)
  # A typed key array (orbax stores its key data); the playground envs keep some.
  state["typed_key"] = jax.device_put(jax.random.split(jax.random.key(1), N), sharding)
  return state


def test_zero_size_leaves_and_empty_dicts_round_trip(tmp_path):
  state = _state()
  restored = _round_trip(tmp_path, state)
  _assert_identical(restored, state)
  assert restored["transition"].extras == {} and restored["meta"]["empty"] == {}
  # The zero-size leaves are not in the checkpoint (stored as None), the others are.
  mngr = checkpointing.manager(str(tmp_path / "checkpoints"))
  stored = mngr.item_metadata(3).tree
  mngr.close()
  assert stored["act"] is None and stored["link_idx"] == [None, None]
  assert stored["transition"]["extras"] == {} and stored["counts"].shape == (N,)
  assert stored["opt"][0] is None  # orbax's None for optax.EmptyState(), not a left-out leaf


def test_restore_without_shardings_gives_default_placed_zeros(tmp_path):
  state = {"a": jnp.arange(3.0), "z": jnp.zeros((3, 0), jnp.int32)}
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
  restored = _round_trip(tmp_path, state, abstract)
  np.testing.assert_array_equal(restored["a"], state["a"])
  assert (restored["z"].shape, restored["z"].dtype) == ((3, 0), jnp.int32)


def _edited(abstract, path, new):
  """`abstract` with the leaf at dict keys `path` replaced by `new` (deleted when None)."""
  abstract = jax.tree.map(lambda x: x, abstract)  # a copy of the containers
  node = abstract
  for key in path[:-1]:
    node = node[key]
  if new is None:
    del node[path[-1]]
  else:
    node[path[-1]] = new
  return abstract


@pytest.mark.parametrize("path, new, needles", [
    (("meta", "x"), (N + 1,), ["meta.x is stored as (2,) float32", "needs (3,) float32"]),
    (("counts",), np.int16, ["counts is stored as (2,) int32", "needs (2,) int16"]),
    (("meta", "x"), None, ["different train state: it has meta.x unknown to this version"]),
    (("meta", "y"), (N,), ["different train state: it lacks meta.y"]),
    # zero size where the checkpoint holds data, and the other way round
    (("counts",), (N, 0), ["counts is stored as (2,) int32",
                           "needs an array of zero size"]),
    (("act",), (N, 3), ["act is stored as an array of zero size", "needs (2, 3) float32"]),
])
def test_a_checkpoint_that_does_not_fit_raises_one_line(tmp_path, path, new, needles):
  state = _state()
  mngr = checkpointing.manager(str(tmp_path / "checkpoints"))
  checkpointing.save(mngr, 1, state)
  abstract = _abstract(state)
  if new is not None:
    node = abstract
    for key in path[:-1]:
      node = node[key]
    old = node.get(path[-1], jax.ShapeDtypeStruct((N,), jnp.float32,
                                                  sharding=_seed_sharding()))
    shape, dtype = (new, old.dtype) if isinstance(new, tuple) else (old.shape, new)
    new = jax.ShapeDtypeStruct(shape, dtype, sharding=old.sharding)
  abstract = _edited(abstract, path, new)
  for call in (lambda: checkpointing.check_compatible(mngr, 1, abstract),
               lambda: checkpointing.restore(mngr, abstract)):
    with pytest.raises(checkpointing.IncompatibleCheckpoint) as e:
      call()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for needle in needles:
      assert needle in msg, msg
  mngr.close()


def test_zero_size_leaves_of_other_shapes_are_compatible(tmp_path):
  """Zero-size leaves carry no data: only that they are empty is compared."""
  state = _state()
  mngr = checkpointing.manager(str(tmp_path / "checkpoints"))
  checkpointing.save(mngr, 1, state)
  abstract = _edited(_abstract(state), ("act",),
                     jax.ShapeDtypeStruct((N, 0, 7), jnp.int32, sharding=_seed_sharding()))
  restored, _ = checkpointing.restore(mngr, abstract)
  mngr.close()
  assert (restored["act"].shape, restored["act"].dtype) == ((N, 0, 7), jnp.int32)


def _env_state_round_trip(tmp_path, name, **kw):
  from rlax_inf import envs
  env = envs.make(name, **kw)
  keys = jax.random.split(jax.random.PRNGKey(0), N)
  state = jax.device_put(jax.jit(jax.vmap(env.reset))(keys), _seed_sharding())
  assert any(x.size == 0 for x in jax.tree.leaves(state))  # what orbax refused to save
  _assert_identical(_round_trip(tmp_path, state), state)


@pytest.mark.slow  # ~45 s on a busy 2-core CPU, mostly the MJX reset's compile
def test_mjx_env_state_round_trips(tmp_path):
  _env_state_round_trip(tmp_path, "inverted_pendulum", backend="mjx", episode_length=10)


@pytest.mark.slow  # ~35 s on a busy 2-core CPU: loading the model, compiling reset
@pytest.mark.skipif(importlib.util.find_spec("mujoco_playground") is None,
                    reason="needs the playground extra (mujoco_playground is not installed)")
def test_playground_env_state_round_trips(tmp_path):
  _env_state_round_trip(tmp_path, "CartpoleBalance", episode_length=10)


# --- damaged checkpoints: fall back to the newest one that reads ---------------

def _damage(step_dir, kind):
  """Damage the checkpoint in `step_dir` as a disk fault or a cut-short copy would."""
  import glob  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  item = os.path.join(step_dir, "default")
  if kind == "truncated array file":
    files = glob.glob(os.path.join(item, "**", "d", "*"), recursive=True)
    assert files
    for f in files:
      with open(f, "r+b") as fh:
        fh.truncate(10)
  elif kind == "missing manifest.ocdbt":
    files = glob.glob(os.path.join(item, "**", "manifest.ocdbt"), recursive=True)
    assert files
    for f in files:
      os.remove(f)
  elif kind == "missing _METADATA":
    os.remove(os.path.join(item, "_METADATA"))


@pytest.mark.parametrize("kind", ["truncated array file", "missing manifest.ocdbt",
                                  "missing _METADATA"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, kind, capfd):
  state = _state()
  mngr = checkpointing.manager(str(tmp_path / "checkpoints"))
  checkpointing.save(mngr, 1, state)
  checkpointing.save(mngr, 2, jax.tree.map(lambda x: x, state))
  mngr.close()
  _damage(str(tmp_path / "checkpoints" / "2"), kind)
  mngr = checkpointing.manager(str(tmp_path / "checkpoints"))
  with pytest.raises(checkpointing.DamagedCheckpoint) as e:  # not "another config"
    checkpointing.restore(mngr, _abstract(state), 2)
  assert "\n" not in str(e.value) and len(str(e.value)) < 300, str(e.value)
  assert str(e.value).startswith("checkpoint 2"), str(e.value)
  passed_over = []
  restored, step = checkpointing.restore_latest(
      mngr, _abstract(state), lambda s, why: passed_over.append((s, why)))
  mngr.close()
  assert step == 1 and [s for s, _ in passed_over] == [2]
  _assert_identical(restored, state)
  assert "TensorStore" not in capfd.readouterr().err  # no multi-KB specs on stderr


def test_every_checkpoint_damaged_raises_one_line(tmp_path):
  state = _state()
  mngr = checkpointing.manager(str(tmp_path / "checkpoints"))
  checkpointing.save(mngr, 1, state)
  mngr.close()
  _damage(str(tmp_path / "checkpoints" / "1"), "missing manifest.ocdbt")
  mngr = checkpointing.manager(str(tmp_path / "checkpoints"))
  with pytest.raises(checkpointing.DamagedCheckpoint) as e:
    checkpointing.restore_latest(mngr, _abstract(state))
  mngr.close()
  assert "every checkpoint is damaged" in str(e.value) and "\n" not in str(e.value)
