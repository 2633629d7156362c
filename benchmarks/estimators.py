"""Bias and variance of the policy-gradient estimators against exact gradients.

Two fixed problems, each with its exact gradients in closed form:

  * continuous bandit: π = N(μ, σ²), Q(a) = −(a − c)², τ = 0.5;
      RKL  L = E_π[τ log π − Q] = −τ log σ + (μ − c)² + σ² + const,
      FKL  KL(p* ‖ π), p* = N(c, τ/2): ∇_μ = (μ − c)/σ², ∇_{log σ} = 1 − (τ/2 + (c − μ)²)/σ²;
  * categorical: A = 8 actions, fixed logits and Q, τ = 1, uniform prior;
      RKL exact gradient of `categorical_reverse_kl_loss`, FKL of `categorical_forward_kl_loss`
      (the pathwise estimator does not exist for a categorical policy).

Estimators, N samples per state: RKL (reparam) = `reverse_kl_loss` on a = μ + σ ε;
RKL (score) = `reverse_kl_score_loss` (leave-one-out baseline); FKL =
`forward_kl_loss` (self-normalised, proposal π). Each against its own exact
gradient over S seeds: bias = ‖E ĝ − g‖₂ (Monte Carlo mean), variance = Σ_i Var ĝ_i,
both per state; the standard error of the bias is reported alongside.

Run from the repository root:  .venv/bin/python -m benchmarks.estimators
"""

import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import rlax_inf
from rlax_inf import estimators
from rlax_inf import policy_losses

NUM_SEEDS = 4000
SAMPLE_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
RESULTS = os.path.join(os.path.dirname(__file__), "results")
COMMAND = ".venv/bin/python -m benchmarks.estimators"

# Continuous bandit.
MU, LOG_SIGMA, CENTRE, TAU_C = 0.3, -0.2, 1.1, 0.5
# Categorical problem.
LOGITS = jnp.array([0.5, -0.3, 1.2, 0.0, -1.0, 0.8, 0.1, -0.6])
Q_CAT = jnp.array([1.0, 2.0, -0.5, 0.4, 1.5, -1.0, 0.0, 2.2])
TAU_D = 1.0


def _normal_log_prob(a, mu, log_sigma):
  return (-0.5 * jnp.square((a - mu) / jnp.exp(log_sigma)) - log_sigma
          - 0.5 * jnp.log(2 * jnp.pi))


def _bandit_q(a):
  return -jnp.square(a - CENTRE)


def continuous_exact():
  sigma2 = np.exp(2 * LOG_SIGMA)
  rkl = np.array([2 * (MU - CENTRE), -TAU_C + 2 * sigma2])
  fkl = np.array([(MU - CENTRE) / sigma2, 1 - (TAU_C / 2 + (CENTRE - MU) ** 2) / sigma2])
  return {"rkl_reparam": rkl, "rkl_score": rkl, "fkl": fkl}


def continuous_grad_fn(name, n):
  def grad_fn(p, key):
    eps = jax.random.normal(key, (n,))
    if name == "rkl_reparam":
      def loss(p):
        a = p[0] + jnp.exp(p[1]) * eps
        return policy_losses.reverse_kl_loss(_normal_log_prob(a, p[0], p[1]), _bandit_q(a), TAU_C)
      return jax.grad(loss)(p)
    a = jax.lax.stop_gradient(p[0] + jnp.exp(p[1]) * eps)
    loss_fn = {"rkl_score": policy_losses.reverse_kl_score_loss,
               "fkl": policy_losses.forward_kl_loss}[name]
    return jax.grad(lambda p: loss_fn(_normal_log_prob(a, p[0], p[1]), _bandit_q(a), TAU_C))(p)
  return grad_fn


def categorical_exact():
  def grad(loss):
    return np.asarray(jax.grad(lambda th: loss(jax.nn.log_softmax(th), Q_CAT, TAU_D))(LOGITS))
  return {"rkl_score": grad(policy_losses.categorical_reverse_kl_loss),
          "fkl": grad(policy_losses.categorical_forward_kl_loss)}


def categorical_grad_fn(name, n):
  loss_fn = {"rkl_score": policy_losses.reverse_kl_score_loss,
             "fkl": policy_losses.forward_kl_loss}[name]
  def grad_fn(th, key):
    actions = jax.random.categorical(key, th, shape=(n,))
    return jax.grad(lambda t: loss_fn(jax.nn.log_softmax(t)[actions], Q_CAT[actions], TAU_D))(th)
  return grad_fn


def measure(problem, params, exact, make_grad_fn):
  rows = []
  keys = jax.random.split(jax.random.PRNGKey(0), NUM_SEEDS)
  for name, g in exact.items():
    for n in SAMPLE_SIZES:
      stats = jax.jit(lambda p, k: estimators.gradient_variance(make_grad_fn(name, n), p, k))
      mean, var = stats(params, keys)
      mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
      rows.append({
          "problem": problem, "estimator": name, "N": n,
          "bias": float(np.linalg.norm(mean - g)),
          "bias_se": float(np.sqrt(np.sum(var) / NUM_SEEDS)),
          "variance": float(np.sum(var)),
          "relative_bias": float(np.linalg.norm(mean - g) / np.linalg.norm(g)),
      })
  return rows


def write_markdown(rows, path, machine, seconds):
  lines = [
      "# Gradient estimators: bias and variance against exact gradients",
      "",
      f"Command (from the repository root): `{COMMAND}`",
      "",
      f"Machine: {machine}. Wall time: {seconds:.0f} s. Seeds per cell: {NUM_SEEDS}.",
      "",
      "bias = ‖mean over seeds − exact gradient‖₂ (± its standard error, which is the",
      "noise floor: a bias below ~2 SE is indistinguishable from 0); variance = Σ_i Var ĝ_i",
      "of one estimate with N samples. Each estimator is compared with the exact",
      "gradient of its own objective (RKL: KL(π ‖ p*), FKL: KL(p* ‖ π)).",
      "See the docstring of benchmarks/estimators.py for the problems.",
      "",
  ]
  for problem in ("continuous", "categorical"):
    names = sorted({r["estimator"] for r in rows if r["problem"] == problem})
    lines += [f"## {problem}", "",
              "| N | " + " | ".join(f"{n} bias ± SE | {n} variance" for n in names) + " |",
              "|---:|" + "---:|---:|" * len(names)]
    for n in SAMPLE_SIZES:
      cells = []
      for name in names:
        r = next(r for r in rows if (r["problem"], r["estimator"], r["N"]) == (problem, name, n))
        cells += [f"{r['bias']:.4f} ± {r['bias_se']:.4f}", f"{r['variance']:.4g}"]
      lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
  lines += [
      "Reading: RKL estimators are unbiased at every N (bias within ~2 SE); their",
      "variance falls as 1/N, the reparameterised one far below the score function.",
      "The self-normalised FKL estimator is biased (at N = 1 its expectation is 0,",
      "so the bias equals the whole gradient); the bias falls roughly as 1/N.",
      "",
  ]
  with open(path, "w") as f:
    f.write("\n".join(lines))


def plot(rows, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
  for col, problem in enumerate(("continuous", "categorical")):
    for name in sorted({r["estimator"] for r in rows if r["problem"] == problem}):
      sel = [r for r in rows if r["problem"] == problem and r["estimator"] == name]
      ns = [r["N"] for r in sel]
      axes[0, col].errorbar(ns, [r["bias"] for r in sel], yerr=[2 * r["bias_se"] for r in sel],
                            marker="o", label=name, capsize=2)
      axes[1, col].plot(ns, [r["variance"] for r in sel], marker="o", label=name)
    axes[0, col].set_title(f"{problem}: bias ‖E ĝ − g‖ (±2 SE)")
    axes[1, col].set_title(f"{problem}: total variance Σ Var ĝ")
    for row in range(2):
      axes[row, col].set_xscale("log", base=2)
      axes[row, col].set_yscale("log")
      axes[row, col].legend()
    axes[1, col].set_xlabel("N (samples per state)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def main():
  start = time.time()
  rows = measure("continuous", jnp.array([MU, LOG_SIGMA]), continuous_exact(), continuous_grad_fn)
  rows += measure("categorical", LOGITS, categorical_exact(), categorical_grad_fn)
  seconds = time.time() - start
  machine = (f"{platform.platform()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on "
             f"{jax.devices()[0].platform}, Python {sys.version.split()[0]}")
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, "estimators.json"), "w") as f:
    json.dump({"command": COMMAND, "machine": machine, "seconds": seconds,
               "num_seeds": NUM_SEEDS, "rlax_inf": rlax_inf.__version__, "rows": rows}, f, indent=1)
  write_markdown(rows, os.path.join(RESULTS, "estimators.md"), machine, seconds)
  plot(rows, os.path.join(RESULTS, "estimators.png"))
  for r in rows:
    print(f"{r['problem']:12s} {r['estimator']:12s} N={r['N']:4d} bias={r['bias']:.4f}"
          f" ±{r['bias_se']:.4f} var={r['variance']:.4g}")


if __name__ == "__main__":
  main()
