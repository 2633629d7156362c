"""benchmarks.gradient_study --quick runs end to end (pure-JAX pendulum, CI size)."""

import numpy as np

from benchmarks import gradient_study


def test_quick_study_runs_and_reports_every_estimator(capsys):
  assert gradient_study.main(['--quick']) == 0
  out = capsys.readouterr().out
  assert '| pendulum | stabilising | float64 | 10 |' in out
  assert '| pendulum | random | float32 | 5 |' in out
  assert 'Gradient check' in out
  # The float64 gradient check: pathwise agrees with central differences.
  line = [l for l in out.splitlines() if l.startswith('| pendulum | ') and 'e-' in l
          and l.count('|') == 3][0]
  errs = [float(x) for x in line.split('|')[2].split(',')]
  assert max(errs) < 1e-5, errs


def test_bad_arguments_exit_2(capsys):
  assert gradient_study.main(['--quick', '--samples', '1']) == 2
  assert '--samples' in capsys.readouterr().err
  assert gradient_study.main(['--horizons', '0']) == 2


def test_statistics_of_a_known_sample():
  """Variance over seeds and bias against the pooled reference, by hand."""
  rng = np.random.default_rng(0)
  seeds, samples, params = 6, 4, 3
  data = {}
  for tag in ('main', 'ref1'):
    data[f'{tag}_g0'] = rng.normal(size=(seeds, params))
    data[f'{tag}_g1'] = rng.normal(size=(seeds, params)) + 1.0
    data[f'{tag}_v0'] = np.full(seeds, 2.0)
    data[f'{tag}_v1'] = np.full(seeds, 2.0)
    data[f'{tag}_nf0'] = np.zeros(seeds, int)
    data[f'{tag}_nf1'] = np.array([1, 0, 0, 0, 0, 0])
    data[f'{tag}_value'] = np.zeros(seeds)
  s = gradient_study._statistics(data, seeds, samples, 1)
  ref = data['ref1_g0'].mean(0)
  np.testing.assert_allclose(s['first']['var'], data['main_g1'].var(0, ddof=1).mean())
  np.testing.assert_allclose(s['first']['bias'], np.linalg.norm(data['main_g1'].mean(0) - ref))
  np.testing.assert_allclose(s['first']['nonfinite'], 1 / (seeds * samples))
  # α* = 1/2 where the first order is finite, 0 on the seed with a screened sample.
  np.testing.assert_allclose(s['alpha_mean'], 0.5 * 5 / 6)
  # The report, the anchor table included, renders from such rows.
  import argparse
  rows = [dict(env='inverted_pendulum', dtype='float32', policy=pol, horizon=t, **s)
          for pol in ('stabilising', 'random') for t in (10, 50)]
  args = argparse.Namespace(seeds=seeds, hopper_seeds=seeds, samples=samples, ref_batches=1,
                           cached_only=False)
  md = '\n'.join(gradient_study._markdown(rows, {}, args, 'cmd', 60.0))
  assert '| stabilising | float32 | 10 |' in md and '| 0.0005 |' in md.replace('5e-04', '0.0005')


def test_seed_start_extends_a_cell_to_exactly_the_full_measurement(tmp_path, monkeypatch):
  """Seeds 0..1 plus seeds 2..3 (--seed-start 2) read back as the 4-seed run."""
  monkeypatch.setattr(gradient_study, 'CACHE', str(tmp_path))
  kw = dict(x64=False, horizons=(5,), samples=2, ref_batches=1, log=lambda s: None,
            policies=('stabilising',))
  gradient_study.measure_env('pendulum', seeds=2, **kw)
  gradient_study.measure_env('pendulum', seeds=4, seed_start=2, **kw)
  parts = gradient_study._cell_parts('pendulum', 'float32', 'stabilising', 5, 4, 2)
  assert [p.split('_')[-2] for p in parts] == ['S2', 'seeds2-4']
  combined = gradient_study._load_cell(parts)
  rows, _ = gradient_study.measure_env('pendulum', seeds=4, **kw)  # reads the two parts
  assert len(rows) == 1 and rows[0]['horizon'] == 5
  assert not (tmp_path / 'pendulum_float32_stabilising_T5_S4_N2.npz').exists()
  monkeypatch.setattr(gradient_study, 'CACHE', str(tmp_path / 'whole'))
  gradient_study.measure_env('pendulum', seeds=4, **kw)
  whole = dict(np.load(tmp_path / 'whole' / 'pendulum_float32_stabilising_T5_S4_N2.npz'))
  assert combined.keys() == whole.keys()
  for k in whole:
    assert combined[k].shape[0] == 4
    np.testing.assert_allclose(combined[k], whole[k], rtol=1e-5, atol=1e-6, err_msg=k)
