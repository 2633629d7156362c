"""Multi-host training through `jax.distributed` (no home-made transport).

Every process runs the same command with its own `process_id`:

  rlax-inf train ... --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0   # host 0
  rlax-inf train ... --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 1   # host 1

After `initialize`, `jax.devices()` lists the devices of every process; the
`Trainer`'s mesh spans them, each process holds the seeds on its own devices
(`jax.make_array_from_callback`), the seed programs run with no cross-device
communication, metrics are gathered with `multihost_utils.process_allgather`,
process 0 writes metrics.jsonl and the plot, and orbax writes the checkpoint
cooperatively (every process calls save / restore). `num_seeds` must be a
multiple of the global device count (or set `--set num_devices=...`).
"""

import jax


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
  """`jax.distributed.initialize`, with gloo CPU collectives when running on CPU."""
  if num_processes is None or process_id is None:
    raise ValueError("--coordinator needs --num-processes and --process-id")
  try:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except (AttributeError, ValueError):  # older / newer jax without the option
    pass
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)
