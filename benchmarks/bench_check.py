"""Wall time and peak memory of `yolodiag check` against the family's own `Model(yaml)` build.

Each run is a fresh process (imports included: that is what a user waits for). Peak memory is
the process's maximum resident set size from wait4(). `check` runs with its defaults (640, 320
and 384x640, each rounded up to the model's largest stride; every check).
`--family yolov5` (default): the bundled seed model and yolov5x6; YOLOv5 builds the same YAML
where the yolov5 pip package is importable in this interpreter or in $YOLOV5_PYTHON (see
tests/test_yolov5_oracle.py). `--family yolov7`: yolov7-e6e (and yolov7-tiny); YOLOv7 builds it
where $YOLOV7_PYTHON imports the checkout at $YOLOV7_REPO (benchmarks/make_yolov7_venv.sh).
`--family ultralytics`: yolo11x, yolo11n and the YOLO11 seed recipe (yolo11n-resnet18) by the
names a user passes, which both sides resolve to the base file at a scale; the real
`DetectionModel(yaml)` builds them where $ULTRALYTICS_PYTHON imports ultralytics==8.4.190
(benchmarks/make_ultralytics_venv.sh), the recipe with the seed's BasicBlock registered
(benchmarks/ultralytics_build.py). That venv has torch 2.14.1, where ours may run another torch
(2.13 in the project venv): the torch of each side is printed with the table.
Prints medians and our/their ratios. Not run by CI.

    python benchmarks/bench_check.py [--family yolov7|ultralytics] [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("YOLODIAG_SHARED", ROOT.parent / "shared"))
SEED = ROOT / "yolodiag" / "dialects" / "yolov5" / "models" / "yolov5s-resnet18.yaml"
CASES = {"seed (bundled)": SEED, "yolov5x6": SHARED / "yamls" / "stock" / "yolov5x6.yaml"}
YOLOV7_STOCK = SHARED / "yamls" / "yolov7" / "stock" / "training"
YOLOV7_CASES = {"yolov7-e6e": YOLOV7_STOCK / "yolov7-e6e.yaml",
                "yolov7-tiny": YOLOV7_STOCK / "yolov7-tiny.yaml"}
ULTRALYTICS_YAMLS = SHARED / "yamls" / "ultralytics"
# no such file: the name means yolo11-resnet18.yaml at scale n, on both sides
ULTRALYTICS_RECIPE = ULTRALYTICS_YAMLS / "resnet18" / "yolo11n-resnet18.yaml"
ULTRALYTICS_CASES = {"yolo11x": ULTRALYTICS_YAMLS / "stock" / "yolo11x.yaml",
                     "yolo11n": ULTRALYTICS_YAMLS / "stock" / "yolo11n.yaml",
                     "yolo11n-resnet18": ULTRALYTICS_RECIPE}
BASICBLOCK = SHARED / "yamls" / "resnet18" / "basicblock_seed.py"


def measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one fresh process."""
    with tempfile.TemporaryFile() as stderr:  # a pipe nobody reads would block a chatty child
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr,
                                   env={**os.environ, "YOLO_OFFLINE": "1"})
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            stderr.seek(0)
            sys.exit(f"failed: {' '.join(command)}\n{stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def yolov5_python() -> str | None:
    python = os.environ.get("YOLOV5_PYTHON", sys.executable)
    ok = subprocess.run([python, "-c", "import yolov5"], capture_output=True,
                        env={**os.environ, "YOLO_OFFLINE": "1"}).returncode == 0
    return python if ok else None


def yolov7_oracle() -> list[str] | None:
    """The harness command that builds with YOLOv7 itself, when $YOLOV7_PYTHON imports the
    checkout at $YOLOV7_REPO; None otherwise."""
    python, repo = os.environ.get("YOLOV7_PYTHON"), os.environ.get("YOLOV7_REPO")
    if not python or not repo:
        return None
    ok = subprocess.run([python, "-W", "ignore", "-c", "import models.yolo"], cwd=repo,
                        capture_output=True).returncode == 0
    return [python, "-W", "ignore", str(ROOT / "benchmarks" / "yolov7_build.py"), "--repo",
            repo] if ok else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--family", choices=("yolov5", "yolov7", "ultralytics"), default="yolov5")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.family == "yolov7":
        harness = yolov7_oracle()
        cases, theirs = YOLOV7_CASES, "yolov7 Model(yaml)"
        command = (lambda yaml: [*harness, str(yaml)]) if harness else None
    elif args.family == "ultralytics":
        cases, theirs = ULTRALYTICS_CASES, "ultralytics DetectionModel"
        command = ultralytics_command()
    else:
        cases, theirs, command = CASES, "yolov5 Model(yaml)", yolov5_command()
    results = measure_cases(cases, args.repeat, theirs, command)
    print(f"median of {args.repeat} fresh processes; check at its default sizes")
    versions = [f"yolodiag {torch_version(sys.executable)}"]
    if command:  # every family's command starts with its interpreter
        their_python = command(next(iter(cases.values())))[0]
        versions.append(f"{theirs.split()[0]} {torch_version(their_python)}")
    print(f"torch: {', '.join(versions)}")
    print(f"{'model':16} {'tool':26} {'wall s':>8} {'peak MiB':>9}")
    for (name, tool), r in results.items():
        print(f"{name:16} {tool:26} {r['wall_s']:8.2f} {r['peak_rss_mib']:9.0f}")
    for name in cases:
        ours, their = results.get((name, "yolodiag check")), results.get((name, theirs))
        if ours and their:
            print(f"{name}: wall {ours['wall_s'] / their['wall_s']:.2f}x, "
                  f"memory {ours['peak_rss_mib'] / their['peak_rss_mib']:.2f}x of "
                  f"{theirs.split()[0]}'s")
    if args.json:
        args.json.write_text(json.dumps({f"{n} | {t}": r for (n, t), r in results.items()},
                                        indent=2))


def torch_version(python: str) -> str:
    """The torch version `python` imports (the two sides may differ: say so beside the times)."""
    found = subprocess.run([python, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True)
    return found.stdout.strip() or "not importable"


def ultralytics_command():
    """YAML -> the command that builds it with the real `DetectionModel` (the recipe with the
    seed's BasicBlock registered), or None unless $ULTRALYTICS_PYTHON imports ultralytics."""
    oracle = os.environ.get("ULTRALYTICS_PYTHON")
    if not oracle or subprocess.run([oracle, "-c", "import ultralytics"], capture_output=True,
                                    env={**os.environ, "YOLO_OFFLINE": "1"}).returncode:
        return None
    harness = [str(ROOT / "benchmarks" / "ultralytics_build.py")]
    # prepare the patched copy outside the timed runs
    subprocess.run([oracle, *harness, str(ULTRALYTICS_RECIPE), "--basicblock", str(BASICBLOCK),
                    "--prepare-only"], check=True)

    def command(yaml: Path) -> list[str]:
        extra = ["--basicblock", str(BASICBLOCK)] if yaml == ULTRALYTICS_RECIPE else []
        return [oracle, "-W", "ignore", *harness, str(yaml), *extra]
    return command


def yolov5_command():
    """YAML -> the command that builds it with YOLOv5 itself (the seed with BasicBlock
    registered), or None without the yolov5 package."""
    oracle = yolov5_python()
    if not oracle:
        return None
    basicblock = SHARED / "yamls" / "resnet18" / "basicblock_seed.py"
    harness = [str(ROOT / "benchmarks" / "yolov5_build.py")]
    # prepare the patched copy outside the timed runs
    subprocess.run([oracle, *harness, str(SEED), "--basicblock", str(basicblock),
                    "--prepare-only"], check=True)

    def command(yaml: Path) -> list[str]:
        extra = ["--basicblock", str(basicblock)] if yaml == SEED else []
        return [oracle, "-W", "ignore", *harness, str(yaml), *extra]
    return command


def measure_cases(cases: dict[str, Path], repeat: int, theirs: str, their_command) -> dict:
    """(case, tool) -> median wall, median peak RSS and every run, for `yolodiag check` and,
    given `their_command(yaml)`, the family's own build."""
    results = {}
    for name, yaml in cases.items():
        if not yaml.parent.is_dir():  # not the file: Ultralytics names (yolo11x.yaml) are scales
            print(f"skip {name}: {yaml.parent} not found")
            continue
        commands = {"yolodiag check": [sys.executable, "-m", "yolodiag", "check", str(yaml),
                                       "--format", "json"]}
        if their_command is not None:
            commands[theirs] = their_command(yaml)
        for tool, command in commands.items():
            runs = [measure(command) for _ in range(repeat)]
            results[(name, tool)] = {
                "wall_s": statistics.median(r[0] for r in runs),
                "peak_rss_mib": statistics.median(r[1] for r in runs),
                "runs": runs,
            }
    return results


if __name__ == "__main__":
    main()
