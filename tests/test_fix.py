"""`yolodiag fix`: every code declared fixable fixes its seeded fault (tests/examples) and the
result checks clean of it; the input's other characters survive byte for byte; a fix whose
result would raise a new error is not kept; the bundled seed comes out at strides 8/16/32."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from yolodiag import commands
from yolodiag.checks import REGISTRY
from yolodiag.cli import app
from yolodiag.findings import Edit, Fix, Severity
from yolodiag.fix.command import fix
from yolodiag.fix.engine import fix_text

runner = CliRunner()
EXAMPLES = Path(__file__).parent / "examples"
SEED = commands.BUNDLED_MODEL
FIXABLE = sorted(code for code, info in REGISTRY.items() if info.fixable != "manual")


def test_the_fixable_codes_are_the_ones_the_issue_names():
    assert FIXABLE == ["YD107", "YD109", "YD204", "YD301", "YD302", "YD309", "YD402", "YD403"]


@pytest.mark.parametrize("code", FIXABLE)
def test_every_fixable_code_fixes_its_seeded_fault(code):
    bad = EXAMPLES / code / "bad.yaml"
    report, fixed = fix(bad, unsafe=REGISTRY[code].fixable == "unsafe")
    assert [o.code for o in fixed.outcomes if o.applied] == [code]
    assert code not in {f.code for f in report.findings}
    assert bad.read_text() == fixed.original  # nothing written here


@pytest.mark.parametrize("code", FIXABLE)
def test_comments_and_blank_lines_survive_outside_the_edited_rows(code):
    bad = EXAMPLES / code / "bad.yaml"
    _, fixed = fix(bad, unsafe=True)
    before, after = fixed.original.splitlines(), fixed.text.splitlines()
    kept = [line for line in before if not line.strip() or line.lstrip().startswith("#")]
    assert [line for line in after if not line.strip() or line.lstrip().startswith("#")] == kept
    removed = [line for line in difflib.ndiff(before, after) if line.startswith("- ")]
    assert 1 <= len(removed) <= 2  # the rows (or anchor rows) the fix rewrote, no others


def test_unsafe_fixes_wait_for_unsafe():
    _, fixed = fix(EXAMPLES / "YD301" / "bad.yaml")
    assert not fixed.changed and fixed.outcomes == []
    assert any(f.code == "YD301" and f.fix.applicability == "unsafe"
               for f in fixed.report.findings)


def test_a_fix_that_would_raise_a_new_error_is_put_back(tmp_path):
    """The engine checks every candidate: here a finding carries an edit that names a module
    no table has, and the YAML stays as it was."""
    model = tmp_path / "model.yaml"
    model.write_text((EXAMPLES / "YD204" / "bad.yaml").read_text())

    def check(path):
        report = commands.check(path)
        harmful = Fix("layer 4 becomes a NoSuchBlock", (Edit("field", 4, ("module",
                                                                         "NoSuchBlock")),))
        findings = [f if f.code != "YD204" else type(f)(**{**f.__dict__, "fix": harmful})
                    for f in report.findings]
        return type(report)(**{**report.__dict__, "findings": findings})

    fixed = fix_text(model, check)
    (outcome,) = fixed.outcomes
    assert not outcome.applied and outcome.why.startswith("it would raise YD")
    assert not fixed.changed and model.read_text() == fixed.original


def test_the_bundled_seed_comes_out_at_strides_8_16_32_tapping_the_basicblocks(tmp_path):
    report, fixed = fix(SEED, unsafe=True)
    assert [o.code for o in fixed.outcomes if o.applied] == ["YD204", "YD204", "YD301"]
    out = tmp_path / "fixed.yaml"
    out.write_text(fixed.text)
    checked = commands.check(out, fail_on=Severity.WARNING)
    assert checked.model.as_dict()["detect"]["strides"] == [8, 16, 32]
    rows = yaml.safe_load(fixed.text)["head"]
    assert rows[2][0] == [-1, 7] and rows[6][0] == [-1, 5]  # layers 12 and 16: BasicBlocks
    assert checked.exit_code == 0 and {f.severity.value for f in checked.findings} == {"info"}
    changed = [line for line in difflib.unified_diff(fixed.original.splitlines(),
                                                     fixed.text.splitlines(), lineterm="")
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert len(changed) == 6  # the stem and the two taps, each a line out and a line in


def test_cli_never_writes_over_the_input_unless_asked(tmp_path):
    model = tmp_path / "seed.yaml"
    model.write_text(SEED.read_text())
    result = runner.invoke(app, ["fix", str(model), "--diff"])
    assert result.exit_code == 0 and "+   [[-1, 7], 1, Concat, [1]]" in result.stdout
    assert model.read_text() == SEED.read_text()
    result = runner.invoke(app, ["fix", str(model)])
    assert "not written" in result.stderr and model.read_text() == SEED.read_text()
    out = tmp_path / "fixed.yaml"
    result = runner.invoke(app, ["fix", str(model), "--unsafe", "-o", str(out)])
    assert result.exit_code == 0 and "Conv, [64, 6, 2, 2]" in out.read_text()
    assert model.read_text() == SEED.read_text()
    result = runner.invoke(app, ["fix", str(model), "--in-place", "--select", "YD204"])
    assert result.exit_code == 0 and "[[-1, 7], 1, Concat" in model.read_text()
    assert "[64, 1]" in model.read_text()  # the unsafe stem fix was not selected
    result = runner.invoke(app, ["fix", str(SEED), "-o", str(tmp_path / "no" / "such.yaml")])
    assert result.exit_code == 2 and "cannot write the fixed YAML" in result.stderr


@pytest.mark.parametrize("parts", [("ultralytics", "resnet18", "yolo11n-resnet18.yaml"),
                                   ("ultralytics", "resnet18", "yolov8n-resnet18.yaml"),
                                   ("yolov7", "resnet18", "yolov7-tiny-resnet18.yaml")])
def test_the_seed_recipe_of_each_dialect_is_fixed_in_its_own_style(parts):
    """Ultralytics' block-style rows (`- [...]`, a scaled name read from its family's file)
    and YOLOv7's flow rows: the same three fixes, each row rewritten where it stands."""
    from conftest import shared

    model = shared("yamls", *parts[:2]) / parts[2]
    report, fixed = fix(model, unsafe=True)
    assert sorted(o.code for o in fixed.outcomes if o.applied)[:2] == ["YD204", "YD204"]
    assert report.model.as_dict()["detect"]["strides"] == [8, 16, 32]
    assert {f.severity.value for f in report.findings} <= {"info"}
    removed = [line for line in difflib.ndiff(fixed.original.splitlines(),
                                              fixed.text.splitlines()) if line.startswith("- ")]
    assert len(removed) == 3  # the stem and the two taps


def test_picture_of_the_seed_and_the_fixed_recipe(tmp_path):
    """PNG and SVG by suffix; the SVG keeps its text: the codes and layer numbers it marks."""
    from PIL import Image

    from yolodiag.picture import model_picture

    _, fixed = fix(SEED, unsafe=True)
    (tmp_path / "fixed.yaml").write_text(fixed.text)
    for name, model in (("seed", SEED), ("fixed", tmp_path / "fixed.yaml")):
        result = runner.invoke(app, ["check", str(model), "--picture",
                                     str(tmp_path / f"{name}.png")])
        assert result.exit_code == 0, result.output
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.format == "PNG" and image.size[0] > 800 and image.size[1] > 400
        model_picture(commands.check(model), tmp_path / f"{name}.svg")
    seed_svg = (tmp_path / "seed.svg").read_text()
    assert all(f">{code}<" in seed_svg for code in ("YD204", "YD301", "YD307"))
    assert ">12<" in seed_svg and ">24<" in seed_svg and "strides 4/8/16" in seed_svg
    fixed_svg = (tmp_path / "fixed.svg").read_text()
    assert "strides 8/16/32" in fixed_svg and ">YD204<" not in fixed_svg


def test_pre_commit_hook_fails_on_the_seed_and_passes_on_the_fixed_recipe(tmp_path):
    """What `pre-commit run` does with the hook: its entry with the staged YAMLs appended,
    run in the repository; the hook fails on a non-zero exit."""
    import shlex
    import subprocess
    import sys

    (hook,) = yaml.safe_load((Path(__file__).parents[1] / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "yolodiag-check" and hook["language"] == "python"
    entry = shlex.split(hook["entry"])
    assert entry[0] == "yolodiag"
    command = [sys.executable, "-m", "yolodiag", *entry[1:]]
    _, fixed = fix(SEED, unsafe=True)
    (tmp_path / "seed.yaml").write_text(SEED.read_text())
    (tmp_path / "fixed.yaml").write_text(fixed.text)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    seed = subprocess.run([*command, "seed.yaml"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert seed.returncode == 1 and "YD301" in seed.stdout
    good = subprocess.run([*command, "fixed.yaml"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert good.returncode == 0, good.stdout[-2000:]
