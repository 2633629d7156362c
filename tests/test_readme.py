"""The README's Python examples run as written."""
import os
import re

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_readme_python_blocks_run():
  with open(README) as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
  assert blocks, "README has no python examples"
  scope = {}
  try:
    for block in blocks:
      exec(compile(block, "README.md", "exec"), scope)  # pylint: disable=exec-used
  finally:
    from rlax_inf.agents import registry  # pylint: disable=g-import-not-at-top
    registry._REGISTRY.pop("toy-pg", None)  # pylint: disable=protected-access
  assert scope["grads"].shape == (8, 4)
  assert abs(float(scope["mu"].sum()) - 10.0) < 1e-3  # 10 marginals, each sums to one
  # The toy agent of "Write your own agent" trained two seeds through the platform.
  returns = scope["metrics"]["eval_return"]
  assert returns.shape == (2, 2) and (returns > 0).all()
  assert "pg_loss" in scope["metrics"]
