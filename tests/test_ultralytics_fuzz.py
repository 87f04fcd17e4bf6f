"""Fuzz `yolodiag check` with mutated stock Ultralytics YAMLs: whatever the YAML, never an
internal error.

The row mutations, the YAML writer and the contract are test_fuzz.py's (imported, not
repeated): exit 0, 1 or 2, no traceback, a JSON report on 0 or 1, one stderr line on 2. What
Ultralytics adds is mutated here: its `scales` table (a row's numbers, a row's length, the
letters themselves, the table gone or not a mapping), the scale letter the file name carries
(one the table lacks included), and the top-level keys its parse_model and heads read
(`reg_max`, `end2end`, `activation`). The seeds are its own stock YAMLs, one of each head and
block family (C2f, C3k2 and C2PSA, A2C2f, YOLO26's one-bin end-to-end head, v10Detect, the v9
ELAN blocks, the ghost P2 model), and the ResNet-18 recipe; the module names and strings drawn
are the ones Ultralytics YAMLs use, so that the mutants reach its rules, builder and heads.

Derandomized with no example database: every run tries the same 40 inputs.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import shared
from test_fuzz import assert_handled, dump, mutate, numbers, odd_scalars, texts

pytest.importorskip("hypothesis", reason="needs the test extra: pip install -e .[test]")
from hypothesis import HealthCheck, Phase, given, note, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SEEDS = ("stock/yolov8.yaml", "stock/yolo11.yaml", "stock/yolo12.yaml", "stock/yolo26.yaml",
         "stock/yolov10n.yaml", "stock/yolov9t.yaml", "stock/yolov8-ghost-p2.yaml",
         "resnet18/yolo11-resnet18.yaml")
MODULES = ("Conv", "C2f", "C3k2", "SPPF", "C2PSA", "A2C2f", "Concat", "nn.Upsample", "Detect",
           "v10Detect", "SCDown", "PSA", "C2fCIB", "RepNCSPELAN4", "ADown", "ELAN1", "SPPELAN",
           "AConv", "CBLinear", "CBFuse", "GhostConv", "C3Ghost", "DWConv", "ResNetLayer",
           "Bottleneck", "nn.Conv2d", "nn.BatchNorm2d", "C3k2x")
STRINGS = ("nc", "None", "nearest", "True", "False", "nn.SiLU()", "nn.ReLU()", "reg_max",
           "end2end", "ch", "", "1e3", "__import__('os')", "lambda: 0", "nn.SiLU(")
# The names the file is written under: no letter (the first scale), letters the stock tables
# have, and one they lack.
FILE_NAMES = ("mutant.yaml", "yolo11n.yaml", "yolov8s.yaml", "yolo26q.yaml", "yolov10x.yaml")
LETTERS = ("n", "s", "m", "l", "x", "q", "N", "", "nano")

EXAMPLES = 40
module_names = st.one_of(st.sampled_from(MODULES), texts)
arg_values = st.one_of(numbers, st.one_of(st.sampled_from(STRINGS), texts), odd_scalars,
                       st.lists(st.integers(-2, 64), max_size=4))
scale_numbers = st.one_of(st.sampled_from([0.33, 0.25, 1.0, 1024, 512]), numbers, odd_scalars)
scale_rows = st.one_of(st.lists(scale_numbers, max_size=4), odd_scalars)
option_values = {
    "reg_max": st.one_of(st.sampled_from([1, 16, 0, -1, 2.5, True, "16", 64]), odd_scalars),
    "end2end": st.one_of(st.sampled_from([True, False, "True", 1, 0]), odd_scalars),
    "activation": st.one_of(st.sampled_from(["nn.SiLU()", "nn.ReLU()", "nn.LeakyReLU(0.1)",
                                             "torch.nn.ReLU()", "nn.Foo()", "nn.SiLU("]),
                            texts, odd_scalars),
}


def mutate_scaling(data: st.DataObject, model: dict) -> str:
    """One mutation of what Ultralytics scales and configures a model by, in place."""
    kind = data.draw(st.sampled_from(("scale_number", "scale_row", "scale_letter",
                                      "drop_scale", "scales", "option")), label="ul mutation")
    scales = model.get("scales")
    letters = list(scales) if isinstance(scales, dict) else []
    if kind == "option":
        key = data.draw(st.sampled_from(sorted(option_values)), label="option")
        model[key] = data.draw(option_values[key], label=key)
    elif kind == "scales" or not letters:
        model["scales"] = data.draw(st.one_of(odd_scalars, st.just({})), label="scales")
        return "scales"
    elif kind == "scale_number":
        row = scales[data.draw(st.sampled_from(letters), label="letter")]
        if not (isinstance(row, list) and row):
            return f"{kind} (nothing to mutate)"
        row[data.draw(st.integers(0, len(row) - 1), label="at")] = data.draw(scale_numbers)
    elif kind == "scale_row":
        scales[data.draw(st.sampled_from(letters), label="letter")] = data.draw(scale_rows)
    elif kind == "scale_letter":
        old = data.draw(st.sampled_from(letters), label="letter")
        new = data.draw(st.one_of(st.sampled_from(LETTERS), texts, st.integers(0, 3)),
                        label="new letter")
        scales[new] = scales.pop(old)
    else:
        del scales[data.draw(st.sampled_from(letters), label="dropped letter")]
    return kind


@pytest.fixture(scope="module")
def seeds() -> dict[str, str]:
    folder = shared("yamls", "ultralytics")
    return {name: (folder / name).read_text(encoding="utf-8") for name in SEEDS}


def test_unmutated_seeds_are_read_as_ultralytics_and_pass(seeds: dict[str, str]):
    """The starting points are Ultralytics' and clean, so a finding in a mutant is the
    mutation's."""
    for name, text in seeds.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            path.write_text(text, encoding="utf-8")
            report = assert_handled(path)
        assert report["dialect"]["name"] == "ultralytics", name
        assert report["exit_code"] == 0 and report["model"]["detect"] is not None, name


# No shrinking, as in test_fuzz.py: the note prints the failing YAML to minimise by hand.
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_stock_ultralytics_yaml_never_crashes_yolodiag(seeds: dict[str, str],
                                                              data: st.DataObject):
    seed = data.draw(st.sampled_from(SEEDS), label="seed")
    model: Any = yaml.safe_load(seeds[seed])
    done = [mutate_scaling(data, model) if data.draw(st.booleans(), label="scaling")
            else mutate(data, model, module_names, arg_values)
            for _ in range(data.draw(st.integers(1, 3), label="mutations"))]
    name = data.draw(st.sampled_from(FILE_NAMES), label="file name")
    text = dump(model)
    assert json.dumps(yaml.safe_load(text)) == json.dumps(model), "the test's own YAML writer"
    note(f"{seed} as {name} after {done}:\n{text}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        assert_handled(path)
