"""Community Ultralytics YAMLs (../shared/yamls/ultralytics/community), checked as their
repositories built them.

Each YAML comes with the verbatim source of its own blocks (`.modules.py`) and, in builds.json,
what the real ultralytics 8.4.190 did with it once those blocks were registered the way the
repository registers them: built under the repository's file name (its scale: the first of
`scales`, the name having no letter) and again at scale s. Each registration is transcribed
below as a `--rule`, and `yolodiag check` runs as a user would run it (--modules, --rule,
--scale). Where the real build succeeded, our scale, parameter count and Detect strides equal
the recorded ones; where it failed, a build failure names the layer that failed and the report
shows its cause: the layer was built for the width the real exception's weight expects, and
its inputs carry the width that exception received. Never exit 3, never a traceback. Other
people's code: read from ../shared, never copied into the repository (marker `community`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import shared
from yolodiag.cli import app

FOLDER = ("yamls", "ultralytics", "community")

# builds.json's "register", as our rules:
# - BiFPN_Concat has a branch of its own, `c2 = max(ch[x] for x in f)` with the YAML's
#   arguments passed raw: concat-max.
# - CBAM is put into tasks' globals, so parse_model's fallback (raw arguments, c2 = ch[f])
#   applies: passthrough.
# - C2fHeat joins the channel-completion and the repeat-insertion sets: channels+repeats.
# - MHSA's branch `args = [ch[f], *args]` leaves c2 at the previous row's width; its one row
#   reads `from: -1`, where that is its input width: input.
REGISTERED = {
    "truongan-2704__yolov8-bifpn-v2__yolov8-bifpn": {"BiFPN_Concat": "concat-max"},
    "lisanndesu__YOLO11-CBAM-Fog-Detection__yolo11_2cbam": {"CBAM": "passthrough"},
    "MkmCv__YOLO12-vHeat__yolov12": {"C2fHeat": "channels+repeats"},
    "Huang-yican__yolo_efficientvit__att_yolov8": {"MHSA": "input"},
}

# The layer each recorded failure happens in, read off its exception and the YAML: bifpn at n,
# a [64, 64, 1, 1] weight fed 32 channels at 16x16 (stride 16 of the 256 probe) is the
# BiFPN_Concat(64, 64) at layer 12 (the other stride-16 one, layer 26, is (32, 32)); CBAM at s,
# a [4, 64, 1, 1] weight (64 channels reduced 16-fold) fed 128 is the first CBAM(64), layer 17.
FAILING_LAYER = {
    ("truongan-2704__yolov8-bifpn-v2__yolov8-bifpn", "name"): 12,
    ("lisanndesu__YOLO11-CBAM-Fog-Detection__yolo11_2cbam", "s"): 17,
}
CONV_MISMATCH = re.compile(r"weight of size \[\d+, (\d+), .*expected input\[\d+, (\d+),")

runner = CliRunner()


def recorded_builds() -> list[tuple[str, dict]]:
    """(stem, one recorded build) for every YAML of builds.json and both of its scales."""
    entries = json.loads(shared(*FOLDER, "builds.json").read_text(encoding="utf-8"))
    return [(entry["file"].removesuffix(".yaml"), build) for entry in entries
            for build in entry["builds"]]


def _check(stem: str, scale: str, output: Path) -> tuple[int, str]:
    """`yolodiag check` on a YAML with its blocks and its repository's registration, the JSON
    report written to `output` (the blocks print to stdout while they are built)."""
    folder = shared(*FOLDER)
    args = ["check", str(folder / f"{stem}.yaml"), "--img", "640", "-f", "json", "-o",
            str(output), "--modules", str(folder / f"{stem}.modules.py")]
    for name, rule in REGISTERED[stem].items():
        args += ["--rule", f"{name}={rule}"]
    if scale != "name":
        args += ["--scale", scale]
    result = runner.invoke(app, args)
    text = result.stdout + getattr(result, "stderr", "")
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                     SystemExit), text
    return result.exit_code, text


@pytest.mark.community
def test_every_recorded_yaml_has_its_registration_transcribed():
    stems = {stem for stem, _ in recorded_builds()}
    assert stems and stems == set(REGISTERED)
    assert {(stem, b["scale_requested"]) for stem, b in recorded_builds()
            if b["result"] == "FAILS"} == set(FAILING_LAYER)


@pytest.mark.community
@pytest.mark.parametrize("stem, build", recorded_builds(),
                         ids=lambda v: v if isinstance(v, str) else v["scale_requested"])
def test_community_ultralytics_yaml_checks_as_its_repository_built_it(stem, build, tmp_path):
    code, output = _check(stem, build["scale_requested"], tmp_path / "report.json")
    assert code in (0, 1) and "Traceback" not in output, output
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    model = report["model"]
    scale = model["dialect"]["scale"]
    assert report["dialect"]["name"] == "ultralytics"
    assert scale["letter"] == build["scale_used"]
    assert [scale["depth_multiple"], scale["width_multiple"],
            scale["max_channels"]] == build["depth_width_max"]
    findings = report["findings"]
    if build["result"] == "BUILDS":
        assert code == 0, [f["message"] for f in findings if f["severity"] == "error"]
        assert model["detect"]["strides"] == build["strides"]
        assert model["params"] == build["params"]
        assert len(model["layers"]) == build["layers"]
        return
    layer = FAILING_LAYER[stem, build["scale_requested"]]
    failed = [f for f in findings if f["code"] == "YD202"]
    assert code == 1 and [f["location"]["layer"] for f in failed] == [layer], findings
    # The meta trace words a channel mismatch as the CPU kernel does: the real probe's message.
    assert failed[0]["data"]["error"] == build["exception"]
    assert failed[0]["data"]["operation"] == "conv2d"
    built_for, received = (int(w) for w in CONV_MISMATCH.search(build["exception"]).groups())
    row = model["layers"][layer]
    assert row["args"][0] == built_for
    inputs = row["from"] if isinstance(row["from"], list) else [row["from"]]
    assert {model["layers"][layer + f if f < 0 else f]["out_shape"][1]
            for f in inputs} == {received}


@pytest.mark.community
def test_a_block_that_prints_while_built_leaves_the_json_on_stdout_whole():
    """CBAM prints a banner from its constructor: progress, sent to stderr, not into the
    report a CI job parses from stdout."""
    stem = "lisanndesu__YOLO11-CBAM-Fog-Detection__yolo11_2cbam"
    folder = shared(*FOLDER)
    out = subprocess.run(
        [sys.executable, "-m", "yolodiag", "check", str(folder / f"{stem}.yaml"), "--img",
         "640", "-f", "json", "--modules", str(folder / f"{stem}.modules.py"), "--rule",
         "CBAM=passthrough"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr  # at the name's scale (n) it builds
    report = json.loads(out.stdout)
    assert report["dialect"]["name"] == "ultralytics"
    assert "using   NoAvg_Dilated   CBAM" in out.stderr
