"""Jitted, vmapped rlax_inf ops side by side with rlax, and message passing.

  python -m benchmarks.ops [--quick]

Rows (ratio = ours / rlax; target ≤ 1.05):
  * soft_q_learning at τ = 0 vs rlax.q_learning on B = 4096 transitions;
  * soft_lambda_returns vs rlax.lambda_returns on B = 4096 trajectories of T = 128;
  * soft_n_step_returns vs rlax.n_step_bootstrapped_returns (n = 5), same shapes;
  * soft_retrace at τ = 0 vs rlax.retrace, B = 1024 trajectories of T = 32, A = 8;
  * mpo_loss (vmapped over states) vs rlax.mpo_loss (the sample axis reduced at
    once), B = 256 states, N = 20 samples, decoupled mean / covariance KL bounds
    over D = 6 dimensions: the loss, and its value and gradients in all 7 inputs.
Message passing on random dense MDPs (A = 4) with S = 1,000 (100 backups, T = 50)
and 10,000 (20 backups, T = 10; a dense P is 1.6 GB): soft value iteration,
backward messages (variational and optimistic) and posterior marginals, with a
straightforward jnp reference of the optimistic backup (plain `logsumexp` over a
stored log P) for comparison.
Writes benchmarks/results/ops.json and ops.md with the command and the machine.
`--keep-messages` re-measures the rlax rows only and carries the message-passing
rows (minutes of CPU) over from the last results file, with their command.
"""

import argparse
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import rlax

import rlax_inf
from benchmarks import _common


def _rlax_rows(repeats):
  key = jax.random.PRNGKey(0)
  ks = jax.random.split(key, 8)
  rows = []
  b, a = 4096, 16
  q_tm1 = jax.random.normal(ks[0], (b, a)); q_t = jax.random.normal(ks[1], (b, a))
  a_tm1 = jax.random.randint(ks[2], (b,), 0, a); r = jax.random.normal(ks[3], (b,))
  d = jnp.full((b,), 0.99)
  ours = jax.jit(jax.vmap(lambda *x: rlax_inf.soft_q_learning(*x, temperature=0.0)))
  theirs = jax.jit(jax.vmap(rlax.q_learning))
  rows.append(("soft_q_learning(τ=0) vs q_learning", f"B={b}, A={a}",
               functools.partial(ours, q_tm1, a_tm1, r, d, q_t),
               functools.partial(theirs, q_tm1, a_tm1, r, d, q_t)))

  t = 128
  rr = jax.random.normal(ks[4], (b, t)); dd = jnp.full((b, t), 0.99)
  vv = jax.random.normal(ks[5], (b, t)); zeros = jnp.zeros((b, t))
  ours = jax.jit(jax.vmap(lambda r, d, v, z: rlax_inf.soft_lambda_returns(r, d, v, z, 0.9)))
  theirs = jax.jit(jax.vmap(lambda r, d, v: rlax.lambda_returns(r, d, v, 0.9)))
  rows.append(("soft_lambda_returns vs lambda_returns", f"B={b}, T={t}",
               functools.partial(ours, rr, dd, vv, zeros),
               functools.partial(theirs, rr, dd, vv)))
  ours = jax.jit(jax.vmap(lambda r, d, v, z: rlax_inf.soft_n_step_returns(r, d, v, z, 5)))
  theirs = jax.jit(jax.vmap(lambda r, d, v: rlax.n_step_bootstrapped_returns(r, d, v, 5)))
  rows.append(("soft_n_step_returns vs n_step_bootstrapped_returns (n=5)", f"B={b}, T={t}",
               functools.partial(ours, rr, dd, vv, zeros),
               functools.partial(theirs, rr, dd, vv)))

  b2, t2, a2 = 1024, 32, 8
  kk = jax.random.split(ks[6], 6)
  q_tm1 = jax.random.normal(kk[0], (b2, t2, a2)); q_t = jax.random.normal(kk[1], (b2, t2, a2))
  a_tm1 = jax.random.randint(kk[2], (b2, t2), 0, a2); a_t = jax.random.randint(kk[3], (b2, t2), 0, a2)
  r = jax.random.normal(kk[4], (b2, t2)); d = jnp.full((b2, t2), 0.99)
  log_pi = jax.nn.log_softmax(jax.random.normal(kk[5], (b2, t2, a2)))
  pi = jnp.exp(log_pi); mu = jnp.full((b2, t2), 1.0 / a2)
  ours = jax.jit(jax.vmap(lambda *x: rlax_inf.soft_retrace(*x, temperature=0.0, lambda_=0.9)))
  theirs = jax.jit(jax.vmap(lambda *x: rlax.retrace(*x, lambda_=0.9)))
  rows.append(("soft_retrace(τ=0) vs retrace", f"B={b2}, T={t2}, A={a2}",
               functools.partial(ours, q_tm1, q_t, a_tm1, a_t, r, d, log_pi, jnp.log(mu)),
               functools.partial(theirs, q_tm1, q_t, a_tm1, a_t, r, d, pi, mu)))

  rows += _mpo_rows(ks[7])

  out = []
  for name, shape, f_ours, f_theirs in rows:
    t = _common.time_interleaved({"ours": f_ours, "rlax": f_theirs}, repeats=repeats)
    ratio = t["ours"]["median_s"] / t["rlax"]["median_s"]
    out.append({"op": name, "shape": shape, "ours_ms": 1e3 * t["ours"]["median_s"],
                "rlax_ms": 1e3 * t["rlax"]["median_s"], "ratio": ratio})
    print(f"{name:58s} {shape:22s} ours {out[-1]['ours_ms']:8.3f} ms  "
          f"rlax {out[-1]['rlax_ms']:8.3f} ms  ratio {ratio:.3f}", flush=True)
  return out


_MPO_EPS, _MPO_EPS_MEAN, _MPO_EPS_COV = 0.1, 0.01, 0.002


def _mpo_rows(key):
  """mpo_loss on a batch of states, ours vmapped, rlax's over the sample axis."""
  b, n, d = 256, 20, 6
  k = jax.random.split(key, 7)
  inputs = (jax.nn.log_softmax(jax.random.normal(k[0], (b, n))),  # log π(a_k|s)
            3.0 * jax.random.normal(k[1], (b, n)),                  # Q(s, a_k)
            jnp.exp(jax.random.normal(k[2], ())),                   # η
            jnp.abs(jax.random.normal(k[3], (b,))),                 # KL of the mean
            jnp.abs(jax.random.normal(k[4], (b, d))),               # KL of σ, per dimension
            jnp.exp(jax.random.normal(k[5], ())),                   # α_μ
            jnp.exp(jax.random.normal(k[6], (d,))))                 # α_σ [D]

  def ours(log_pi, q, temperature, kl_mean, kl_cov, alpha_mean, alpha_cov):
    def one(lp, qq, km, kc):
      return rlax_inf.mpo_loss(lp, qq, temperature, _MPO_EPS,
                               ((km, alpha_mean, _MPO_EPS_MEAN), (kc, alpha_cov, _MPO_EPS_COV)))[0]
    return jnp.mean(jax.vmap(one)(log_pi, q, kl_mean, kl_cov))

  def theirs(log_pi, q, temperature, kl_mean, kl_cov, alpha_mean, alpha_cov):
    loss, _ = rlax.mpo_loss(
        log_pi, q, rlax.LagrangePenalty(temperature, jnp.asarray(_MPO_EPS)),
        [(kl_mean, rlax.LagrangePenalty(alpha_mean, jnp.asarray(_MPO_EPS_MEAN))),
         (kl_cov, rlax.LagrangePenalty(alpha_cov[None], jnp.asarray(_MPO_EPS_COV), True))],
        sample_axis=1)
    return jnp.mean(loss)

  shape = f"B={b}, N={n}, D={d}"
  grad = functools.partial(jax.value_and_grad, argnums=tuple(range(len(inputs))))
  return [("mpo_loss vs mpo_loss", shape,
           functools.partial(jax.jit(ours), *inputs), functools.partial(jax.jit(theirs), *inputs)),
          ("mpo_loss value_and_grad vs mpo_loss's", shape,
           functools.partial(jax.jit(grad(ours)), *inputs),
           functools.partial(jax.jit(grad(theirs)), *inputs))]


def _random_mdp(key, s, a):
  k1, k2 = jax.random.split(key)
  rewards = jax.random.normal(k1, (s, a))
  transitions = jax.nn.softmax(3.0 * jax.random.normal(k2, (s, a, s)), axis=-1)
  initial = jnp.full((s,), 1.0 / s)
  return rewards, transitions, initial


def _reference_optimistic_backward(rewards, transitions, horizon, tau):
  """Straightforward log-space backup: logsumexp over a stored log P."""
  log_p = jnp.log(transitions)

  def step(v, _):
    q = rewards + tau * jax.nn.logsumexp(log_p + v[None, None, :] / tau, axis=-1)
    v = tau * jax.nn.logsumexp(q / tau, axis=-1)
    return v, v

  v0 = tau * jax.nn.logsumexp(rewards / tau, axis=-1)
  return jax.lax.scan(step, v0, None, length=horizon - 1)[1]


def _message_rows(sizes, repeats):
  """Absolute times; per-backup time too, since S = 10,000 uses shorter runs."""
  out = []
  tau = 0.5
  for s in sizes:
    large = s >= 10_000
    # At S = 10,000 a dense P is 1.6 GB and one backup reads it (more than)
    # once: fewer backups and one timed repeat keep the run to minutes on CPU.
    horizon, iters = (10, 20) if large else (50, 100)
    rep = 1 if large else max(2, repeats // 2)
    rewards, transitions, initial = _random_mdp(jax.random.PRNGKey(s), s, 4)
    jax.block_until_ready(transitions)
    fns = {
        ("soft_value_iteration", iters): jax.jit(
            lambda r, p: rlax_inf.soft_value_iteration(r, p, 0.99, tau, None, iters)),
        ("backward_messages variational", horizon): jax.jit(
            lambda r, p: rlax_inf.backward_messages(r, p, horizon, tau, None, False)),
        ("backward_messages optimistic", horizon): jax.jit(
            lambda r, p: rlax_inf.backward_messages(r, p, horizon, tau, None, True)),
        ("reference optimistic backward (logsumexp over stored log P)", horizon): jax.jit(
            lambda r, p: _reference_optimistic_backward(r, p, horizon, tau)),
        ("state_action_marginals posterior", horizon): jax.jit(
            lambda r, p: rlax_inf.state_action_marginals(r, p, initial, horizon, tau)),
    }
    for (name, steps), f in fns.items():
      t = _common.time_interleaved({name: functools.partial(f, rewards, transitions)},
                                   repeats=rep, warmup=1)[name]
      out.append({"op": name, "S": s, "A": 4, "steps": steps, "ms": 1e3 * t["median_s"],
                  "ms_per_step": 1e3 * t["median_s"] / steps})
      print(f"S={s:6d} {name:60s} steps={steps:4d} {1e3 * t['median_s']:10.1f} ms "
            f"({out[-1]['ms_per_step']:.2f} ms/step)", flush=True)
    del transitions
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--quick", action="store_true", help="S = 1,000 only, fewer repeats")
  parser.add_argument("--repeats", type=int, default=30)
  parser.add_argument("--keep-messages", action="store_true",
                      help="rlax rows only; message-passing rows from the last results file")
  args = parser.parse_args()
  repeats = 5 if args.quick else args.repeats
  sizes = [1000] if args.quick else [1000, 10_000]
  info = _common.machine()
  print(f"machine: {info}", flush=True)
  rlax_rows = _rlax_rows(repeats)
  if args.keep_messages:
    with open(os.path.join(_common.RESULTS_DIR, "ops.json")) as f:
      last = json.load(f)
    msg_rows = last["messages"]
    msg_command = last.get("messages_command", last["command"])
    msg_machine = last.get("messages_machine", last["machine"])
  else:
    msg_rows = _message_rows(sizes, repeats)
    msg_command, msg_machine = _common.command(), info
  payload = {"command": _common.command(), "machine": info, "rlax": rlax_rows,
             "messages": msg_rows, "messages_command": msg_command,
             "messages_machine": msg_machine}
  md = [f"# ops benchmark\n\nCommand: `{payload['command']}`  \n"
        f"Machine: {info['cpu']}, {info['cores']} cores, jax {info['jax']} "
        f"({info['backend']}, {info['device']}).\n",
        "Jitted and vmapped; median of interleaved runs (ours and rlax alternate).\n",
        "| op | shape | ours (ms) | rlax (ms) | ours / rlax |", "|---|---|---|---|---|"]
  for r in rlax_rows:
    md.append(f"| {r['op']} | {r['shape']} | {r['ours_ms']:.3f} | {r['rlax_ms']:.3f} | "
              f"{r['ratio']:.3f} |")
  md += ["", "Message passing on random dense MDPs (A = 4, τ = 0.5); steps = backups "
         f"(value iteration) or horizon T (messages). Command `{msg_command}`, "
         f"machine {msg_machine['cpu']}, {msg_machine['cores']} cores, jax {msg_machine['jax']}:",
         "",
         "| op | S | steps | time (ms) | ms per step |", "|---|---|---|---|---|"]
  for r in msg_rows:
    md.append(f"| {r['op']} | {r['S']} | {r['steps']} | {r['ms']:.1f} | "
              f"{r['ms_per_step']:.2f} |")
  _common.write_results("ops", payload, "\n".join(md) + "\n")


if __name__ == "__main__":
  main()
