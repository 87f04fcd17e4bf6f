"""Wall time and peak memory of `yolodiag check` against YOLOv5's own `Model(yaml)` build.

Each run is a fresh process (imports included: that is what a user waits for). Peak memory is
the process's maximum resident set size from wait4(). Cases: the bundled seed model and
yolov5x6, `check` with its defaults (640, 320 and 384x640, every check); YOLOv5 builds the
same YAML where the yolov5 pip package is importable in this interpreter or in $YOLOV5_PYTHON
(see tests/test_yolov5_oracle.py). Prints medians and our/YOLOv5 ratios. Not run by CI.

    python benchmarks/bench_check.py [--repeat 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("YOLODIAG_SHARED", ROOT.parent / "shared"))
SEED = ROOT / "yolodiag" / "dialects" / "yolov5" / "models" / "yolov5s-resnet18.yaml"
CASES = {"seed (bundled)": SEED, "yolov5x6": SHARED / "yamls" / "stock" / "yolov5x6.yaml"}


def measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "YOLO_OFFLINE": "1"})
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        sys.exit(f"failed: {' '.join(command)}\n{process.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def yolov5_python() -> str | None:
    python = os.environ.get("YOLOV5_PYTHON", sys.executable)
    ok = subprocess.run([python, "-c", "import yolov5"], capture_output=True,
                        env={**os.environ, "YOLO_OFFLINE": "1"}).returncode == 0
    return python if ok else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    oracle = yolov5_python()
    basicblock = SHARED / "yamls" / "resnet18" / "basicblock_seed.py"
    harness = [str(ROOT / "benchmarks" / "yolov5_build.py")]
    if oracle:  # prepare the patched copy outside the timed runs
        subprocess.run([oracle, *harness, str(SEED), "--basicblock", str(basicblock),
                        "--prepare-only"], check=True)
    results = {}
    for name, yaml in CASES.items():
        if not yaml.exists():
            print(f"skip {name}: {yaml} not found")
            continue
        commands = {"yolodiag check": [sys.executable, "-m", "yolodiag", "check", str(yaml),
                                       "--format", "json"]}
        if oracle:
            extra = ["--basicblock", str(basicblock)] if yaml == SEED else []
            commands["yolov5 Model(yaml)"] = [oracle, "-W", "ignore", *harness, str(yaml), *extra]
        for tool, command in commands.items():
            runs = [measure(command) for _ in range(args.repeat)]
            results[(name, tool)] = {
                "wall_s": statistics.median(r[0] for r in runs),
                "peak_rss_mib": statistics.median(r[1] for r in runs),
                "runs": runs,
            }
    print(f"median of {args.repeat} fresh processes; check at its default sizes")
    print(f"{'model':16} {'tool':20} {'wall s':>8} {'peak MiB':>9}")
    for (name, tool), r in results.items():
        print(f"{name:16} {tool:20} {r['wall_s']:8.2f} {r['peak_rss_mib']:9.0f}")
    for name in CASES:
        ours = results.get((name, "yolodiag check"))
        theirs = results.get((name, "yolov5 Model(yaml)"))
        if ours and theirs:
            print(f"{name}: wall {ours['wall_s'] / theirs['wall_s']:.2f}x, "
                  f"memory {ours['peak_rss_mib'] / theirs['peak_rss_mib']:.2f}x of YOLOv5's")
    if args.json:
        args.json.write_text(json.dumps({f"{n} | {t}": r for (n, t), r in results.items()},
                                        indent=2))


if __name__ == "__main__":
    main()
