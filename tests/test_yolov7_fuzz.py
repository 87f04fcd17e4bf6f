"""Fuzz `yolodiag check` with mutated stock YOLOv7 YAMLs: whatever the YAML, never an internal
error.

The rules, mutations and contract are test_fuzz.py's (imported, not repeated): 1-3 mutations of
the parsed YAML, written back with yaml.safe_dump, the CLI run in process; exit 0, 1 or 2, no
traceback, a JSON report on 0 or 1, one stderr line on 2. What differs is the vocabulary: the
seeds are YOLOv7's (a207844) own stock YAMLs, one of each kind of head and block family, and
the module names and argument strings drawn are the ones YOLOv7's YAMLs use (SPPCSPC, MP,
RepConv, IDetect, IAuxDetect, DownC, ReOrg, the CSP variants, activations written as calls), so
that the mutants stay YOLOv7's and reach its builder, heads and trace.

Derandomized with no example database: every run tries the same 350 inputs (YOLOv5's 400
scaled to keep the file under a minute: these seeds are larger). A 1,500-example random run
found nothing either. Inputs it found that
broke the contract are minimised into tests/data/fuzz-found-*.yaml, the corpus test_fuzz.py
replays.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from conftest import shared
from test_fuzz import assert_handled, mutant_is_handled, numbers, odd_scalars, texts

pytest.importorskip("hypothesis", reason="needs the test extra: pip install -e .[test]")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# Small to mid-sized stock models, each a different head or block family: IDetect with LeakyReLU
# (tiny), RepConv and SPPCSPC (yolov7), plain Detect with SiLU (deploy tiny), the CSP baseline
# (yolor-csp), and the P6 model with ReOrg, DownC and IAuxDetect (w6).
SEEDS = ("training/yolov7-tiny.yaml", "training/yolov7.yaml", "deploy/yolov7-tiny-silu.yaml",
         "baseline/yolor-csp.yaml", "training/yolov7-w6.yaml")
MODULES = ("Conv", "RepConv", "SPPCSPC", "MP", "SP", "Concat", "nn.Upsample", "IDetect",
           "IAuxDetect", "Detect", "DownC", "ReOrg", "Shortcut", "BottleneckCSPA",
           "BottleneckCSPB", "BottleneckCSPC", "ResCSPB", "ResXCSPC", "Bottleneck", "Stem", "SPP",
           "ImplicitA", "ImplicitM", "nn.Conv2d", "nn.BatchNorm2d", "C3", "RepCnov")
STRINGS = ("nc", "anchors", "None", "nearest", "nn.LeakyReLU(0.1)", "nn.SiLU()", "nn.ReLU()",
           "nn.LeakyReLU(negative_slope=0.2)", "nn.LeakyReLU(0.1", "nn.Hardswish()", "True",
           "ch", "", "1e3", "__import__('os')", "lambda: 0")

EXAMPLES = 350
module_names = st.one_of(st.sampled_from(MODULES), texts)
arg_values = st.one_of(numbers, st.one_of(st.sampled_from(STRINGS), texts), odd_scalars,
                       st.lists(st.integers(-2, 64), max_size=4))


@pytest.fixture(scope="module")
def seeds() -> dict[str, str]:
    folder = shared("yamls", "yolov7", "stock")
    return {name: (folder / name).read_text(encoding="utf-8") for name in SEEDS}


def test_unmutated_seeds_are_read_as_yolov7_and_pass(seeds: dict[str, str]):
    """The starting points are YOLOv7's and clean, so a finding in a mutant is the mutation's."""
    for name, text in seeds.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            path.write_text(text, encoding="utf-8")
            report = assert_handled(path)
        assert report["dialect"]["name"] == "yolov7", name
        assert report["exit_code"] == 0 and report["model"]["detect"] is not None, name


# No shrinking, as in test_fuzz.py: the note prints the failing YAML to minimise by hand.
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_stock_yolov7_yaml_never_crashes_yolodiag(seeds: dict[str, str],
                                                         data: st.DataObject):
    mutant_is_handled(data, seeds, SEEDS, module_names, arg_values)
