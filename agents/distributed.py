"""Multi-host training through `jax.distributed` (no home-made transport).

Every process runs the same command with its own `process_id`:

  rlax-inf train ... --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0   # host 0
  rlax-inf train ... --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 1   # host 1

After `initialize`, `jax.devices()` lists the devices of every process; the
`Trainer`'s mesh takes the same number of local devices from each process
(`training.default_devices`), each process holds the seeds on its own devices
(`jax.make_array_from_callback`), the seed programs run with no cross-device
communication, metrics are gathered with `multihost_utils.process_allgather`,
process 0 writes config.json, metrics.jsonl and the plot, and orbax writes the
checkpoint cooperatively (every process calls save / restore). So `--out` must
be one directory every process sees (a shared file system), and `num_seeds`
must be divisible by the number of processes (by default each process takes as
many local devices as keep `num_seeds` divisible; `--set num_devices=N` picks N
in all, a multiple of the process count). Results equal a one-process run with
the same number of devices (tests/agents/test_distributed.py: two processes on
127.0.0.1, CPU collectives over gloo).
"""

import os

import jax


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
  """`jax.distributed.initialize`, with gloo CPU collectives when running on CPU."""
  if num_processes is None or process_id is None:
    raise ValueError("a coordinator needs num_processes and process_id")
  try:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except (AttributeError, ValueError):  # older / newer jax without the option
    pass
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)


HOST_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"


def split_host_cpu(count: int) -> None:
  """Make the host CPU `count` XLA devices: rewrites XLA_FLAGS' device count.

  Takes effect only if no JAX backend has started yet (XLA reads the flag then).
  The Trainer shards the seed axis over as many devices as divide the seeds; on a
  CPU one device's program runs on about one core, so one device per core is the
  fastest (benchmarks/results/seeds_scaling.md).
  """
  kept = [f for f in os.environ.get("XLA_FLAGS", "").split()
          if not f.startswith(HOST_DEVICE_COUNT_FLAG)]
  os.environ["XLA_FLAGS"] = " ".join(kept + [f"{HOST_DEVICE_COUNT_FLAG}={count}"])


def barrier(name: str) -> None:
  """Wait until every process gets here (a no-op with one process).

  `run.train_run` waits here after every process has looked at the run directory
  and before process 0 writes to it, so all of them take the same branch (new
  run, resume, refuse).
  """
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)
