"""The README's Python examples run as written."""
import os
import re

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_readme_python_blocks_run():
  with open(README) as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)
  assert blocks, "README has no python examples"
  scope = {}
  for block in blocks:
    exec(compile(block, "README.md", "exec"), scope)  # pylint: disable=exec-used
  assert scope["grads"].shape == (8, 4)
  assert abs(float(scope["mu"].sum()) - 10.0) < 1e-3  # 10 marginals, each sums to one
