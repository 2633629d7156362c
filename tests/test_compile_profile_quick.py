"""benchmarks.compile_profile --quick: two fresh processes and the headline (no speed asserted)."""

import json

from benchmarks import compile_profile
from rlax_inf.agents import training


def test_quick_runs(capsys):
  assert compile_profile.main(["--quick"]) == 0
  out = capsys.readouterr().out
  assert "{}: {'trace_init_s'" in out
  assert json.dumps(training.FAST_COMPILE_OPTIONS) + ": {" in out  # the Trainer's default
  assert out.strip().splitlines()[-1].startswith("Compile (init + interval) with ")


def test_bad_options_exit_2(capsys):
  assert compile_profile.main(["--quick", "--options", "{nope"]) == 2
  assert "bad --options" in capsys.readouterr().err


def test_markdown_ratio():
  result = lambda c: dict(compile_init_s=c, compile_interval_s=c, run_init_s=0.1)
  payload = dict(command="cmd", spec=dict(env="hopper", backend="positional"),
                 machine=dict(cpu="cpu", cores="2", jax="0", backend="cpu"),
                 rows=[dict(options={}, result=result(10.0)),
                       dict(options={"a": False}, result=result(6.0))])
  md = compile_profile._markdown(payload)  # pylint: disable=protected-access
  assert "| `{}` | 10.0 | 10.0 | 0.1 |" in md
  assert md.strip().endswith('Compile (init + interval) with `{"a": false}`: 0.60x of `{}`.')
