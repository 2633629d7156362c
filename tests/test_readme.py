"""The README's examples run as written, each on its own, and it names nothing outside the repo.

* Every ```python block runs in a fresh namespace (a block that leans on another's
  imports or variables fails).
* Every command of a ```bash block is checked: `rlax-inf ...` parses with the real
  parser, and a new `train` builds its configs (agent, env, every `--set` key and
  value); `make X` names a Makefile target. The cheap ones run (`rlax-inf list`); the
  first training run runs in full under `make test-slow` and must learn.
* Every relative link exists, every results file is linked, no path outside the repo.
"""
import contextlib
import io
import os
import re
import shlex

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
with open(os.path.join(ROOT, "README.md")) as _f:
  README = _f.read()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.S)


def _commands():
  """Each command of the bash blocks as argv (continuation lines joined, comments dropped)."""
  out = []
  for block in BASH_BLOCKS:
    for line in block.replace("\\\n", " ").splitlines():
      argv = shlex.split(line, comments=True)
      if argv:
        out.append(argv)
  return out


def _first_run():
  return next(a for a in _commands() if a[:2] == ["rlax-inf", "train"] and "runs/first" in a)


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_python_block_runs_on_its_own(index):
  block = PYTHON_BLOCKS[index]
  scope = {"__name__": "readme_block"}
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      exec(compile(block, f"README.md block {index}", "exec"), scope)  # pylint: disable=exec-used
  finally:
    from rlax_inf.agents import registry  # pylint: disable=g-import-not-at-top
    registry._REGISTRY.pop("toy-pg", None)  # pylint: disable=protected-access
  # What some blocks compute, checked here as well.
  if "soft_q_loss" in scope:
    assert scope["grads"].shape == (8, 4)
  if "log_z" in scope:
    assert abs(float(scope["mu"].sum()) - 10.0) < 1e-3  # 10 marginals, each sums to one
  if "ToyPGConfig" in scope:  # "Write your own agent": two seeds through the platform
    returns = scope["metrics"]["eval_return"]
    assert returns.shape == (2, 2) and (returns > 0).all()
    assert "pg_loss" in scope["metrics"]


def test_there_is_a_block_per_library_family():
  assert len(PYTHON_BLOCKS) >= 12
  for module in ("values", "bellman", "messages", "estimators", "divergences",
                 "kl_regularized", "mpo_ops", "options", "irl"):
    assert f"(`{module}`" in README or f"`{module}`)" in README or f"`{module}`," in README, \
        module


def test_every_shell_command_is_valid():
  from rlax_inf import envs  # pylint: disable=g-import-not-at-top
  from rlax_inf.agents import cli, run_config  # pylint: disable=g-import-not-at-top
  with open(os.path.join(ROOT, "Makefile")) as f:
    targets = set(re.findall(r"^([\w-]+):", f.read(), flags=re.M))
  commands = _commands()
  assert commands
  for argv in commands:
    if argv[0] == "make":
      assert set(argv[1:]) <= targets, argv
    elif argv[0] == "source":
      assert argv[1] == ".venv/bin/activate", argv
    elif argv[0] == "rlax-inf":
      args = cli.build_parser().parse_args(argv[1:])
      if args.command == "train" and not args.resume:
        run_config.make_configs(args.agent or "sac", run_config.parse_sets(args.set),
                                env=args.env, num_seeds=args.seeds or 1,
                                total_steps=args.steps or 1)
        assert args.env in envs.registry(), argv
    else:
      raise AssertionError(f"an unchecked shell command in the README: {argv}")


def test_cheap_shell_commands_run(capsys):
  from rlax_inf.agents import cli  # pylint: disable=g-import-not-at-top
  cheap = [a for a in _commands() if a[:2] == ["rlax-inf", "list"]]
  assert cheap
  for argv in cheap:
    assert cli.main(argv[1:]) == 0
  assert "sql" in capsys.readouterr().out


def test_links_exist_and_nothing_outside_the_repo_is_named():
  for target in re.findall(r"\]\(([^)]+)\)", README):
    if not target.startswith("http"):
      assert os.path.exists(os.path.join(ROOT, target.split("#")[0])), target
  for outside in ("shared/", "/work/", "/tmp/", "~/work"):
    assert outside not in README, outside
  results = os.path.join(ROOT, "benchmarks", "results")
  for name in sorted(os.listdir(results)):
    if name.endswith(".md"):
      assert f"(benchmarks/results/{name})" in README, f"results file {name} is not linked"


def test_the_quoted_first_run_matches_its_command():
  argv = _first_run()
  assert argv[argv.index("--steps") + 1] == "30000" and argv[argv.index("--seeds") + 1] == "2"
  assert "31,000 env steps per seed × 2 seed(s)" in README


@pytest.mark.slow  # about 2 minutes on the 2-core CPU
def test_first_training_run_learns(tmp_path, capsys):
  """The README's first run, as written (but --out), reaches 500 on both seeds."""
  from rlax_inf.agents import cli, run  # pylint: disable=g-import-not-at-top
  argv = _first_run()[1:]
  argv[argv.index("--out") + 1] = str(tmp_path / "first")
  assert cli.main(argv + ["--no-progress", "--compilation-cache", str(tmp_path / "cache")]) == 0
  rows = run.read_metrics(str(tmp_path / "first"))
  last = max(r["evaluation"] for r in rows)
  final = [r["eval_return"] for r in rows if r["evaluation"] == last]
  assert len(final) == 2 and min(final) >= 475, final
  assert "31,000" in capsys.readouterr().err
