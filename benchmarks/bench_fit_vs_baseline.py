"""The fast path's time on the demo image against an earlier commit of sreels, in the same run.

Both versions fit the same simulated default image (330 x 2048, two windows, seed 1) in
alternating subprocesses (``--repeats`` each, warm: references built once per process
first), so that load on the machine hits both alike; prints JSON with the medians and the
ratio.  The baseline is checked out into a temporary git worktree and removed afterwards.

    python benchmarks/bench_fit_vs_baseline.py [--baseline fe659f9] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SNIPPET = r"""
import json, time, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {root!r})
from sreels.config import Scenario
from sreels.forward.simulate import simulate
from sreels.inference.fast import fit_image
from sreels.inference.load import WindowData
sim = simulate(Scenario(), rng=1)
det = sim.config.detector
md = {{"sreels": {{"detector": {{"psf_decay": det.psf_decay}}}}}}
wins = {{k: WindowData(k, v.energy, v.counts.astype(float), sim.position, "sim", det.gain_counts_per_e,
                       det.readout_noise_counts, metadata=md) for k, v in sim.windows.items()}}
fit_image(wins)
ts = []
for _ in range({n}):
    t0 = time.perf_counter(); fit_image(wins); ts.append(time.perf_counter() - t0)
print(json.dumps(ts))
"""


def run(root: Path, n: int) -> list:
    env = dict(os.environ, PYTHONPATH=str(root), TQDM_DISABLE="1")
    out = subprocess.run([sys.executable, "-c", SNIPPET.format(root=str(root), n=n)], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="fe659f9", help="git commit to compare with (default: before issue 9)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import statistics

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.baseline],
                       check=True, capture_output=True)
        try:
            now, then = [], []
            for _ in range(2):  # alternate: each side twice
                now += run(ROOT, args.repeats)
                then += run(base, args.repeats)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
    m_now, m_then = statistics.median(now), statistics.median(then)
    print(json.dumps({"image": "default scenario, 330 rows x 2 windows x 2048 channels, seed 1",
                      "sreels_now_s": m_now, "baseline_s": m_then, "baseline": args.baseline,
                      "ratio_now_over_baseline": m_now / m_then, "repeats": len(now),
                      "cpu_count": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
