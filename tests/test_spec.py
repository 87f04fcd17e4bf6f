"""spec: YAML text -> ModelSpec, names through closed tables only, refusals with codes."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY, write_yaml
from yolodiag.findings import Refused
from yolodiag.spec import Activation, Symbol, load_spec, parse_spec


def refused(text: str) -> Refused:
    with pytest.raises(Refused) as info:
        parse_spec(text, "m.yaml")
    return info.value


def test_tiny_model_rows_keep_section_line_and_resolved_args():
    spec = parse_spec(TINY, "m.yaml")
    assert (spec.nc, spec.depth_multiple, spec.width_multiple, spec.na) == (2, 1.0, 1.0, 3)
    assert spec.anchors == ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119))
    assert [layer.section for layer in spec.layers] == ["backbone"] * 5 + ["head"] * 4
    assert [layer.line for layer in spec.layers] == [8, 9, 10, 11, 12, 15, 16, 17, 18]
    assert spec.layers[5].args == (None, 2, "nearest")
    assert spec.layers[6].from_ == (-1, 3)
    assert spec.layers[8].args == (Symbol("nc"), Symbol("anchors"))


def test_torch_nn_prefix_is_the_same_module_as_nn():
    spec = parse_spec(TINY.replace("nn.Upsample", "torch.nn.Upsample"))
    assert spec.layers[5].module == "nn.Upsample"


@pytest.mark.parametrize("text, expected", [
    ("nn.LeakyReLU(0.1)", Activation("LeakyReLU", (0.1,))),
    ("nn.SiLU()", Activation("SiLU")),
    ("torch.nn.ReLU(inplace=True)", Activation("ReLU", (), (("inplace", True),))),
    ("nn.ELU(alpha=1.5)", Activation("ELU", (), (("alpha", 1.5),))),
])
def test_activation_grammar_parses_known_calls(text, expected):
    spec = parse_spec(f"activation: {text}\n" + TINY)
    assert spec.activation == expected


def test_activation_round_trips_to_its_text():
    assert str(Activation("LeakyReLU", (0.1,))) == "nn.LeakyReLU(0.1)"


@pytest.mark.parametrize("text", [
    "nn.LeakyReLU", "nn.Foo()", "__import__('os').system('true')", "nn.ReLU(x)",
    "nn.LeakyReLU(0.1 + 0.2)",
])
def test_activation_outside_the_grammar_is_unsafe_expression(text):
    assert refused(f"activation: \"{text}\"\n" + TINY).finding.code == "YD105"


def test_string_arguments_resolve_through_closed_tables():
    spec = parse_spec(TINY.replace("[None, 2, 'nearest']", "['None', '2', 'bilinear']")
                      .replace("[64, 1, 1]", "[64, 1, 1, None, 1, 1, 'nn.ReLU()']"))
    assert spec.layers[5].args == (None, 2, "bilinear")
    assert spec.layers[7].args[-1] == Activation("ReLU")


def test_nested_strings_are_not_evaluated_and_pass_through():
    spec = parse_spec(TINY.replace("[None, 2, 'nearest']", "[None, 2, 'nearest', ['nc']]"))
    assert spec.layers[5].args[-1] == ("nc",)


@pytest.mark.parametrize("arg", [
    "\"__import__('os').system('touch pwned')\"", "'nc * 2'", "'print'", "'open'",
])
def test_expression_arguments_are_refused_as_unsafe(arg):
    error = refused(TINY.replace("[64, 1, 1]", f"[{arg}, 1, 1]"))
    assert error.finding.code == "YD105"
    assert (error.finding.location.layer, error.finding.location.line) == (7, 17)


def test_expression_as_module_name_is_unsafe_not_unknown():
    error = refused(TINY.replace("Conv, [64, 1, 1]", "\"__import__('os').getcwd\", [64, 1, 1]"))
    assert error.finding.code == "YD105"


def test_unknown_module_suggests_close_names():
    error = refused(TINY.replace("Conv, [64, 1, 1]", "Cnov, [64, 1, 1]"))
    assert error.finding.code == "YD103"
    assert "Conv" in error.finding.hint
    assert error.finding.location.layer == 7


@pytest.mark.parametrize("edit, line", [
    (("[[7, 4], 1, Detect", "[[9, 4], 1, Detect"), 18),  # points forward
    (("[[7, 4], 1, Detect", "[[8, 4], 1, Detect"), 18),  # points to itself
    (("[[-1, 3], 1, Concat", "[[-1, -8], 1, Concat"), 16),  # before layer 0
])
def test_bad_from_index_names_the_row(edit, line):
    error = refused(TINY.replace(*edit))
    assert error.finding.code == "YD104"
    assert error.finding.location.line == line


@pytest.mark.parametrize("edit", [
    ("[-1, 1, Conv, [64, 3, 2]]", "[-1, 1, Conv]"),  # three fields
    ("[-1, 1, Conv, [64, 3, 2]]", "[-1, 0, Conv, [64, 3, 2]]"),  # number 0
    ("[-1, 1, Conv, [64, 3, 2]]", "[-1, 1, Conv, 64]"),  # args not a list
    ("[-1, 1, Conv, [64, 3, 2]]", "[x, 1, Conv, [64, 3, 2]]"),  # from not an int
    ("[-1, 1, Conv, [64, 3, 2]]", "[-1, 1, 7, [64, 3, 2]]"),  # module not a name
])
def test_malformed_rows_are_refused(edit):
    error = refused(TINY.replace(*edit))
    assert error.finding.code == "YD102"
    assert error.finding.location.layer == 3


@pytest.mark.parametrize("key", ["nc", "depth_multiple", "width_multiple", "anchors", "backbone",
                                 "head"])
def test_missing_required_key(key):
    error = refused(TINY.replace(f"{key}:", f"{key}_renamed:"))
    assert error.finding.code == "YD101"
    assert f"`{key}`" in error.finding.message


def test_wrong_typed_key_names_its_line():
    error = refused(TINY.replace("nc: 2", "nc: two"))
    assert (error.finding.code, error.finding.location.line) == ("YD101", 1)


def test_yaml_syntax_error_names_line_and_column():
    error = refused(TINY.replace("[-1, 1, Conv, [32, 3, 2]],", "[-1, 1, Conv, [32, 3, 2],,"))
    assert error.finding.code == "YD100"
    assert error.finding.location.line is not None


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "42\n"])
def test_document_that_is_not_a_mapping(text):
    assert refused(text).finding.code == "YD100"


def test_python_object_tags_are_refused_not_constructed(tmp_path):
    marker = tmp_path / "pwned"
    tag = f"!!python/object/apply:os.system ['touch {marker}']"
    error = refused(TINY.replace("nc: 2", f"nc: {tag}"))
    assert error.finding.code == "YD100" and error.finding.location.line == 1
    assert not marker.exists()


def test_unreadable_file(tmp_path):
    """(A file that is not UTF-8 is no longer refused: YOLOv5 reads it as ASCII, see
    test_a_byte_of_another_encoding_is_dropped_too.)"""
    with pytest.raises(Refused) as info:
        load_spec(tmp_path / "missing.yaml")
    assert info.value.finding.code == "YD100"


def test_error_line_names_file_line_and_layer(tmp_path):
    path = write_yaml(tmp_path, TINY.replace("Conv, [64, 1, 1]", "Conv2, [64, 1, 1]"))
    with pytest.raises(Refused) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}:17: layer 7 (head): YD103")


def test_spec_stage_does_not_import_torch():
    code = ("import sys; from yolodiag.spec import parse_spec; import conftest; "
            "parse_spec(conftest.TINY); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=__file__.rsplit("/", 1)[0], check=True)
    assert out.stdout.strip() == "False"


def test_characters_outside_ascii_are_dropped_as_yolov5_reads_the_yaml(tmp_path):
    """YOLOv5 opens a model YAML as ASCII with errors ignored: no-break spaces in the
    indentation and a full-width comment (a YAML pasted from a web page) build exactly as the
    same YAML without them, and YD112 names the first line where characters were dropped."""
    from yolodiag import commands
    from yolodiag.build.builder import build

    examples = Path(__file__).parent / "examples" / "YD112"
    pasted, plain = load_spec(examples / "bad.yaml"), load_spec(examples / "good.yaml")
    assert "\u00a0" in (examples / "bad.yaml").read_text(encoding="utf-8")
    assert pasted.dropped is not None and plain.dropped is None
    assert (pasted.dropped.first_line, pasted.dropped.lines) == (5, 3)
    assert pasted.dropped.first_name == "U+00A0 NO-BREAK SPACE" and pasted.dropped.changes_data
    assert dataclasses.replace(pasted, path=plain.path, dropped=None) == plain
    a, b = build(pasted, device="meta"), build(plain, device="meta")
    assert [(r.module, r.from_, r.args, r.params, r.line) for r in a.layers] == [
        (r.module, r.from_, r.args, r.params, r.line) for r in b.layers]
    report = commands.check(examples / "bad.yaml")
    found = [f for f in report.findings if f.code == "YD112"]
    assert [f.location.line for f in found] == [5] and report.exit_code == 0
    assert not [f for f in commands.check(examples / "good.yaml").findings if f.code == "YD112"]


def test_a_byte_of_another_encoding_is_dropped_too(tmp_path):
    from yolodiag import commands

    text = TINY.replace("nc: 2", "nc: 2  # caf\xe9")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(text.encode("latin-1"))
    spec = load_spec(path)
    assert spec.nc == 2 and spec.dropped.first_name == "a byte that is not UTF-8"
    assert not spec.dropped.changes_data  # in a comment only: no YD112 (nor for the rocket
    # in every stock YAML's first comment)
    assert "YD112" not in [f.code for f in commands.check(path).findings]
    assert dataclasses.replace(spec, dropped=None, path="m.yaml") == parse_spec(TINY, "m.yaml")
