"""`make bench` end to end in its --quick form: every section runs and bench.json is whole.

The speed targets themselves are read off the printed table of a full `make bench`
(README "Performance"), never asserted here: timings on a shared CI machine are noise.
"""

import json
import math
import subprocess
import sys

import pytest

from conftest import REPO
from lrdynamics.engine.data import raw_locations

KEYS = [
    "train_speedup_vs_reference",
    "train_speedup_vs_reference_preresnet32",
    "augmentation_speedup_vs_reference",
    "svag_step_time_ratio",
    "ensemble_speedup_vs_separate_jobs",
    "ensemble_speedup_vs_separate_jobs_demo_mlp",
    "dryrun_paper_seconds",
]


@pytest.mark.skipif(
    not any(p.is_dir() for p in raw_locations("fashion_mnist", REPO / "resources")),
    reason="Fashion-MNIST not installed (make data)",
)
def test_quick_bench_writes_every_key(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "workflow/bench/bench.py", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    for key in KEYS:
        assert math.isfinite(r[key]) and r[key] > 0, key
    assert r["dryrun_paper_jobs"] > 100  # the paper grid, not an empty DAG
    assert set(r["ensemble_speedup_vs_sequential"]) == {"K=8"} and r["job_startup_seconds"]["after"] > 0
    assert r["device"].startswith("cpu") or r["cuda"]["variants"]
    # both references timed on the same model; ours in both layouts for the conv net
    assert {"ours", "reference_0w"} <= set(r["train_demo"]["images_per_second"])
    assert {"ours_channels_last", "ours_contiguous"} <= set(r["train_preresnet32"]["images_per_second"])
    assert "train_speedup_vs_reference" in proc.stdout  # the table was printed
