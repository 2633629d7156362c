"""Do action gradients through `env.step` agree with finite differences?

For each case: J(a_1..a_H) = w · final_obs_H, the fixed random projection
(w ~ N(0, I), numpy seed 7) of the observation after H agent steps from one reset
state (fresh_resets=False; actions uniform in ±0.1; the table notes it if an
episode ends within H). Its gradient w.r.t.
all H × action_size action components, by reverse mode ('rev', `jax.grad`) or
forward mode ('fwd', `jax.jacfwd`), is compared with central finite
differences (J(a + ε e_i) − J(a − ε e_i)) / 2ε:

* rel_same: ‖g − fd‖ / ‖fd‖ against differences in the SAME dtype, smallest
  over ε ∈ {1e-2, 1e-3, 1e-4} (float32) or {1e-4, 1e-5, 1e-6} (float64);
* rel_ref: against the float64 central difference with ε = 1e-6 of the same
  case (the reference derivative). Both dtypes start from the same state and
  actions (sampled in float32, cast exactly).

float64 runs use `jax.enable_x64(True)` around building and running the env.
Slow on CPU (minutes per physics case, mostly compilation); the tests in
tests/envs/test_gradients.py keep cheaper checks of the same facts.

    python -m benchmarks.envs_gradients                # every case
    python -m benchmarks.envs_gradients --cases hopper:generalized
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _common
from rlax_inf import envs

# (name, backend, solver_iterations, mode, horizons). solver_iterations None:
# the environment's own setting.
CASES = (
    ('pendulum', None, None, 'rev', (10,)),
    ('inverted_pendulum', 'spring', None, 'rev', (5,)),
    ('inverted_pendulum', 'generalized', None, 'rev', (5,)),
    ('hopper', 'generalized', None, 'rev', (3, 30)),
    ('inverted_pendulum', 'mjx', None, 'rev', (5,)),
    ('inverted_pendulum', 'mjx', None, 'fwd', (5,)),
    ('inverted_pendulum', 'mjx', 1, 'rev', (5,)),
    ('hopper', 'mjx', 1, 'rev', (3, 30)),
)
ACTION_SCALE = 0.1
EPS = {False: (1e-2, 1e-3, 1e-4), True: (1e-4, 1e-5, 1e-6)}


def _start(env):
  """A float32 start state and action sequence (numpy), shared by both dtypes.

  Sampling in float64 would draw different numbers: both dtypes start from
  these float32 values (cast exactly), so their gradients are comparable.
  """
  s0 = jax.jit(env.reset)(jax.random.PRNGKey(0))
  return jax.tree.map(np.asarray, s0)


def _objective(env, s0, x64):
  """J(actions) from the start state `s0`, in float64 when `x64`."""
  dtype = jnp.float64 if x64 else jnp.float32
  template = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
  s0 = jax.tree.map(lambda t, v: jnp.asarray(v, t.dtype), template, s0)
  w = jnp.asarray(np.random.default_rng(7).normal(size=env.observation_size),
                  dtype)

  def objective(actions):
    def body(s, a):
      s = env.step(s, a)
      return s, s.done
    s, done = jax.lax.scan(body, s0, actions)
    return jnp.dot(s.final_obs, w), jnp.any(done)

  return objective


def _actions(env, horizon):
  # Small actions: hopper stays healthy for 30+ steps (with ±0.5 it falls at
  # step 17); its foot reaches the ground after about 12-15 steps.
  return np.random.default_rng(1).uniform(
      -ACTION_SCALE, ACTION_SCALE, (horizon, env.action_size)).astype(np.float32)


def measure(name, backend, solver_iterations, mode, horizon, x64, start=None):
  """One case in one dtype: gradient, finite differences, timings.

  `start`: (state, actions) as numpy float32 from an earlier call (float32
  case), or None to make them. Returns (row, (grad, fd_1e-6), start).
  """
  row = dict(env=name, backend=backend or 'jax', solver_iterations=solver_iterations,
             mode=mode, horizon=horizon, dtype='float64' if x64 else 'float32')
  kwargs = {} if solver_iterations is None else dict(
      solver_iterations=solver_iterations)
  t0 = time.perf_counter()
  with jax.enable_x64(x64):
    env = envs.make(name, backend=backend, fresh_resets=False, **kwargs)
    if start is None:
      start = _start(env), _actions(env, horizon)
    objective = _objective(env, start[0], x64)
    actions = jnp.asarray(start[1], jnp.float64 if x64 else jnp.float32)
    value = jax.jit(lambda a: objective(a)[0])
    j = lambda a: objective(a)[0]
    grad_fn = jax.jit(jax.grad(j) if mode == 'rev' else jax.jacfwd(j))
    try:
      grad = np.asarray(grad_fn(actions), np.float64)
    except Exception as e:  # pylint: disable=broad-except
      row['error'] = f'{type(e).__name__}: {str(e).splitlines()[0][:160]}'
      row['seconds'] = time.perf_counter() - t0
      return row, None, start
    row['grad_seconds'] = time.perf_counter() - t0
    row['any_done'] = bool(jax.jit(objective)(actions)[1])
    row['obs_dtype'] = str(jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs.dtype)
    fds = {eps: envs.central_differences(value, actions, eps) for eps in EPS[x64]}
  rel = {eps: float(np.linalg.norm(grad - fd) / np.linalg.norm(fd))
         for eps, fd in fds.items()}
  row['rel_same_by_eps'] = {f'{e:g}': r for e, r in rel.items()}
  row['rel_same'] = min(rel.values())
  row['grad_norm'] = float(np.linalg.norm(grad))
  row['seconds'] = time.perf_counter() - t0
  return row, (grad, fds.get(1e-6)), start


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--cases', default='',
                      help='comma-separated name:backend filter (default all)')
  args = parser.parse_args()
  keep = set(filter(None, args.cases.split(',')))
  rows = []
  for name, backend, iters, mode, horizons in CASES:
    if keep and f'{name}:{backend or "jax"}' not in keep:
      continue
    for horizon in horizons:
      r32, out32, start = measure(name, backend, iters, mode, horizon,
                                  x64=False)
      r64, out64, _ = measure(name, backend, iters, mode, horizon, x64=True,
                              start=start)
      if out64 is not None:
        ref = out64[1]
        for r, out in ((r64, out64), (r32, out32)):
          if out is not None:
            r['rel_ref'] = float(np.linalg.norm(out[0] - ref) /
                                 np.linalg.norm(ref))
      for r in (r32, r64):
        rows.append(r)
        print(r, flush=True)

  cmd = _common.command()
  mach = _common.machine()
  fmt = lambda x: '—' if x is None else f'{x:.1e}'
  md = ['# envs gradients: autodiff vs central finite differences', '',
        f'Command: `{cmd}`  ',
        f'Machine: {mach["cpu"]}, {mach["cores"]} cores, jax {mach["jax"]} '
        f'({mach["backend"]}).', '',
        'J = w · final_obs after H agent steps (w fixed, random), gradient '
        'w.r.t. all H × action_size action components. rel_same: ‖g − fd‖ / '
        '‖fd‖ against central differences in the same dtype (best ε); '
        'rel_ref: against float64 central differences (ε = 1e-6). '
        'iters: `make(..., solver_iterations=...)` (— = the env\'s own). '
        'seconds: make + compile + all evaluations (2-core CPU, shared).', '',
        '| env | backend | iters | mode | H | dtype | rel_same | rel_ref | '
        'seconds | note |', '|---|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    note = r.get('error', '')
    if r.get('any_done'):
      note = 'an episode ended within H'
    md.append(
        f'| {r["env"]} | {r["backend"]} | '
        f'{r["solver_iterations"] if r["solver_iterations"] else "—"} | '
        f'{r["mode"]} | {r["horizon"]} | {r["dtype"]} | '
        f'{fmt(r.get("rel_same"))} | {fmt(r.get("rel_ref"))} | '
        f'{r["seconds"]:.0f} | {note} |')
  _common.write_results('envs_gradients',
                        {'command': cmd, 'machine': mach, 'rows': rows},
                        '\n'.join(md) + '\n')


if __name__ == '__main__':
  main()
