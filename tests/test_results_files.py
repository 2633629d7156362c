"""benchmarks._common.write_results: json and md, and the hand-written reading kept."""

import json

from benchmarks import _common


def test_write_results_keeps_the_reading_only_when_asked(tmp_path, monkeypatch):
  monkeypatch.setattr(_common, "RESULTS_DIR", str(tmp_path))
  reading = _common.READING_MARK + "\n## Reading\nby hand\n"
  (tmp_path / "b.md").write_text("# old tables\n\n" + reading)

  _common.write_results("b", {"x": 1}, "# new tables\n\nHeadline: h\n", keep_reading=True)
  assert (tmp_path / "b.md").read_text() == "# new tables\n\nHeadline: h\n\n" + reading
  assert json.loads((tmp_path / "b.json").read_text()) == {"x": 1}
  # Regenerating again keeps the same reading once, not twice.
  _common.write_results("b", {"x": 2}, "# newer\n", keep_reading=True)
  assert (tmp_path / "b.md").read_text() == "# newer\n\n" + reading

  _common.write_results("b", {"x": 3}, "# plain\n")
  assert (tmp_path / "b.md").read_text() == "# plain\n"


def test_write_results_without_an_old_md_or_mark(tmp_path, monkeypatch):
  monkeypatch.setattr(_common, "RESULTS_DIR", str(tmp_path / "new"))
  _common.write_results("c", {}, "# t\n", keep_reading=True)
  assert (tmp_path / "new" / "c.md").read_text() == "# t\n"
  (tmp_path / "new" / "c.md").write_text("# t\nno mark here\n")
  _common.write_results("c", {}, "# u\n", keep_reading=True)
  assert (tmp_path / "new" / "c.md").read_text() == "# u\n"
