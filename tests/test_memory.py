"""SmolLM2 capture of 2048 tokens on CPU stays under 4 GB peak RSS (measured in a fresh process)."""

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, resource, time, torch
import workbench as wb
from workbench.analyses.demo import sample_text
torch.set_num_threads(2)
model = wb.load_model("smollm2-135m")
ids = model.encode(sample_text() * 6)[:, :2048]
assert ids.shape[-1] == 2048, ids.shape
start = time.time()
spec = wb.CaptureSpec(key_statistics=("received", "fai"), pooled_cells=128)
_, cap = model.run(ids, spec)
elapsed = time.time() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
print(json.dumps({"peak_gb": peak, "seconds": elapsed, "tokens": int(ids.shape[-1]), "stats": sorted(cap.row)}))
"""


@pytest.mark.slow
def test_smollm2_2048_token_capture_peak_memory_under_4gb(smollm2):
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\nSmolLM2 2048-token capture: peak RSS {report['peak_gb']:.2f} GB, {report['seconds']:.1f} s")
    assert report["tokens"] == 2048
    assert report["peak_gb"] < 4.0
