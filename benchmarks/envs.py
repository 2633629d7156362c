"""Environment steps per second: rlax_inf.envs vs raw stepping, same run.

For each environment and num_envs, four jitted `lax.scan`s of K batched
steps are timed, interleaved run by run:
* ours: `jax.vmap(env.step)` (time limit, auto-reset with a fresh random
  initial state, metrics, action checks);
* batch: `env.batch_step` (the same result; a fresh reset is computed only for
  the envs whose episode ended);
* cached: `env.batch_step` of `make(..., fresh_resets=False)`: every
  auto-reset reuses one initial state per env, as Brax's AutoResetWrapper
  does, so this column against raw Brax is the wrapper's own overhead;
* raw: Brax envs: `brax.envs.create(name, backend, episode_length)` (Brax's
  EpisodeWrapper + AutoResetWrapper, which reuses one cached initial state);
  pure-JAX envs: the bare `core_step` with no time limit, reset or metrics.
overhead = ours_time / raw_time − 1 (and likewise for batch and cached). The
fraction of env steps that end an episode (`done`) is reported: resets are
what `batch_step` saves.

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


def _ours(env, num_envs, steps, batched=False):
  states = jax.jit(jax.vmap(env.reset))(
      jax.random.split(jax.random.PRNGKey(0), num_envs))
  actions = _actions(env, num_envs)
  step = env.batch_step if batched else jax.vmap(env.step)

  @jax.jit
  def run(s):
    return jax.lax.scan(lambda s, _: (step(s, actions), None), s, None,
                        length=steps)[0]

  return lambda: run(states)


def _done_fraction(env, num_envs, steps):
  """Fraction of (env, step) pairs, and of steps, where an episode ended."""
  states = jax.jit(jax.vmap(env.reset))(
      jax.random.split(jax.random.PRNGKey(0), num_envs))
  actions = _actions(env, num_envs)

  @jax.jit
  def run(s):
    def body(s, _):
      s = jax.vmap(env.step)(s, actions)
      return s, s.done
    return jax.lax.scan(body, s, None, length=steps)[1]

  done = run(states)
  return float(jnp.mean(done)), float(jnp.mean(jnp.any(done > 0, axis=1)))


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
                      help='steps per timed scan (at most 20480 / num_envs, '
                      'at least 10)')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--episode-length', type=int, default=1000)
  parser.add_argument('--quick', action='store_true',
                      help='num_envs 1,64 and 50 steps')
  args = parser.parse_args()
  if args.quick:
    args.num_envs, args.steps = '1,64', 50
  sizes = [int(n) for n in args.num_envs.split(',')]

  rows = []
  for spec in args.envs.split(','):
    name, _, backend = spec.partition(':')
    make = lambda fresh: envs.make(name, backend=backend or None,  # pylint: disable=cell-var-from-loop
                                   episode_length=args.episode_length,
                                   fresh_resets=fresh)
    env, cached_env = make(True), make(False)
    for n in sizes:
      steps = max(10, min(args.steps, 20480 // n))
      t = _common.time_interleaved(
          {'ours': _ours(env, n, steps),
           'batch': _ours(env, n, steps, batched=True),
           'cached': _ours(cached_env, n, steps, batched=True),
           'raw': _raw(env, n, steps, args.episode_length)},
          repeats=args.repeats, warmup=1)
      rate = {k: n * steps / v['median_s'] for k, v in t.items()}
      done, any_done = _done_fraction(env, n, steps)
      rows.append({
          'env': name, 'suite': env.spec.suite, 'backend': env.spec.backend,
          'num_envs': n, 'steps_per_scan': steps,
          'ours_steps_per_s': rate['ours'], 'batch_steps_per_s': rate['batch'],
          'cached_steps_per_s': rate['cached'], 'raw_steps_per_s': rate['raw'],
          'overhead': rate['raw'] / rate['ours'] - 1.0,
          'batch_overhead': rate['raw'] / rate['batch'] - 1.0,
          'cached_overhead': rate['raw'] / rate['cached'] - 1.0,
          'done_fraction': done, 'steps_with_done_fraction': any_done,
      })
      print(rows[-1], flush=True)

  cmd = _common.command()
  mach = _common.machine()
  md = ['# envs benchmark', '',
        f'Command: `{cmd}`  ',
        f'Machine: {mach["cpu"]}, {mach["cores"]} cores, jax {mach["jax"]} '
        f'({mach["backend"]}).', '',
        'Env steps per second (num_envs × steps per jitted scan, steps = '
        f'max(10, min({args.steps}, 20480 / num_envs)); median of '
        f'{args.repeats} interleaved runs). raw = Brax\'s own EpisodeWrapper '
        '+ AutoResetWrapper (cached reset state) for Brax envs; the bare core '
        'step (no time limit / reset / metrics / keys) for pure-JAX envs. '
        'vmap(step): `jax.vmap(env.step)` with fresh resets (the default); '
        'batch_step: `env.batch_step`, the same result, resets computed only '
        'where an episode ended; cached: `env.batch_step` with '
        '`fresh_resets=False` (one cached initial state per env, what raw '
        'Brax does): the like-for-like wrapper overhead. overhead = '
        'raw / ours − 1 (target ≤ 5%). done: fraction of env steps that end '
        'an episode (constant action 0.1 from reset, episode_length '
        f'{args.episode_length}).', '',
        '| env | backend | num_envs | vmap(step) steps/s | batch_step steps/s '
        '| cached steps/s | raw steps/s | vmap(step) overhead | batch_step '
        'overhead | cached overhead | done |',
        '|---|---|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    md.append(f'| {r["env"]} | {r["backend"]} | {r["num_envs"]} | '
              f'{r["ours_steps_per_s"]:,.0f} | {r["batch_steps_per_s"]:,.0f} | '
              f'{r["cached_steps_per_s"]:,.0f} | '
              f'{r["raw_steps_per_s"]:,.0f} | {100 * r["overhead"]:+.1f}% | '
              f'{100 * r["batch_overhead"]:+.1f}% | '
              f'{100 * r["cached_overhead"]:+.1f}% | '
              f'{100 * r["done_fraction"]:.1f}% |')
  _common.write_results('envs', {'command': cmd, 'machine': mach,
                                 'max_steps_per_scan': args.steps, 'rows': rows},
                        '\n'.join(md) + '\n')


if __name__ == '__main__':
  main()
