"""Environment steps per second: rlax_inf.envs vs raw stepping, same run.

For each environment and num_envs, two jitted `lax.scan`s of K vmapped steps
are timed, interleaved run by run:
* ours: `jax.vmap(env.step)` (time limit, auto-reset with a fresh random
  initial state, metrics, action checks);
* raw: Brax envs: `brax.envs.create(name, backend, episode_length)` (Brax's
  EpisodeWrapper + AutoResetWrapper, which reuses one cached initial state);
  pure-JAX envs: the bare `core_step` with no time limit, reset or metrics.
overhead = ours_time / raw_time − 1.

    python -m benchmarks.envs                 # defaults below
    python -m benchmarks.envs --quick         # fewer sizes / steps
"""

import argparse

import jax
import jax.numpy as jnp

from benchmarks import _common
from rlax_inf import envs

DEFAULT_ENVS = ('pendulum', 'cartpole', 'gridworld', 'garnet',
                'inverted_pendulum:spring', 'hopper:positional')


def _actions(env, num_envs):
  if env.discrete:
    return jnp.ones((num_envs,), jnp.int32)
  return jnp.full((num_envs, env.action_size), 0.1, jnp.float32)


def _ours(env, num_envs, steps):
  states = jax.jit(jax.vmap(env.reset))(
      jax.random.split(jax.random.PRNGKey(0), num_envs))
  actions = _actions(env, num_envs)
  step = jax.vmap(env.step)

  @jax.jit
  def run(s):
    return jax.lax.scan(lambda s, _: (step(s, actions), None), s, None,
                        length=steps)[0]

  return lambda: run(states)


def _raw(env, num_envs, steps, episode_length):
  actions = _actions(env, num_envs)
  keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
  if env.spec.suite == 'brax':
    from brax import envs as brax_envs  # pylint: disable=g-import-not-at-top
    raw = brax_envs.create(env.spec.name, backend=env.spec.backend,
                           episode_length=episode_length, auto_reset=True)
    states = jax.jit(jax.vmap(raw.reset))(keys)
    step = jax.vmap(raw.step)
  else:
    states = jax.jit(jax.vmap(lambda k: env.core_reset(k)[0]))(keys)
    step = jax.vmap(lambda s, a: env.core_step(s, a, jax.random.PRNGKey(0))[0])

  @jax.jit
  def run(s):
    return jax.lax.scan(lambda s, _: (step(s, actions), None), s, None,
                        length=steps)[0]

  return lambda: run(states)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--envs', default=','.join(DEFAULT_ENVS),
                      help='comma-separated name[:backend]')
  parser.add_argument('--num-envs', default='1,64,1024')
  parser.add_argument('--steps', type=int, default=100,
                      help='steps per timed scan')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--episode-length', type=int, default=1000)
  parser.add_argument('--fresh-resets', type=int, default=1, choices=(0, 1),
                      help='0: make(..., fresh_resets=False), Brax-style '
                      'cached reset (what raw Brax does)')
  parser.add_argument('--quick', action='store_true',
                      help='num_envs 1,64 and 50 steps')
  args = parser.parse_args()
  if args.quick:
    args.num_envs, args.steps = '1,64', 50
  sizes = [int(n) for n in args.num_envs.split(',')]

  rows = []
  for spec in args.envs.split(','):
    name, _, backend = spec.partition(':')
    env = envs.make(name, backend=backend or None,
                    episode_length=args.episode_length,
                    fresh_resets=bool(args.fresh_resets))
    for n in sizes:
      t = _common.time_interleaved(
          {'ours': _ours(env, n, args.steps),
           'raw': _raw(env, n, args.steps, args.episode_length)},
          repeats=args.repeats, warmup=1)
      ours = n * args.steps / t['ours']['median_s']
      raw = n * args.steps / t['raw']['median_s']
      rows.append({
          'env': name, 'suite': env.spec.suite, 'backend': env.spec.backend,
          'num_envs': n, 'ours_steps_per_s': ours, 'raw_steps_per_s': raw,
          'overhead': raw / ours - 1.0,
      })
      print(rows[-1], flush=True)

  cmd = _common.command()
  mach = _common.machine()
  md = ['# envs benchmark', '',
        f'Command: `{cmd}`  ',
        f'Machine: {mach["cpu"]}, {mach["cores"]} cores, jax {mach["jax"]} '
        f'({mach["backend"]}).', '',
        f'fresh_resets={bool(args.fresh_resets)}. '
        f'Env steps per second (num_envs × {args.steps} steps per jitted '
        'scan, median of interleaved runs). raw = Brax\'s own '
        'EpisodeWrapper + AutoResetWrapper (cached reset state) for Brax '
        'envs; the bare core step (no time limit / reset / metrics) for '
        'pure-JAX envs. overhead = raw / ours − 1 (target ≤ 5%).', '',
        '| env | backend | num_envs | ours (steps/s) | raw (steps/s) | '
        'overhead |', '|---|---|---|---|---|---|']
  for r in rows:
    md.append(f'| {r["env"]} | {r["backend"]} | {r["num_envs"]} | '
              f'{r["ours_steps_per_s"]:,.0f} | {r["raw_steps_per_s"]:,.0f} | '
              f'{100 * r["overhead"]:+.1f}% |')
  _common.write_results('envs', {'command': cmd, 'machine': mach,
                                 'steps_per_scan': args.steps, 'rows': rows},
                        '\n'.join(md) + '\n')


if __name__ == '__main__':
  main()
