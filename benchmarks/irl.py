"""Tabular inverse RL: reward recovery on the grid world and a Garnet MDP.

  python -m benchmarks.irl [--quick]

The expert is the maximum-causal-entropy one: the soft-optimal policy of the
known reward (`mdp.rewards`, finite horizon T, undiscounted) acting under the
true dynamics. Its demonstrations are either exact (infinite data: the
expected counts) or E sampled episodes (`soft_optimal_demonstrations`). Both
likelihoods of `rlax_inf.maxent_irl_loss` fit a tabular reward from zero with
Adam, side by side; every few iterations the learned reward's policy
(`soft_optimal_log_policy` of the same likelihood) is run under the true
dynamics and compared with the expert:

  policy KL  = (1/T) Σ_t Σ_s d_t(s) KL(π_E,t(·|s) ‖ π̂_t(·|s)), d the expert's state distribution;
  count error = (1/T) Σ_t Σ_{s,a} |μ̂_t(s,a) − μ_E,t(s,a)| (the L1 distance of the occupancies).

The maximum-entropy likelihood is misspecified for this expert: it models one
who also picks the next state (Garnet: stochastic dynamics) and the start
state (both MDPs start uniformly at random; only from a single start state
on deterministic dynamics do the two likelihoods coincide), so its policy
keeps a gap to the expert's that more data or iterations do not close.

Peer (with --imitation-python PATH, an interpreter where the `imitation`
library is installed; it is not a dependency of this project): imitation's
MCEIRL (Ziebart 2010, the causal likelihood at τ = 1 with state-only rewards,
in numpy + torch) on a third task built for it, a Garnet MDP with a state-only
reward r(s), fitted by both libraries from the same exact expert state
occupancies with the same state-only tabular parameterisation and Adam step.
The expert policies of the two libraries are compared too (an outside check of
the messages).

Writes benchmarks/results/irl.json, irl.md and irl.png with the command and
the machine.
"""

import argparse
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rlax_inf
from benchmarks import _common
from rlax_inf.envs import demonstrations
from rlax_inf.envs import tabular

RESULTS = _common.RESULTS_DIR


def _policy_counts(log_pi, transitions, initial):
  """Occupancies [T, S, A] of a time-varying policy under the true dynamics."""
  def step(d, lp):
    mu = d[:, None] * jnp.exp(lp)
    return jnp.einsum("sa,sat->t", mu, transitions), mu
  return jax.lax.scan(step, initial, log_pi)[1]


def _metrics(rewards, mdp, horizon, tau, causal, expert_log_pi, expert_counts):
  """Policy KL to the expert and occupancy L1 error, both averaged over t."""
  log_pi = rlax_inf.soft_optimal_log_policy(rewards, mdp.transitions, horizon, tau, None, causal)
  counts = _policy_counts(log_pi, mdp.transitions, mdp.initial)
  d = expert_counts.sum(-1)
  pe = jnp.exp(expert_log_pi)
  kl = jnp.sum(jnp.where(pe > 0, pe * (expert_log_pi - log_pi), 0.0), -1)
  return {"policy_kl": jnp.sum(d * kl) / horizon,
          "count_error": jnp.sum(jnp.abs(counts - expert_counts)) / horizon}


def _fit_curves(name, mdp, horizon, tau, iterations, every, lr, expert_log_pi, expert_counts,
                data, counts, reward_fn, params0, likelihoods=(True, False), decay=True):
  """Adam on maxent_irl_loss from params0, metrics every `every` iterations.

  decay: the step size follows a cosine from lr to 0 over the run (a constant
  one makes the τ = 0.1 Garnet fit bounce between KL 1e-5 and 1e-3 after 400
  iterations); constant where the peer is run, as imitation's Adam is.
  """
  optimizer = optax.adam(optax.cosine_decay_schedule(lr, iterations) if decay else lr)
  rows = []
  for causal in likelihoods:
    chunk = jax.jit(functools.partial(
        rlax_inf.maxent_irl_fit, reward_fn, optimizer=optimizer, num_steps=every,
        transitions=mdp.transitions, initial=mdp.initial, horizon=horizon, demo_counts=counts,
        temperature=tau, causal=causal))
    metrics = jax.jit(lambda p, c=causal: _metrics(
        reward_fn(p), mdp, horizon, tau, c, expert_log_pi, expert_counts))
    params, state = params0, optimizer.init(params0)
    jax.block_until_ready(chunk(params, opt_state=state))  # compile
    curve = [dict(iteration=0, loss=float("nan"),
                  **{k: float(v) for k, v in metrics(params).items()})]
    seconds = 0.0
    for it in range(every, iterations + 1, every):
      t0 = time.perf_counter()
      out = jax.block_until_ready(chunk(params, opt_state=state))
      seconds += time.perf_counter() - t0
      params, state = out.params, out.opt_state
      curve.append(dict(iteration=it, loss=float(out.loss[-1]),
                        **{k: float(v) for k, v in metrics(params).items()}))
    likelihood = "causal" if causal else "maxent"
    rows.append({"mdp": name, "data": data, "likelihood": likelihood,
                 "ms_per_iteration": 1e3 * seconds / iterations, "curve": curve,
                 "final": curve[-1]})
    print(f"{name:11s} {data:12s} {likelihood:6s} KL {curve[-1]['policy_kl']:.2e} "
          f"count error {curve[-1]['count_error']:.2e} "
          f"({rows[-1]['ms_per_iteration']:.2f} ms/iteration)", flush=True)
  return rows


def _task(name, mdp, horizon, tau, iterations, every, episodes, lr, key):
  expert_log_pi = rlax_inf.soft_optimal_log_policy(mdp.rewards, mdp.transitions, horizon, tau)
  expert_counts = _policy_counts(expert_log_pi, mdp.transitions, mdp.initial)
  demos = demonstrations.soft_optimal_demonstrations(key, mdp, episodes, horizon, tau)
  sampled = jnp.asarray(demonstrations.tabular_counts(demos, mdp.num_states, mdp.num_actions,
                                                      horizon))
  rows = []
  for data, counts in (("exact", expert_counts), (f"{episodes} episodes", sampled)):
    rows += _fit_curves(name, mdp, horizon, tau, iterations, every, lr, expert_log_pi,
                        expert_counts, data, counts, lambda r: r, jnp.zeros_like(mdp.rewards))
  return rows


# Runs under the imitation interpreter: numpy, torch, imitation, seals only.
_PEER = r"""
import json, sys, time
import numpy as np
from imitation.algorithms import mce_irl
from imitation.rewards import reward_nets
from seals import base_envs

d = np.load(sys.argv[1])
P, init, r, ours_pi = d["transitions"], d["initial"], d["state_rewards"], d["expert_pi"]
T, iters, every = (int(d[k]) for k in ("horizon", "iterations", "every"))
lr = float(d["lr"])
S, A = P.shape[:2]
env = base_envs.TabularModelPOMDP(transition_matrix=P, observation_matrix=np.eye(S),
                                  reward_matrix=r, horizon=T, initial_state_dist=init)
_, _, pi_e = mce_irl.mce_partition_fh(env)
D_e, om_e = mce_irl.mce_occupancy_measures(env, pi=pi_e)
mu_e = D_e[:T, :, None] * pi_e

def metrics(pi):
  D, _ = mce_irl.mce_occupancy_measures(env, pi=pi)
  kl = np.sum(D_e[:T, :, None] * pi_e * (np.log(pi_e) - np.log(pi))) / T
  return {"policy_kl": float(kl),
          "count_error": float(np.abs(D[:T, :, None] * pi - mu_e).sum() / T)}

net = reward_nets.BasicRewardNet(env.observation_space, env.action_space, hid_sizes=[],
                                 use_action=False, use_next_state=False, use_done=False)
algo = mce_irl.MCEIRL(om_e, env, net, rng=np.random.default_rng(0),
                      optimizer_kwargs={"lr": lr}, linf_eps=0.0, grad_l2_eps=0.0,
                      log_interval=None)
curve = [dict(iteration=0, loss=float("nan"), **metrics(np.full((T, S, A), 1.0 / A)))]
seconds = 0.0
for it in range(every, iters + 1, every):
  t0 = time.perf_counter()
  algo.train(max_iter=every)
  seconds += time.perf_counter() - t0
  curve.append(dict(iteration=it, loss=float("nan"), **metrics(algo.policy.pi)))
import imitation
json.dump({"curve": curve, "ms_per_iteration": 1e3 * seconds / iters,
           "expert_policy_max_abs_diff": float(np.abs(pi_e - ours_pi).max()),
           "version": imitation.__version__}, open(sys.argv[2], "w"))
"""


def _state_reward_task(python, horizon, iterations, every, key):
  """Garnet with a state-only reward at τ = 1: ours against imitation's MCEIRL."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  base = tabular.garnet(key, num_states=20, num_actions=4, branching=3)
  state_rewards = 5.0 * base.rewards[:, 0]
  mdp = base.replace(rewards=jnp.broadcast_to(state_rewards[:, None], base.rewards.shape))
  lr, tau = 0.1, 1.0
  expert_log_pi = rlax_inf.soft_optimal_log_policy(mdp.rewards, mdp.transitions, horizon, tau)
  expert_counts = _policy_counts(expert_log_pi, mdp.transitions, mdp.initial)
  state_table = lambda w: jnp.broadcast_to(w[:, None], mdp.rewards.shape)
  rows = _fit_curves("garnet r(s)", mdp, horizon, tau, iterations, every, lr, expert_log_pi,
                     expert_counts, "exact", expert_counts, state_table,
                     jnp.zeros(mdp.num_states), likelihoods=(True,), decay=False)
  with tempfile.TemporaryDirectory() as tmp:
    data, out = os.path.join(tmp, "task.npz"), os.path.join(tmp, "peer.json")
    np.savez(data, transitions=np.asarray(mdp.transitions, np.float64),
             initial=np.asarray(mdp.initial, np.float64),
             state_rewards=np.asarray(state_rewards, np.float64),
             expert_pi=np.exp(np.asarray(expert_log_pi, np.float64)), horizon=horizon,
             iterations=iterations, every=every, lr=lr)
    res = subprocess.run([python, "-c", _PEER, data, out], capture_output=True, text=True,
                         check=False)
    if res.returncode:
      print(f"imitation peer failed:\n{res.stderr[-3000:]}", flush=True)
      return rows, {"error": res.stderr[-3000:]}
    with open(out) as f:
      peer = json.load(f)
  rows.append({"mdp": "garnet r(s)", "data": "exact", "likelihood": "imitation MCEIRL",
               "ms_per_iteration": peer["ms_per_iteration"], "curve": peer["curve"],
               "final": peer["curve"][-1]})
  print(f"garnet r(s) exact imitation MCEIRL {peer['version']}: KL "
        f"{peer['curve'][-1]['policy_kl']:.2e} count error "
        f"{peer['curve'][-1]['count_error']:.2e} ({peer['ms_per_iteration']:.2f} ms/iteration); "
        f"expert policies differ by {peer['expert_policy_max_abs_diff']:.1e}", flush=True)
  return rows, {"version": peer["version"],
                "expert_policy_max_abs_diff": peer["expert_policy_max_abs_diff"]}


def plot(rows, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = sorted({r["mdp"] for r in rows}, key=[r["mdp"] for r in rows].index)
  fig, axes = plt.subplots(len(names), 2, figsize=(10, 3.6 * len(names)), squeeze=False)
  colors = {"causal": "C0", "maxent": "C3"}
  for i, name in enumerate(names):
    for row in (r for r in rows if r["mdp"] == name):
      it = [c["iteration"] for c in row["curve"]]
      style = "-" if row["data"] == "exact" else "--"
      for j, key in enumerate(("policy_kl", "count_error")):
        axes[i, j].semilogy(it, [max(c[key], 1e-12) for c in row["curve"]], style,
                            color=colors.get(row["likelihood"], "C2"),
                            label=f"{row['likelihood']}, {row['data']}")
    axes[i, 0].set_ylabel(f"{name}\npolicy KL to the expert")
    axes[i, 1].set_ylabel("occupancy L1 error")
    axes[i, 0].legend(fontsize=8)
  for ax in axes[-1]:
    ax.set_xlabel("Adam iterations")
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--quick", action="store_true", help="T = 10, 100 iterations")
  parser.add_argument("--imitation-python", default=None,
                      help="a Python with the imitation library, to run its MCEIRL as the peer")
  args = parser.parse_args()
  horizon, iterations, every = (10, 100, 10) if args.quick else (20, 1000, 25)
  episodes = 100
  info = _common.machine()
  print(f"machine: {info}", flush=True)
  key_g, key_d1, key_d2 = jax.random.split(jax.random.PRNGKey(0), 3)
  tasks = [
      # Rewards 0 / ±1 / 5 / 10: τ = 1 keeps the expert stochastic.
      ("gridworld", tabular.gridworld(), 1.0, 0.1, key_d1),
      # Rewards U[0, 1): a lower temperature for a comparably peaked expert.
      ("garnet", tabular.garnet(key_g, num_states=20, num_actions=4, branching=3), 0.1, 0.1,
       key_d2),
  ]
  rows = []
  settings = {}
  for name, mdp, tau, lr, key in tasks:
    settings[name] = {"S": mdp.num_states, "A": mdp.num_actions, "T": horizon, "tau": tau,
                      "adam_lr": lr, "episodes": episodes}
    rows += _task(name, mdp, horizon, tau, iterations, every, episodes, lr, key)
  peer = None
  if args.imitation_python:
    settings["garnet r(s)"] = {"S": 20, "A": 4, "T": horizon, "tau": 1.0, "adam_lr": 0.1,
                               "episodes": None}
    peer_rows, peer = _state_reward_task(args.imitation_python, horizon, iterations, every,
                                         key_g)
    rows += peer_rows
  payload = {"command": _common.command(), "machine": info, "settings": settings,
             "iterations": iterations, "rows": rows, "imitation": peer}
  plot(rows, os.path.join(RESULTS, "irl.png"))
  md = [f"# irl benchmark (tabular)\n\nCommand: `{payload['command']}`  \n"
        f"Machine: {info['cpu']}, {info['cores']} cores, jax {info['jax']} "
        f"({info['backend']}, {info['device']}).\n",
        "Expert: the soft-optimal (maximum causal entropy) policy of the true reward, "
        "finite horizon, undiscounted. Learner: a tabular reward from zero, Adam with a "
        f"cosine decay from the listed step size, {iterations} iterations (constant step "
        "on 'garnet r(s)', as the peer's). Policy KL = (1/T) Σ_t E_(s~d_E,t) KL(π_E ‖ π̂); count "
        "error = (1/T) Σ_t ‖μ̂_t − μ_E,t‖₁ with μ̂ the learned policy's occupancies under "
        "the true dynamics. Plot: irl.png.\n",
        "| MDP | S × A, T, τ, Adam step | data | likelihood | policy KL | count error | "
        "ms / iteration |",
        "|---|---|---|---|---|---|---|"]
  for r in rows:
    s = settings[r["mdp"]]
    md.append(f"| {r['mdp']} | {s['S']} × {s['A']}, {s['T']}, {s['tau']}, {s['adam_lr']} | "
              f"{r['data']} | "
              f"{r['likelihood']} | {r['final']['policy_kl']:.2e} | "
              f"{r['final']['count_error']:.2e} | {r['ms_per_iteration']:.2f} |")
  if peer is None:
    md += ["", "Peer: the imitation library's MCE-IRL was not run (no --imitation-python)."]
  elif "error" in peer:
    md += ["", f"Peer: imitation's MCEIRL failed: `{peer['error'][-300:]}`"]
  else:
    md += ["", f"Peer: imitation {peer['version']} MCEIRL (numpy + torch, in its own "
           "environment) on 'garnet r(s)': a state-only reward 5·U[0, 1), τ = 1, both "
           "libraries fitting a state-only table with Adam(0.1) to the exact expert "
           "occupancies (imitation's include the state after the last action). The two "
           "libraries' expert policies agree to "
           f"{peer['expert_policy_max_abs_diff']:.1e} (max abs difference). Its environment: "
           "`python3 -m venv /tmp/imit_venv && /tmp/imit_venv/bin/pip install imitation` "
           "(kept apart: installed into this project's venv it would downgrade wrapt 2.5 → "
           "1.17 and fsspec, and pull torch with CUDA 13 libraries; jax, flax and numpy "
           "would stay)."]
  _common.write_results("irl", payload, "\n".join(md) + "\n")


if __name__ == "__main__":
  main()
