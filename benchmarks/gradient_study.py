"""Variance and bias of rollout gradient estimators through differentiable simulators.

For each env, policy, horizon T and dtype: S seeds, each one estimate of
∇_θ E_ε[Σ_{t<T} r_t] (linear policy a = W o + b + σ ε, σ = SIGMA) from N
rollouts by `rlax_inf.alpha_order_gradient`, which returns the zeroth-order
(score function, leave-one-out baseline), first-order (pathwise through the
simulator) and α-mixed estimates of the same samples. Reported per estimator:

* var: the variance over seeds of each parameter's N-sample estimate, averaged
  over the P parameters (per-sample variance ≈ N × var);
* bias: ‖mean over seeds − reference‖ against a large-sample reference, the
  pooled zeroth-order mean of `ref_batches` × S × N further rollouts (unbiased
  for ∇F), with `noise`, the norm that pure noise would give
  (sqrt(Σ_p var_p / S + var_ref,p / S_ref)): a bias is resolved only well above it;
* nonfinite: the fraction of rollouts screened out (non-finite return or
  gradient), never averaged in;
* α-mixed twice: α = σ̂₀²/(σ̂₀²+σ̂₁²) without the bias check (γ = ∞) and with
  Suh et al.'s check at γ = 0.1 ‖reference‖ (`rlax_inf.mix_alpha`).

Envs (Brax 'generalized', whose gradients benchmarks/envs_gradients verified on
inverted_pendulum and hopper; reacher is checked here, see "gradient check"):
inverted_pendulum with reward −angle² and no termination (the pole may fall to
its ±90° hinge limit), reacher (Brax's reward), hopper (Brax's reward,
terminate_when_unhealthy=False). Every rollout starts from the same reset state
(PRNGKey(0), sampled in float32 and cast exactly for float64, so that both
dtypes start from the same numbers). Policies: 'stabilising' (inverted_pendulum:
the discrete LQR gain of the linearisation at the upright state, see _LQR;
reacher: joint damping; hopper: PD on the joint angles) and 'random' (W ~ N(0, 0.5²), b = 0,
numpy seed 0). Gradient check: in float64 at T = 10, the mean first-order
gradient against central differences of the mean return (ε = 1e-6) along 3
random unit directions in parameter space, same samples.

    nice -n 10 python -m benchmarks.gradient_study        # the full study
    python -m benchmarks.gradient_study --quick            # CI size: pure-JAX pendulum

Results: benchmarks/results/gradient_study.{json,md,png}; the md keeps its
hand-written notes and reading (from `_common.READING_MARK` on) when rewritten. Each (env, dtype,
policy, T) is cached in runs/gradient_study/ (git-ignored) as soon as it is
measured, so a killed run resumes; the persistent compilation cache is on.
"""

import argparse
import json
import os
import pickle
import shutil
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _common
import rlax_inf
from rlax_inf import envs

RESULTS = _common.RESULTS_DIR
CACHE = 'runs/gradient_study'
MACHINE = '2-core Intel Xeon @ 2.00GHz VM, CPU only'
SIGMA = 0.1
HORIZONS = (10, 50, 100, 200)
ENV_NAMES = ('inverted_pendulum', 'reacher', 'hopper')
POLICIES = ('stabilising', 'random')
GAMMA_FRACTION = 0.1
#: PRNGKey of the start state (pendulum: one near upright, θ = 0.13).
START_KEYS = {'pendulum': 13}

# The anchor of issue 14 (inverted_pendulum, generalized, linear policy, 32 seeds).
ANCHOR = {
    'stabilising': {'first': {10: 5e-4, 50: 0.016, 100: 0.099, 200: 4.4},
                    'zeroth': {10: 1.8e-3, 50: 0.22, 100: 2.4, 200: 38.6}},
    'random': 'pathwise variance reaches 1e11 at T = 50 and is non-finite from T = 100',
}


class _NoTermination(envs.BraxEnv):
  """A Brax env whose episodes never terminate (only the time limit ends them)."""

  def core_step(self, inner, action, key):
    inner, obs, reward, _ = super().core_step(inner, action, key)
    return inner, obs, reward, jnp.zeros_like(reward)


def make_env(name):
  """(env, reward_fn) in the current default dtype (call under enable_x64)."""
  if name == 'pendulum':  # --quick: pure JAX, verified by envs_gradients.
    env = envs.make('pendulum', episode_length=1000, fresh_resets=False)
    return env, lambda s, a: -(s.final_obs[1]**2 + 0.1 * s.final_obs[2]**2)
  if name == 'inverted_pendulum':
    env = _NoTermination('inverted_pendulum', 'generalized', 1000, 1)
    env.fresh_resets = False
    return env, lambda s, a: -s.final_obs[1]**2
  kwargs = dict(terminate_when_unhealthy=False) if name == 'hopper' else {}
  env = envs.make(name, backend='generalized', episode_length=1000,
                  fresh_resets=False, **kwargs)
  # Brax's own reward, in the physics dtype (State.reward is float32).
  return env, lambda s, a: s.inner.reward


def policy(params, obs):
  w, b = params
  return w @ obs + b


def policy_params(name, obs_size, act_size):
  """{'stabilising': (W, b), 'random': (W, b)} as float64 numpy."""
  w = np.zeros((act_size, obs_size))
  if name == 'inverted_pendulum':
    w[0] = _LQR
  elif name == 'reacher':  # obs[6:8] = joint velocities: damping.
    w[:, 6:8] = -0.1 * np.eye(2)
  elif name == 'hopper':  # obs[2:5] joint angles, obs[8:11] their velocities.
    w[:, 2:5] = -1.0 * np.eye(3)
    w[:, 8:11] = -0.1 * np.eye(3)
  elif name == 'pendulum':  # obs = [cos θ, sin θ, θ̇], θ = 0 upright.
    w[0] = [0.0, -2.0, -0.5]
  rand = np.random.default_rng(0).normal(0.0, 0.5, (act_size, obs_size))
  zero = np.zeros(act_size)
  return {'stabilising': (w, zero), 'random': (rand, zero)}


# Discrete LQR gain (Q = diag(1, 10, 0.1, 0.1), R = 1) of Brax inverted_pendulum
# (generalized, float64) linearised at the upright state x = 0, u = 0 by forward
# mode; closed-loop spectral radius 0.947. Printed by
# `python -m benchmarks.gradient_study --derive-lqr` (9 min on the loaded VM).
_LQR = [0.5505210335649929, 3.9150099741403865, 0.640375769164569, 0.569461477669576]


def _derive_lqr():
  import scipy.linalg  # pylint: disable=g-import-not-at-top
  with jax.enable_x64(True):
    env, _ = make_env('inverted_pendulum')
    s0 = env.reset(jax.random.PRNGKey(0))
    brax_env = env.brax_env

    def f(x, u):
      ps = brax_env.pipeline_init(x[:2], x[2:])
      return brax_env.step(s0.inner.replace(pipeline_state=ps, obs=x), u).obs

    x0, u0 = jnp.zeros(4), jnp.zeros(1)
    a = np.asarray(jax.jit(jax.jacfwd(f, 0))(x0, u0))
    b = np.asarray(jax.jit(jax.jacfwd(f, 1))(x0, u0))
  q, r = np.diag([1.0, 10.0, 0.1, 0.1]), np.eye(1)
  p = scipy.linalg.solve_discrete_are(a, b, q, r)
  k = -np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
  print('K =', k[0].tolist(), 'closed-loop spectral radius',
        float(np.max(np.abs(np.linalg.eigvals(a + b @ k)))))


def _cache_path(env_name, dtype, pol, horizon, seeds, samples, seed_start=0):
  """Seeds 0..S-1 of a cell; with seed_start = K, only seeds K..S-1 of it."""
  tag = f'S{seeds}' if seed_start == 0 else f'seeds{seed_start}-{seeds}'
  return os.path.join(CACHE, f'{env_name}_{dtype}_{pol}_T{horizon}_{tag}_N{samples}.npz')


def _cell_parts(env_name, dtype, pol, horizon, seeds, samples):
  """Cache files that together hold seeds 0..S-1 of a cell, or None.

  Either the S-seed file, or a K-seed file and the file of seeds K..S-1 measured
  later with --seed-start K (seed i's keys do not depend on S: jax.random.split
  is prefix-consistent, so the two parts are exactly the S-seed measurement).
  """
  whole = _cache_path(env_name, dtype, pol, horizon, seeds, samples)
  if os.path.exists(whole):
    return [whole]
  for k in range(seeds - 1, 1, -1):
    head = _cache_path(env_name, dtype, pol, horizon, k, samples)
    tail = _cache_path(env_name, dtype, pol, horizon, seeds, samples, seed_start=k)
    if os.path.exists(head) and os.path.exists(tail):
      return [head, tail]
  return None


def _load_cell(paths):
  parts = [dict(np.load(p)) for p in paths]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def measure_env(env_name, x64, horizons, seeds, samples, ref_batches, log,
                seed_batch=8, cached_only=False, policies=POLICIES, seed_start=0):
  """Measures every (policy, T) of one env in one dtype; cached per (policy, T).

  seed_start = K > 0 measures only seeds K..S-1 (to extend a K-seed measurement).
  """
  dtype = 'float64' if x64 else 'float32'
  todo = [(pol, t) for pol in policies for t in horizons
          if _cell_parts(env_name, dtype, pol, t, seeds, samples) is None
          and not os.path.exists(_cache_path(env_name, dtype, pol, t, seeds, samples,
                                             seed_start))]
  check_path = os.path.join(CACHE, f'{env_name}_check_S{seeds}_N{samples}.json')
  need_check = x64 and seed_start == 0 and not os.path.exists(check_path)
  n_run = seeds - seed_start
  if cached_only:
    todo, need_check = [], False
  if todo or need_check:
    with jax.enable_x64(x64):
      t0 = time.time()
      env, reward_fn = make_env(env_name)
      state = _start_state(env_name, env, x64)
      fdtype = state.obs.dtype
      h_max = max(horizons)

      def one_seed(params, key, num_steps):
        return rlax_inf.alpha_order_gradient(
            env, policy, params, state, key, SIGMA, h_max, samples,
            bias_threshold=jnp.inf, num_steps=num_steps, reward_fn=reward_fn)

      # Seeds in batches of `seed_batch` (lax.map): the backward pass keeps every
      # step's residuals of every rollout in memory; 8 × N at a time fits hopper.
      estimate = jax.jit(lambda p, keys, n: jax.lax.map(
          lambda k: one_seed(p, k, n), keys, batch_size=min(seed_batch, n_run)))
      pols = policy_params(env_name, env.observation_size, env.action_size)
      first_call = True
      for pol, t in todo:
        params = jax.tree.map(lambda x: jnp.asarray(x, fdtype), pols[pol])
        out = {}
        base = 1000 * (1 + POLICIES.index(pol)) + t
        for batch in range(1 + ref_batches):
          keys = jax.random.split(jax.random.PRNGKey(base * 100 + batch), seeds)[seed_start:]
          t1 = time.time()
          res = jax.device_get(estimate(params, keys, jnp.int32(t)))
          if first_call:
            log(f'  {env_name} {dtype}: compiled and ran in {time.time() - t0:.0f} s')
            first_call = False
          flat = lambda g: np.concatenate(
              [np.reshape(x, (n_run, -1)) for x in jax.tree.leaves(g)], axis=1)
          tag = 'main' if batch == 0 else f'ref{batch}'
          out[f'{tag}_g0'] = flat(res.zeroth.grad)
          out[f'{tag}_g1'] = flat(res.first.grad)
          out[f'{tag}_v0'] = np.asarray(res.zeroth.variance)
          out[f'{tag}_v1'] = np.asarray(res.first.variance)
          out[f'{tag}_nf0'] = np.asarray(res.zeroth.num_nonfinite)
          out[f'{tag}_nf1'] = np.asarray(res.first.num_nonfinite)
          out[f'{tag}_value'] = np.asarray(res.value)
          log(f'  {env_name} {dtype} {pol} T={t} batch {batch}: {time.time() - t1:.1f} s')
        os.makedirs(CACHE, exist_ok=True)
        np.savez(_cache_path(env_name, dtype, pol, t, seeds, samples, seed_start), **out)
      if need_check:
        check = _gradient_check(estimate, pols, fdtype, seeds)
        with open(check_path, 'w') as f:
          json.dump(check, f)
        log(f'  {env_name} gradient check: {check}')
  rows = []
  for pol in POLICIES:
    for t in horizons:
      paths = _cell_parts(env_name, dtype, pol, t, seeds, samples)
      if paths is None:  # --cached-only: not measured (yet).
        log(f'  not measured: {env_name} {dtype} {pol} T={t}')
        continue
      data = _load_cell(paths)
      rows.append(dict(env=env_name, dtype=dtype, policy=pol, horizon=t,
                       **_statistics(data, seeds, samples, ref_batches)))
  check = None
  if os.path.exists(check_path):
    with open(check_path) as f:
      check = json.load(f)
  return rows, check


def _start_state(env_name, env, x64):
  """The start state sampled in float32 (cast exactly in float64): both dtypes
  start from the same numbers (a float64 reset draws different ones)."""
  path = os.path.join(CACHE, f'{env_name}_start.pkl')
  if os.path.exists(path):
    with open(path, 'rb') as f:
      s32 = pickle.load(f)
  else:
    key = jax.random.PRNGKey(START_KEYS.get(env_name, 0))
    if x64:
      with jax.enable_x64(False):
        s32 = jax.jit(make_env(env_name)[0].reset)(key)
    else:
      s32 = jax.jit(env.reset)(key)
    s32 = jax.tree.map(np.asarray, s32)
    os.makedirs(CACHE, exist_ok=True)
    with open(path, 'wb') as f:
      pickle.dump(s32, f)
  template = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
  return jax.tree.map(lambda t, v: jnp.asarray(v, t.dtype), template, s32)


def _gradient_check(estimate, pols, fdtype, seeds, horizon=10, eps=1e-6):
  """float64: mean first-order gradient vs central differences of the mean return."""
  params = jax.tree.map(lambda x: jnp.asarray(x, fdtype), pols['stabilising'])
  keys = jax.random.split(jax.random.PRNGKey(7), seeds)
  flat0, unravel = jax.flatten_util.ravel_pytree(params)
  value = lambda v: float(np.mean(estimate(unravel(v), keys, jnp.int32(horizon)).value))
  res = estimate(params, keys, jnp.int32(horizon))
  grad = np.mean(np.concatenate([np.reshape(x, (seeds, -1)) for x in
                                 jax.tree.leaves(res.first.grad)], axis=1), axis=0)
  rng = np.random.default_rng(3)
  errs = []
  for _ in range(3):
    d = rng.normal(size=flat0.shape)
    d /= np.linalg.norm(d)
    fd = (value(flat0 + eps * d) - value(flat0 - eps * d)) / (2 * eps)
    errs.append(abs(float(grad @ d) - fd) / max(abs(fd), 1e-300))
  return {'horizon': horizon, 'eps': eps, 'directional_rel_err': errs}


def _statistics(data, seeds, samples, ref_batches):
  """Variance, bias and non-finite fraction of each estimator from one cache file."""
  # float64: float32 estimates near overflow (1e30) still have a finite variance.
  data = {k: v.astype(np.float64) if v.dtype.kind == 'f' else v for k, v in data.items()}
  ref_g0 = np.concatenate([data[f'ref{b}_g0'] for b in range(1, ref_batches + 1)])
  ref_g1 = np.concatenate([data[f'ref{b}_g1'] for b in range(1, ref_batches + 1)])
  ref_v0 = np.concatenate([data[f'ref{b}_v0'] for b in range(1, ref_batches + 1)])
  ref_nf0 = np.concatenate([data[f'ref{b}_nf0'] for b in range(1, ref_batches + 1)])
  ref_nf1 = np.concatenate([data[f'ref{b}_nf1'] for b in range(1, ref_batches + 1)])
  ref_g0, ref_g1 = ref_g0[ref_nf0 < samples], ref_g1[ref_nf1 < samples]
  if len(ref_g0) < 2 or len(ref_g1) < 2:
    ref_g0 = ref_g1 = np.full((2, data['main_g0'].shape[1]), np.nan)
  s_ref = ref_g0.shape[0]
  ref = ref_g0.mean(axis=0)
  ref_var = ref_g0.var(axis=0, ddof=1)
  ref_norm = float(np.linalg.norm(ref))
  num_params = ref.shape[0]
  g0, g1 = data['main_g0'], data['main_g1']
  v0, v1 = data['main_v0'], data['main_v1']
  m = samples - data['main_nf0']
  # No finite reference: nothing can be certified, γ = 0 (zeroth order).
  gamma = GAMMA_FRACTION * ref_norm if np.isfinite(ref_norm) else 0.0
  ests = {'zeroth': g0, 'first': g1}
  alphas = {}
  for tag, g in (('alpha', np.inf), ('alpha_checked', gamma)):
    with jax.enable_x64(True):
      part = lambda gr, v, nf: rlax_inf.RolloutGradient(gr, jnp.zeros(()), v, nf)
      a, _, _ = jax.vmap(lambda g0_, v0_, nf0_, g1_, v1_, nf1_, m_: rlax_inf.mix_alpha(
          part(g0_, v0_, nf0_), part(g1_, v1_, nf1_), m_, g))(
              g0, v0, data['main_nf0'], g1, v1, data['main_nf1'], m)
      a = np.asarray(a)
    alphas[tag] = a
    ests[tag] = np.where((a > 0)[:, None], a[:, None] * g1 + (1 - a[:, None]) * g0, g0)
  out = {'num_params': num_params, 'reference_norm': ref_norm, 'gamma': gamma,
         'reference_samples': int(len(ref_nf0) * samples - ref_nf0.sum()),
         'reference_first_minus_zeroth': float(np.linalg.norm(ref_g1.mean(0) - ref)),
         'reference_first_minus_zeroth_noise': float(np.sqrt(np.sum(
             ref_var / s_ref + ref_g1.var(axis=0, ddof=1) / len(ref_g1)))),
         'mean_return': float(np.mean(data['main_value'])),
         'per_sample_var0': float(np.mean(v0) / num_params),
         'per_sample_var1': float(np.mean(v1) / num_params),
         'alpha_mean': float(np.mean(alphas['alpha'])),
         'alpha_checked_mean': float(np.mean(alphas['alpha_checked']))}
  for name, g in ests.items():
    # A seed whose N rollouts were all screened has no estimate (zeros stand in).
    screened = data['main_nf1' if name == 'first' else 'main_nf0'] >= samples
    finite = np.all(np.isfinite(g), axis=1) & ~screened
    var = g[finite].var(axis=0, ddof=1) if finite.sum() > 1 else np.full(num_params, np.nan)
    bias = np.linalg.norm(g[finite].mean(axis=0) - ref) if finite.any() else np.nan
    noise = np.sqrt(np.sum(var / max(finite.sum(), 1) + ref_var / s_ref))
    out[name] = {'var': float(np.mean(var)), 'var_max': float(np.max(var)),
                 'bias': float(bias), 'bias_noise': float(noise),
                 'bias_rel': float(bias / ref_norm) if ref_norm > 0 else float('nan')}
  n_total = seeds * samples
  out['zeroth']['nonfinite'] = float(data['main_nf0'].sum() / n_total)
  out['first']['nonfinite'] = float(data['main_nf1'].sum() / n_total)
  out['alpha']['nonfinite'] = out['zeroth']['nonfinite']
  out['alpha_checked']['nonfinite'] = out['zeroth']['nonfinite']
  return out


ESTIMATORS = ('zeroth', 'first', 'alpha', 'alpha_checked')
LABELS = {'zeroth': 'score function', 'first': 'pathwise', 'alpha': 'α-mixed (γ=∞)',
          'alpha_checked': 'α-mixed (γ=0.1‖ref‖)'}


Y_CAP = 1e22


def _plot(rows, env_names, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(env_names), figsize=(5 * len(env_names), 4), squeeze=False)
  colors = {'zeroth': 'C0', 'first': 'C1', 'alpha': 'C2', 'alpha_checked': 'C3'}
  for ax, env_name in zip(axes[0], env_names):
    capped = []
    for pol, marker in (('stabilising', 'o'), ('random', 'x')):
      for dtype, ls in (('float32', '-'), ('float64', '--')):
        sel = sorted((r for r in rows if r['env'] == env_name and r['policy'] == pol
                      and r['dtype'] == dtype), key=lambda r: r['horizon'])
        if not sel:
          continue
        for est in ('zeroth', 'first', 'alpha'):
          ys = [r[est]['var'] for r in sel]
          ys = [y if np.isfinite(y) and y > 0 else np.nan for y in ys]
          label = f'{LABELS[est]}, {pol}' if dtype == 'float32' else None
          xs = [r['horizon'] for r in sel]
          # Beyond Y_CAP (a diverged policy): drawn at the cap as ▲ (value in the table),
          # so that the other curves keep a readable scale.
          ax.plot(xs, [min(y, Y_CAP) for y in ys], ls, marker=marker, color=colors[est],
                  label=label, alpha=0.8 if pol == 'stabilising' else 0.5)
          for x, y in zip(xs, ys):
            if y > Y_CAP:
              ax.plot([x], [Y_CAP], '^', color=colors[est], ms=9)
              capped.append(y)
    if capped:
      ax.annotate(f'▲ off scale: up to {max(capped):.0e} (table)', (0.03, 0.9),
                  xycoords='axes fraction', fontsize=8)
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('horizon T')
    ax.set_title(f'{env_name} (float32 solid, float64 dashed)')
    ax.set_ylabel('per-parameter variance over seeds')
  axes[0][0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def _fmt(x):
  if x is None or (isinstance(x, float) and not np.isfinite(x)):
    return 'nan' if isinstance(x, float) and np.isnan(x) else '—' if x is None else 'inf'
  return f'{x:.2g}'


def _markdown(rows, checks, args, cmd, elapsed):
  md = ['# Rollout gradient estimators: variance and bias against the horizon', '',
        f'Command: `{cmd}`  ', f'Machine: {MACHINE} (shared with other sessions; ' +
        ('this command only reads the measurements cached in runs/gradient_study: the '
         'commands that measured them are under Notes).  ' if args.cached_only else
         f'wall time {elapsed / 60:.0f} min).  '),
        f'jax {jax.__version__}; S = {args.seeds} seeds (hopper: {args.hopper_seeds}), '
        f'N = {args.samples} rollouts per estimate, σ = {SIGMA}, reference: '
        f'{args.ref_batches} × S × N further rollouts.', '',
        __doc__.split('\n\n')[1], '']
  md += ['| env | policy | dtype | T | return | var score fn | var pathwise | '
         'var α (γ=∞) | var α (checked) | mean α / checked | bias score fn | '
         'bias pathwise | bias noise (pathwise) | ref ‖ḡ¹−ḡ⁰‖ / noise | '
         'nonfinite score fn | nonfinite pathwise |',
         '|' + '---|' * 16]
  for r in rows:
    md.append(
        f"| {r['env']} | {r['policy']} | {r['dtype']} | {r['horizon']} | "
        f"{_fmt(r['mean_return'])} | {_fmt(r['zeroth']['var'])} | {_fmt(r['first']['var'])} | "
        f"{_fmt(r['alpha']['var'])} | {_fmt(r['alpha_checked']['var'])} | "
        f"{r['alpha_mean']:.2f} / {r['alpha_checked_mean']:.2f} | "
        f"{_fmt(r['zeroth']['bias'])} | {_fmt(r['first']['bias'])} | "
        f"{_fmt(r['first']['bias_noise'])} | "
        f"{_fmt(r['reference_first_minus_zeroth'])} / "
        f"{_fmt(r['reference_first_minus_zeroth_noise'])} | "
        f"{r['zeroth']['nonfinite']:.3f} | {r['first']['nonfinite']:.3f} |")
  ip = [r for r in rows if r['env'] == 'inverted_pendulum']
  if ip:
    md += ['', '## The anchor of issue 14, side by side (inverted_pendulum)', '',
           'Anchor: "stabilising policy, pathwise variance 5e-4 / 0.016 / 0.099 / 4.4 vs '
           'score function 1.8e-3 / 0.22 / 2.4 / 38.6 at T = 10 / 50 / 100 / 200; a random '
           'policy\'s pathwise variance reaches 1e11 at T = 50 and is non-finite from '
           'T = 100" (its reward, noise scale, gains and samples per estimate are not '
           'stated). Ours: per-parameter variance over seeds of the N-sample estimate '
           '(var) and the per-sample variance (≈ N × var), mean over parameters.', '',
           '| policy | dtype | T | pathwise var | pathwise per-sample | anchor pathwise | '
           'score fn var | score fn per-sample | anchor score fn | ratio score/pathwise '
           '(ours, anchor) | nonfinite pathwise |', '|' + '---|' * 11]
    for r in ip:
      anchor = ANCHOR['stabilising'] if r['policy'] == 'stabilising' else None
      a1 = anchor['first'].get(r['horizon']) if anchor else None
      a0 = anchor['zeroth'].get(r['horizon']) if anchor else None
      ours = r['zeroth']['var'] / r['first']['var'] if r['first']['var'] > 0 else float('nan')
      md.append(
          f"| {r['policy']} | {r['dtype']} | {r['horizon']} | {_fmt(r['first']['var'])} | "
          f"{_fmt(r['per_sample_var1'])} | {_fmt(a1)} | {_fmt(r['zeroth']['var'])} | "
          f"{_fmt(r['per_sample_var0'])} | {_fmt(a0)} | {_fmt(ours)}, "
          f"{_fmt(a0 / a1) if a1 else '—'} | {r['first']['nonfinite']:.3f} |")
  md += ['', '## Gradient check (float64, T = 10, stabilising policy)', '',
         '| env | directional relative errors (3 directions, ε = 1e-6) |', '|---|---|']
  for name, c in checks.items():
    if c:
      md.append(f"| {name} | {', '.join(f'{e:.1e}' for e in c['directional_rel_err'])} |")
  return md


def main(argv=None):
  global CACHE  # pylint: disable=global-statement
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true',
                      help='CI size: pure-JAX pendulum, T in {5, 10}, 4 seeds; writes nothing')
  parser.add_argument('--envs', nargs='+', default=list(ENV_NAMES))
  parser.add_argument('--horizons', nargs='+', type=int, default=list(HORIZONS))
  parser.add_argument('--dtypes', nargs='+', default=['float32', 'float64'],
                      choices=['float32', 'float64'])
  parser.add_argument('--seeds', type=int, default=32)
  parser.add_argument('--hopper-seeds', type=int, default=32)
  parser.add_argument('--samples', type=int, default=8)
  parser.add_argument('--ref-batches', type=int, default=2)
  parser.add_argument('--seed-batch', type=int, default=8,
                      help='seeds vmapped at once (memory vs speed)')
  parser.add_argument('--policies', nargs='+', default=list(POLICIES), choices=POLICIES,
                      help='which policies to measure, in this order')
  parser.add_argument('--seed-start', type=int, default=0,
                      help='measure only seeds K..S-1 (extends a K-seed cache to S seeds)')
  parser.add_argument('--cached-only', action='store_true',
                      help='report what runs/gradient_study holds; measure nothing')
  parser.add_argument('--derive-lqr', action='store_true')
  parser.add_argument('--no-write', action='store_true')
  args = parser.parse_args(argv)
  if args.derive_lqr:
    _derive_lqr()
    return 0
  for name, v in (('--seeds', args.seeds), ('--hopper-seeds', args.hopper_seeds),
                  ('--samples', args.samples), ('--ref-batches', args.ref_batches)):
    if v < 2 and name != '--ref-batches' or v < 1:
      print(f'gradient_study: error: {name} must be >= 2 (>= 1 for --ref-batches); '
            f'got {v}', file=sys.stderr)
      return 2
  if args.seed_start < 0 or args.seed_start >= min(args.seeds, args.hopper_seeds):
    print(f'gradient_study: error: --seed-start must be in [0, seeds); got {args.seed_start}',
          file=sys.stderr)
    return 2
  if any(t < 1 for t in args.horizons):
    print(f'gradient_study: error: --horizons must be >= 1; got {args.horizons}',
          file=sys.stderr)
    return 2
  if args.quick:
    CACHE = tempfile.mkdtemp(prefix='gradient_study_quick_')
    args.envs, args.horizons, args.seeds, args.samples = ['pendulum'], [5, 10], 4, 4
    args.ref_batches, args.no_write = 1, True
  else:
    from rlax_inf.agents import compile_cache  # pylint: disable=g-import-not-at-top
    compile_cache.configure()
  log = lambda s: print(s, flush=True)
  t0 = time.time()
  rows, checks = [], {}
  for name in args.envs:
    seeds = args.hopper_seeds if name == 'hopper' else args.seeds
    for dtype in args.dtypes:
      r, c = measure_env(name, dtype == 'float64', tuple(args.horizons), seeds,
                         args.samples, args.ref_batches, log, args.seed_batch,
                         args.cached_only, tuple(args.policies), args.seed_start)
      rows += r
      checks[name] = c or checks.get(name)
  elapsed = time.time() - t0
  if args.quick:
    shutil.rmtree(CACHE, ignore_errors=True)
    CACHE = 'runs/gradient_study'
  cmd = _common.command()
  md = _markdown(rows, checks, args, cmd, elapsed)
  print('\n'.join(md))
  if not args.no_write:
    payload = {'command': cmd, 'machine': MACHINE, 'machine_detail': _common.machine(),
               'sigma': SIGMA, 'seeds': args.seeds, 'hopper_seeds': args.hopper_seeds,
               'samples': args.samples, 'ref_batches': args.ref_batches,
               'anchor': ANCHOR, 'rows': rows, 'gradient_checks': checks,
               'wall_seconds': elapsed}
    _common.write_results('gradient_study', payload, '\n'.join(md) + '\n', keep_reading=True)
    _plot(rows, args.envs, os.path.join(RESULTS, 'gradient_study.png'))
  return 0


if __name__ == '__main__':
  sys.exit(main())
