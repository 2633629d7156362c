"""The contract, continued: for every registered agent, 4 seeds on 1 device (vmapped) and
on 4 host devices (one seed each, `shard_map`) give the same parameters and metrics."""

import os
import subprocess
import sys
import textwrap

sys.path.insert(0, os.path.dirname(__file__))
import test_contract as contract  # pylint: disable=g-import-not-at-top,wrong-import-position

DEVICES_SCRIPT = textwrap.dedent("""
    import sys, jax, numpy as np
    sys.path.insert(0, {tests!r})
    import test_contract as c
    assert len(jax.devices()) == 4, jax.devices()
    for name in c.AGENTS:
      out = {{}}
      for n in (1, 4):
        trainer = c.training.Trainer(c.tiny_config(name, num_seeds=4, total_steps=32),
                                     c.small(name), name, devices=jax.devices()[:n])
        ts = trainer.init(trainer.seed_keys())
        assert len(ts.key.sharding.device_set) == n
        ts, metrics = trainer.run_interval(ts)
        out[n] = jax.device_get((ts.agent, metrics))
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                   out[1], out[4])
      print("AGREE", name)
""")


def test_one_and_four_devices_agree_for_every_agent():
  flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
  env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
  script = DEVICES_SCRIPT.format(tests=os.path.dirname(__file__))
  res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                       text=True, timeout=900)
  assert res.returncode == 0, res.stderr[-4000:]
  for name in contract.AGENTS:
    assert f"AGREE {name}" in res.stdout, res.stdout
