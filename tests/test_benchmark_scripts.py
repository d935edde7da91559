"""The scale benchmark runs end to end at a tiny size and reports every piece.

`benchmarks/scale.py` is not run by the library's code paths; this keeps it from
rotting: each group's child process must report its pieces, none failed or skipped.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_scale_benchmark_reports_every_piece_at_a_tiny_size(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "benchmarks", "scale.py"),
            "--classes=40",
            "--images=3000",
            "--pieces=split,samplers,features,metrics",
            "--repeats=1",
            "--feature_dim=16",
            f"--files_dir={tmp_path}",
            f"--out={tmp_path / 'out'}",
            "--note=test",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "out" / "scale.json").read_text())["rows"]
    pieces = {row["piece"]: row for row in rows}
    for row in rows:
        assert row["seconds"] is not None and row["seconds"] >= 0, row
        assert "failed" not in row["note"] and "skipped" not in row["note"], row
    assert len(rows) == 14, sorted(pieces)
    empty = pieces["split file: load + check_files (every image empty)"]["note"]
    assert "unreadable_class 40" in empty
    missing = pieces["split file: load + check_files (all missing)"]["note"]
    assert "missing 3,000" in missing
    assert (tmp_path / "out" / "scale.md").read_text().count("| split file:") == 4
    assert [p for p in os.listdir(tmp_path) if p != "out"] == []  # image trees removed
