"""Seed axis sharded over 4 (forced host) devices agrees with one device."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from rlax_inf.agents import sac, training
    assert len(jax.devices()) == 4, jax.devices()
    cfg = training.TrainConfig(env="pendulum", num_seeds=4, total_steps=32 + 2 * 32,
                               num_envs=4, batch_size=16, grad_updates_per_step=2,
                               prefill_steps=32, eval_every=32, episode_length=20,
                               num_eval_envs=2)
    out = {}
    for n in (1, 4):
      trainer = training.Trainer(cfg, sac.SACConfig(hidden=(16, 16)), "sac",
                                 devices=jax.devices()[:n])
      ts = trainer.init(trainer.seed_keys())
      assert len(ts.key.sharding.device_set) == n
      for _ in range(trainer.schedule.num_intervals):
        ts, metrics = trainer.run_interval(ts)
      out[n] = jax.device_get((ts.agent.actor, ts.agent.critic, ts.agent.log_alpha, metrics))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 out[1], out[4])
    print("AGREE")
""")


def test_one_and_four_devices_agree():
  flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
  env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
  res = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                       text=True, timeout=600)
  assert res.returncode == 0 and "AGREE" in res.stdout, res.stderr[-4000:]
