"""The augmentation workers' malloc policy (pipelines/malloc.py), measured in fresh processes: it
is process-wide and set once, and other tests run the UDF in the test process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.data import malloc

ROOT = Path(__file__).resolve().parents[1]
VIEW_PAGES = 2 * 256 * 3 * 224 * 224 // 4096  # 18,816 pages of 4 KiB

# cached_calls (what every per-epoch task runs) on two rows sets the policy; then six 256-image
# 224 px calls (views: two 37 MB arrays) count their minor page faults.
CALLS = """
import json, resource
import numpy as np
from cl_core.transforms import build_recipe
from pipelines.data.images import cached_calls
from cl_core.transforms.stages import augment_batch

recipe = build_recipe("simclr", size=224)
images = np.random.default_rng(0).integers(0, 256, (256, 3, 224, 224), dtype=np.uint8)
labels = np.zeros(256, np.int64)
assert len(list(cached_calls(images, labels, np.arange(2), 2, recipe, True, 0))) == 1
faults = []
for seed in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    augment_batch({"image": images, "label": labels}, recipe, True, seed)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""


def call_faults() -> list[int]:
    command = [sys.executable, "-c", CALLS]
    done = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds: Linux only")
def test_cached_calls__later_calls_reuse_the_heap_instead_of_faulting_views_in():
    faults = call_faults()
    # Five later calls fault in less than one call's views in all (measured 1,400-5,900; without
    # the policy 66,000-115,000: most calls fault in their views, 9,000-38,000 each).
    assert sum(faults[1:]) < VIEW_PAGES, faults


def test_keep_freed_memory__does_nothing_off_linux(monkeypatch):
    monkeypatch.setattr(malloc.sys, "platform", "darwin")
    assert malloc._set_thresholds(malloc.HEAP_KEEP_BYTES) is False
