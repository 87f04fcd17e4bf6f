"""`check` on Ultralytics YAMLs: how a name resolves to a file and a scale as 8.4.190 resolves it,
how a YAML is recognised as Ultralytics', the report's scale and head facts, and the findings the
seed's recipes raise (strides, taps, cost, DFL range, class prior) while every recorded stock
model and the fixed recipe raise no warning or error."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from conftest import shared
from test_ultralytics_golden import _names, model_path
from yolodiag import commands
from yolodiag.cli import app
from yolodiag.dialects import choose
from yolodiag.findings import Refused, Severity
from yolodiag.spec import load_spec

RECIPES = ("yolo11n-resnet18.yaml", "yolov8n-resnet18.yaml")


def _codes(report, *severities: Severity) -> set[str]:
    return {f.code for f in report.findings if not severities or f.severity in severities}


def _recipes():
    return shared("yamls", "ultralytics", "resnet18")


def test_a_name_with_a_scale_letter_reads_the_base_file_at_that_scale():
    spec = load_spec(_recipes() / "yolo11n-resnet18.yaml")
    assert spec.path.endswith("yolo11-resnet18.yaml")
    assert (spec.scale, spec.scale_source) == ("n", "name")
    assert (spec.depth_multiple, spec.width_multiple, spec.max_channels) == (0.5, 0.25, 1024)
    assert "YOLO11 at scale n (from the file name yolo11n-resnet18.yaml)" in spec.scale_reason


def test_a_name_without_a_letter_builds_the_first_scale_with_yd114():
    report = commands.check(_recipes() / "yolo11-resnet18.yaml")
    assert report.model.dialect["scale"]["source"] == "first"
    assert "YD114" in _codes(report, Severity.WARNING)


def test_scale_flag_overrides_the_name_and_a_missing_scale_is_refused():
    spec = load_spec(_recipes() / "yolo11n-resnet18.yaml", scale="s")
    assert (spec.scale, spec.scale_source, spec.width_multiple) == ("s", "flag", 0.5)
    with pytest.raises(Refused) as refused:
        load_spec(_recipes() / "yolo11n-resnet18.yaml", scale="q")
    assert refused.value.finding.code == "YD113"
    assert "KeyError" in refused.value.finding.message


def test_p6_alias_and_yolov5u_names_resolve_as_ultralytics_resolves_them():
    stock = shared("yamls", "ultralytics", "stock")
    assert load_spec(stock / "yolov8s6.yaml").path.endswith("yolov8-p6.yaml")
    assert load_spec(stock / "yolov8s6.yaml").scale == "s"
    assert load_spec(stock / "yolov5nu.yaml").path.endswith("yolov5.yaml")


def test_max_channels_caps_the_stock_l_rows_as_information():
    report = commands.check(shared("yamls", "ultralytics", "stock") / "yolov8l.yaml")
    caps = [f for f in report.findings if f.code == "YD115"]
    assert [f.severity for f in caps] == [Severity.INFO]
    assert "build 512 channels" in caps[0].message


@pytest.mark.parametrize("path", ["stock/yolo11.yaml", "stock/yolov8.yaml", "stock/yolo26.yaml",
                                  "resnet18/yolo11-resnet18.yaml"])
def test_ultralytics_yamls_are_claimed_by_their_scales_table(path):
    data = yaml.safe_load((shared("yamls", "ultralytics") / path).read_text())
    assert choose(data).dialect.name == "ultralytics"
    del data["scales"]  # no scales, no anchors, Detect given [nc]: still Ultralytics'
    assert choose(data).dialect.name == "ultralytics"


def test_yolov5_yamls_stay_yolov5s():
    for path in sorted(shared("yamls", "stock").glob("*.yaml")):
        assert choose(yaml.safe_load(path.read_text())).dialect.name == "yolov5", path.name


def test_the_json_report_carries_the_dialect_scale_and_head_facts():
    result = CliRunner().invoke(app, ["check", str(_recipes() / "yolo11n-resnet18.yaml"),
                                      "-f", "json"])
    model = json.loads(result.stdout)["model"]
    assert model["dialect"]["name"] == "ultralytics"
    assert model["dialect"]["scale"]["letter"] == "n"
    assert model["detect"]["strides"] == [4, 8, 16]
    assert (model["detect"]["reg_max"], model["detect"]["legacy"]) == (16, False)
    assert model["detect"]["anchors_grid"] is None


@pytest.mark.parametrize("name", RECIPES)
def test_the_seed_recipes_raise_the_stride_tap_cost_dfl_and_prior_findings(name):
    report = commands.check(_recipes() / name)
    assert {"YD204", "YD307", "YD309", "YD310"} <= _codes(report, Severity.WARNING)
    by_code = {f.code: f for f in report.findings}
    assert "4/8/16" in by_code["YD309"].message and "stride-1 stem" in by_code["YD309"].message
    assert "480 px" in by_code["YD310"].message
    assert by_code["YD311"].severity is Severity.INFO  # nc 80: below conf at stock strides too


def test_at_nc_4_the_recipe_prior_is_a_warning_with_its_value():
    report = commands.check(_recipes() / "yolo11n-resnet18.yaml", nc=4)
    prior = next(f for f in report.findings if f.code == "YD311")
    assert prior.severity is Severity.WARNING
    assert "7.8e-04" in prior.message and "3.1e-03" in prior.message


@pytest.mark.parametrize("name", [n for n in _names()
                                  if "resnet18" not in n or "fixed" in n])
def test_stock_models_and_the_fixed_recipe_raise_no_warning_or_error(name):
    report = commands.check(model_path(name))
    assert sorted(_codes(report, Severity.WARNING, Severity.ERROR)) == []
