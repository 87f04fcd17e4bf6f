"""Community YOLOv7 YAMLs (../shared/yamls/yolov7/community), checked as their repositories built
them.

Each YAML comes with the verbatim source of its own blocks (`.modules.py`) and, in INDEX.md, what
stock YOLOv7 (a207844) built once those blocks were added and registered as the repository's
parse_model registers them. That registration is transcribed below as rules for `--rule`, and
`yolodiag check` runs in a subprocess as a user would run it: where INDEX says the model built,
our head class, parameter count and Detect strides equal INDEX's; where it failed, the exit is 1
with a build failure naming the layer and INDEX's cause; never exit 3, never a traceback. Other
people's code: read from ../shared, never copied into the repository (marker `community`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, shared

FOLDER = ("yamls", "yolov7", "community")

# INDEX.md's "Registered in repo's parse_model", as rules. Not registered means YOLOv7's
# fallback: the YAML's arguments passed raw, the output width taken to be the input's.
REGISTERED = {
    "Gameness-czz__YOLOv7-CTA__yolov7_CBAM": {"CBAM": "channels"},  # not in the repeat list
    "zongbaoshu__DGS-Yolov7-Tiny__yolov7-tiny-DGS": {"DGSConv": "passthrough",
                                                     "GlobalAttentionModule": "passthrough"},
}


def community_rows() -> list[dict]:
    """INDEX's table: file, what the registered build did, and the strides it measured."""
    index = shared(*FOLDER, "INDEX.md").read_text(encoding="utf-8")
    rows = []
    for line in index.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 13 and cells[0].isdigit():
            rows.append({"file": cells[2].strip("`").split("/")[-1].strip("`…"),
                         "build": cells[9], "strides": cells[10]})
    return rows


def _stem(row: dict) -> str:
    return row["file"].removesuffix(".yaml")


def _built(row: dict) -> dict | None:
    """INDEX's "BUILDS, 38,824,238 params, IDetect, nc=15" as numbers; None for a failure."""
    found = re.match(r"BUILDS, ([\d,]+) params, (?:plain )?`?(\w+)`?", row["build"])
    if found is None:
        return None
    return {"params": int(found.group(1).replace(",", "")), "head": found.group(2),
            "strides": [int(s) for s in row["strides"].split("/")]}


def _check(row: dict, rules: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`yolodiag check` on a row's YAML with its blocks, under `rules` (default: INDEX's)."""
    folder = shared(*FOLDER)
    args = [sys.executable, "-m", "yolodiag", "check", str(folder / row["file"]), "--img", "640",
            "-f", "json", "--modules", str(folder / f"{_stem(row)}.modules.py")]
    for name, rule in (REGISTERED[_stem(row)] if rules is None else rules).items():
        args += ["--rule", f"{name}={rule}"]
    path = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    return subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": path})


@pytest.mark.community
def test_every_index_row_has_its_registration_transcribed():
    stems = [_stem(row) for row in community_rows()]
    assert stems and sorted(stems) == sorted(REGISTERED)


@pytest.mark.community
@pytest.mark.parametrize("stem", sorted(REGISTERED))
def test_community_yolov7_yaml_checks_as_its_repository_built_it(stem):
    row = next((r for r in community_rows() if _stem(r) == stem), None)
    if row is None:
        pytest.skip(f"{stem} is not in this INDEX.md")
    done = _check(row)
    assert done.returncode in (0, 1, 2), done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    expected = _built(row)
    if done.returncode == 2:  # refused: one line naming the YAML's line and the code
        assert expected is None, done.stderr
        assert re.search(r"\.yaml:\d+: .*YD1\d\d ", done.stderr), done.stderr
        return
    report = json.loads(done.stdout)
    assert report["dialect"]["name"] == "yolov7"
    if expected is not None:
        messages = [f["message"] for f in report["findings"]]
        assert done.returncode == 0, messages
        detect = report["model"]["detect"]
        assert detect is not None, messages
        assert detect["strides"] == expected["strides"]
        assert report["model"]["params"] == expected["params"]
        head = report["model"]["layers"][detect["layer"]]["module"]
        assert head == expected["head"]
        return
    failed = [f for f in report["findings"] if f["code"] == "YD202"]
    assert done.returncode == 1 and failed, report["findings"]
    assert failed[0]["location"]["layer"] is not None
    cause = row["build"].split("`")[1]
    assert cause in failed[0]["message"], (cause, failed[0]["message"])


@pytest.mark.community
def test_dgs_blocks_checked_without_their_registration_say_to_declare_them_passthrough():
    """Without --rule, DGSConv(c1, c2, ...) is assumed channel-aware from its signature; its
    rows spell out both widths as for YOLOv7's fallback, so the model checked is not the one
    YOLOv7 built: the warning says so and what to declare."""
    row = next(r for r in community_rows() if _stem(r).endswith("yolov7-tiny-DGS"))
    done = _check(row, rules={})
    assert done.returncode in (0, 1) and "Traceback" not in done.stderr, done.stderr
    warned = [f for f in json.loads(done.stdout)["findings"] if f["code"] == "YD106"]
    assert [(f["severity"], f["data"]["module"], f["location"]["layer"]) for f in warned] == [
        ("warning", "DGSConv", 11)]
    assert "DGSConv(64, 64, 3, 1) is checked as DGSConv(64, 64, 64, 3, 1)" in warned[0]["message"]
    assert "--rule DGSConv=passthrough" in warned[0]["hint"]
