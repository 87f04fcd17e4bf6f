"""--modules FILE.py and --rule: the user's own blocks, analysed as they are.

The community set (../shared/yamls/community) holds 18 real YAMLs with the verbatim source of
their blocks and, in INDEX.md, what happened when each was built with its own repository's
YOLOv5 code. Each is checked here with the rules its repository's parse_model applied (INDEX's
"Registered" column, transcribed below): where INDEX says it built, our Detect strides equal
INDEX's; where it failed, yolodiag exits 1 or 2 with a finding naming the layer and the cause.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import TINY, shared, write_yaml
from yolodiag.cli import app
from yolodiag.findings import Unsupported
from yolodiag.usermodules import RuleSource, load_modules

runner = CliRunner()

# INDEX.md's "Registered in repo's parse_model", as rules. Dedicated branches that none of the
# named rules mirrors are written as a rule function (SE's: c1 replaces args[0]).
SE_BRANCH = '''
def se_branch(r):
    return [r.ch[r.from_], *r.args[1:]], make_divisible(r.args[0] * r.width_multiple, 8)

YOLODIAG_RULES = {"SE": se_branch}
'''
REGISTERED = {
    "pr8156__yolov5s-mobilenetv3": {"Conv3BN": "channels", "InvertedResidual": "channels"},
    "pr11328__yolov5s": {"SE_Block": "channels+repeats"},
    "pr13255__yolov5s_CBAM": {"CBAM": "input"},  # branch: args = [c1, args[0]]
    "pr4810__yolov5s_bifpn": {"Concat_bifpn": "concat-max", "C3": "channels+repeats"},
    "pr13664__yolov5s": {},
    "pr9597__yolov5s_dhead": {"Decoupled_Detect": "detect"},
    "pr6362__4off1": dict.fromkeys(("C3_1", "C3_17", "C3_2", "C3_4", "C3_6", "Conv_1", "SPP_8"),
                                   "passthrough"),
    "v5Lite-s": {"Shuffle_Block": "channels", "conv_bn_relu_maxpool": "channels"},
    "yolov5-efficient-lite0": {"MBConvBlock": "channels", "stem": "channels"},
    "yolov5_resnet50_vd": {"ResNet50vd": "out=args0"},
    "yolov5_mobilenet": dict.fromkeys(("MobileNet1", "MobileNet2", "MobileNet3"), "out=args0"),
    "yolov5l-mobilenetv3s": {"MobileNetV3_InvertedResidual": "channels",
                             "conv_bn_hswish": "channels"},
    "yolov5s_CA": {"CA": "channels"},
    "yolov5m-ShuffleNetV2": {"CBRM": "channels", "Shuffle_Block": "channels"},
    "yolov5s_mobilenetv2": {"MobileNetV2Block": "channels"},
    "yolov5x-BiFPN-1Layer-4Pred-cbam": {"cbam_block": "channels", "Concat": "concat-max"},
    "yolov5s-se": {},  # SE_BRANCH
    "YOLOv5_with_BiFPN__yolov5x": {"Concat": "concat-max"},
}
# Built by their repositories only with what the extracted class bodies lack: torchvision and
# a network download (MobileNet1-3), module-level names of resnet.py (`layers`, `drop_blocks`,
# its own timm-style Bottleneck) for ResNet50vd. From the files alone they cannot build.
NEEDS_MORE_THAN_THE_FILE = {"yolov5_mobilenet": "name 'models' is not defined",
                            "yolov5_resnet50_vd": "name 'layers' is not defined"}


def community_rows() -> list[dict]:
    index = shared("yamls", "community", "INDEX.md").read_text(encoding="utf-8")
    rows = []
    for line in index.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 12 and cells[0].isdigit():
            rows.append({"file": cells[2].strip("`").split("/")[-1].strip("`…"),
                         "build": cells[9], "strides": cells[10]})
    return rows


def _rules_for(file: str) -> dict[str, str]:
    matches = [key for key in REGISTERED if file.removesuffix(".yaml").endswith(key)]
    assert len(matches) == 1, (file, matches)
    return REGISTERED[matches[0]]


@pytest.mark.community
def test_the_index_lists_eighteen_yamls_each_with_its_rules():
    rows = community_rows()
    assert len(rows) == 18
    for row in rows:
        _rules_for(row["file"])


@pytest.mark.community
@pytest.mark.parametrize("number", range(18))
def test_community_yaml_builds_as_its_repository_did(number, tmp_path):
    row = community_rows()[number]
    folder = shared("yamls", "community")
    yaml_path = folder / row["file"]
    key = next(k for k in REGISTERED if row["file"].removesuffix(".yaml").endswith(k))
    args = ["check", str(yaml_path), "--img", "640", "-f", "json",
            "--modules", str(folder / (yaml_path.stem + ".modules.py"))]
    if key == "yolov5s-se":
        args += ["--modules", str(write_yaml(tmp_path, SE_BRANCH, "se_rules.py"))]
    for name, rule in REGISTERED[key].items():
        args += ["--rule", f"{name}={rule}"]
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 1, 2), result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception,
                                                                      SystemExit)
    assert "Traceback" not in result.output
    built = row["build"].endswith("BUILDS") and key not in NEEDS_MORE_THAN_THE_FILE
    if result.exit_code == 2:  # refused: one line on stderr names where and why
        assert not built, result.output
        assert re.search(r"\.yaml:\d+: YD1\d\d ", result.stderr), result.stderr
        return
    report = json.loads(result.stdout)
    detect = report["model"] and report["model"]["detect"]
    if built:
        assert detect is not None, [f["message"] for f in report["findings"]]
        assert "/".join(str(s) for s in detect["strides"]) == row["strides"]
        return
    failed = [f for f in report["findings"] if f["code"] == "YD202"]
    assert result.exit_code == 1 and failed, report["findings"]
    assert failed[0]["location"]["layer"] is not None
    cause = NEEDS_MORE_THAN_THE_FILE.get(key) or row["build"].split("`")[1]
    if key == "pr6362__4off1":
        # Theirs: NameError, C3_2 never imported into yolo.py. Here the file defines it, and
        # the same row fails on the raw arguments the unregistered class receives.
        cause = "C3_2(128) cannot be built: TypeError"
        assert failed[0]["location"]["layer"] == 2
    assert cause in failed[0]["message"], (cause, failed[0]["message"])


SEED_BLOCK = ("yamls", "resnet18", "basicblock_seed.py")


def test_seed_basicblock_declared_passthrough_is_one_build_failure_that_says_why():
    """The seed's block pasted into common.py but not registered in parse_model: YOLOv5 fails
    on the first BasicBlock row; that failure is the one finding, and it names the cause."""
    block = shared(*SEED_BLOCK)
    result = runner.invoke(app, ["check", str(shared("yamls", "resnet18", "yolov5s-resnet18.yaml")),
                                 "--modules", str(block), "--rule", "BasicBlock=passthrough",
                                 "-f", "json", "--img", "640"])
    assert result.exit_code == 1, result.output
    findings = json.loads(result.stdout)["findings"]
    assert [f["code"] for f in findings if f["severity"] != "info"] == ["YD202"]
    failed = findings[0]
    assert failed["location"]["layer"] == 1  # the first BasicBlock row
    # What YOLOv5 does: BasicBlock(64) lacks out_channels, so the build fails there.
    assert "BasicBlock(64) cannot be built" in failed["message"]
    assert "passes BasicBlock the YAML's arguments unchanged: declared passthrough with " \
        "--rule" in failed["message"]
    assert "register BasicBlock in parse_model's channel-aware set" in failed["hint"]
    assert "--rule BasicBlock=channels" in failed["hint"]
    assert not [f for f in findings if f["code"] in ("YD106", "YD111")]


def test_seed_basicblock_declared_channel_aware_builds_like_the_table_one():
    block = shared(*SEED_BLOCK)
    yaml = shared("yamls", "resnet18", "yolov5s-resnet18.yaml")
    theirs = runner.invoke(app, ["check", str(yaml), "--modules", str(block), "--rule",
                                 "BasicBlock=channels", "-f", "json"])
    ours = runner.invoke(app, ["check", str(yaml), "-f", "json"])
    theirs, ours = json.loads(theirs.stdout), json.loads(ours.stdout)
    assert theirs["model"]["layers"] == ours["model"]["layers"]
    codes = lambda report: sorted(f["code"] for f in report["findings"])  # noqa: E731
    # The file's block is the table's (no YD111), and its rule is declared, not assumed.
    assert codes(theirs) == [c for c in codes(ours) if c != "YD110"]
    assert "YD110" in codes(ours)


def test_undeclared_block_is_inferred_from_its_signature_and_warned(tmp_path):
    blocks = write_yaml(tmp_path, BLOCKS, "blocks.py")
    model = write_yaml(tmp_path, TINY.replace("[-1, 1, Conv, [64, 3, 2]],    # 3 /8",
                                              "[-1, 1, Down, [64]],          # 3 /8"))
    entries = load_modules([blocks])
    assert entries["Down"].rule == "channels" and entries["Down"].decided == RuleSource.SIGNATURE
    assert entries["Pool"].rule == "passthrough"
    assert entries["Pool"].decided == RuleSource.FALLBACK
    assert entries["Stack"].rule == "channels+repeats"
    result = runner.invoke(app, ["check", str(model), "--modules", str(blocks), "-f", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"]["layers"][3]["args"] == [32, 64]  # c1 inserted, as assumed
    yd106 = [f for f in report["findings"] if f["code"] == "YD106"]
    assert [f["severity"] for f in yd106] == ["warning"]
    assert "unless your yolo.py registers it" in yd106[0]["message"]
    assert "--rule Down=channels" in yd106[0]["hint"]
    declared = runner.invoke(app, ["check", str(model), "--modules", str(blocks), "--rule",
                                   "Down=channels", "-f", "json"])
    assert not [f for f in json.loads(declared.stdout)["findings"]
                if f["code"] in ("YD106", "YD110")]


SPELLED = '''
class Spelled(nn.Module):
    """A block whose YAML rows name both widths, for a parse_model that does not know it."""
    def __init__(self, c1, c2, k=3, s=1, g=1):
        super().__init__()
        self.conv = Conv(c1, c2, k, s, None, g)

    def forward(self, x):
        return self.conv(x)
'''


def test_assumed_block_whose_yaml_spells_out_its_widths_is_warned_to_be_passthrough(tmp_path):
    """`[32, 32, 3, 1]` is what a YAML writes for a block stock parse_model passes raw; the
    rule assumed from (c1, c2) would check Spelled(32, 32, 32, 3, 1) (a 32x32 kernel)."""
    blocks = write_yaml(tmp_path, SPELLED, "spelled.py")
    model = write_yaml(tmp_path, TINY.replace("[-1, 2, C3, [32]],            # 2",
                                              "[-1, 1, Spelled, [32, 32, 3, 1]],  # 2"))
    result = runner.invoke(app, ["check", str(model), "--modules", str(blocks), "-f", "json"])
    findings = json.loads(result.stdout)["findings"]
    yd106 = [f for f in findings if f["code"] == "YD106"]
    assert [(f["severity"], f["location"]["layer"]) for f in yd106] == [("warning", 2)]
    assert "Spelled(32, 32, 3, 1) is checked as Spelled(32, 32, 32, 3, 1)" in yd106[0]["message"]
    assert "--rule Spelled=passthrough" in yd106[0]["hint"]
    assert not [f for f in findings if f["code"] == "YD110"]
    declared = runner.invoke(app, ["check", str(model), "--modules", str(blocks), "--rule",
                                   "Spelled=passthrough", "-f", "json"])
    assert declared.exit_code == 0, declared.output
    report = json.loads(declared.stdout)
    assert not [f for f in report["findings"] if f["code"] in ("YD106", "YD110")]
    assert report["model"]["layers"][2]["args"] == [32, 32, 3, 1]
    # One parameter fewer: the assumed call cannot be built; that failure is the finding, and
    # the rule's note says what the fallback would have built instead.
    short = write_yaml(tmp_path, SPELLED.replace(", g=1", "").replace(", None, g", ""),
                       "short.py")
    failed = runner.invoke(app, ["check", str(model), "--modules", str(short), "-f", "json"])
    findings = json.loads(failed.stdout)["findings"]
    assert [f["code"] for f in findings] == ["YD202", "YD110"]
    assert "which builds Spelled(32, 32, 3, 1), not the Spelled(32, 32, 32, 3, 1) of the rule " \
        "assumed" in findings[1]["message"]


def test_fallback_rule_is_reported_as_info(tmp_path):
    blocks = write_yaml(tmp_path, BLOCKS, "blocks.py")
    model = write_yaml(tmp_path, TINY.replace("[-1, 1, Conv, [64, 1, 1]],                   # 7",
                                              "[-1, 1, Pool, [3]],                          # 7"))
    result = runner.invoke(app, ["check", str(model), "--modules", str(blocks), "-f", "json"])
    report = json.loads(result.stdout)
    info = [f for f in report["findings"] if f["code"] == "YD110"]
    assert len(info) == 1 and info[0]["location"]["layer"] == 7
    assert "assumes passthrough" in info[0]["message"]


def test_rules_in_the_file_and_on_the_command_line(tmp_path):
    declared = write_yaml(tmp_path, BLOCKS + 'YOLODIAG_RULES = {"Down": "out=args0"}\n',
                          "declared.py")
    assert load_modules([declared])["Down"].decided == RuleSource.FILE
    option = load_modules([declared], ["Down=passthrough"])["Down"]
    assert (option.rule, option.decided) == ("passthrough", RuleSource.OPTION)
    assert load_modules([], ["Conv=passthrough"])["Conv"].rule == "passthrough"


@pytest.mark.parametrize("text, rules, message", [
    ("class A(nn.Module):\n    def __init__(self, c1, c2):\n        super().__init__(\n",
     [], r"blocks\.py:3: SyntaxError"),
    ("import os\nx = 1\nraise RuntimeError('boom')\n", [],
     r"blocks\.py:3: running the --modules file raised RuntimeError: boom"),
    (BLOCKS_SMALL := "class A(nn.Module):\n    def __init__(self, c1, c2):\n"
                     "        super().__init__()\n", ["A=sideways"], r"unknown rule 'sideways'"),
    (BLOCKS_SMALL, ["B=channels"], r"no module 'B'"),
    (BLOCKS_SMALL, ["A"], r"expected Name=rule"),
    (BLOCKS_SMALL + "YOLODIAG_RULES = {'Z': 'channels'}\n", [], r"names 'Z', which no"),
])
def test_bad_modules_file_or_rule_is_one_line_exit_2(tmp_path, text, rules, message):
    blocks = write_yaml(tmp_path, text, "blocks.py")
    with pytest.raises(Unsupported, match=message):
        load_modules([blocks], rules)
    args = ["check", str(write_yaml(tmp_path, TINY)), "--modules", str(blocks)]
    for rule in rules:
        args += ["--rule", rule]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_unknown_module_hint_points_to_modules(tmp_path):
    model = write_yaml(tmp_path, TINY.replace("Conv, [64, 1, 1]", "Mine, [64, 1, 1]"))
    result = runner.invoke(app, ["check", str(model)])
    assert result.exit_code == 2 and "YD103" in result.stderr


def test_user_head_is_measured_like_yolov5s_probe(tmp_path):
    """A head of the user's own (rule detect) gets its strides from its train-mode output."""
    head = write_yaml(tmp_path, HEAD, "head.py")
    model = write_yaml(tmp_path, TINY.replace("Detect, [nc, anchors]", "MyDetect, [nc, anchors]"))
    result = runner.invoke(app, ["check", str(model), "--modules", str(head), "--rule",
                                 "MyDetect=detect", "-f", "json"])
    assert result.exit_code == 0, result.output
    detect = json.loads(result.stdout)["model"]["detect"]
    assert detect["layer"] == 8 and detect["strides"] == [8, 16]
    assert detect["anchors_grid"][0][0] == [1.25, 1.625]


BLOCKS = '''
class Down(nn.Module):
    """A strided Conv under another name: (in_channels, out_channels)."""
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = Conv(in_channels, out_channels, 3, 2)

    def forward(self, x):
        return self.conv(x)


class Pool(nn.Module):
    def __init__(self, k=3):
        super().__init__()
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        return self.pool(x)


class Stack(nn.Module):
    def __init__(self, c1, c2, n=1):
        super().__init__()
        self.m = nn.Sequential(*(Conv(c1 if i == 0 else c2, c2, 3) for i in range(n)))

    def forward(self, x):
        return self.m(x)
'''

HEAD = '''
class MyDetect(nn.Module):
    stride = None

    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__()
        self.nl, self.na, self.no = len(anchors), len(anchors[0]) // 2, nc + 5
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        self.m = nn.ModuleList(nn.Conv2d(c, self.na * self.no, 1) for c in ch)

    def forward(self, x):
        out = [conv(level) for conv, level in zip(self.m, x)]
        if self.training:
            return out
        return torch.cat([o.flatten(2) for o in out], 2) * self.stride[0], out
'''


def test_modules_help_says_the_file_is_executed():
    result = runner.invoke(app, ["check", "--help"], terminal_width=200)
    assert "EXECUTED" in result.output and "--rule" in result.output


def test_user_modules_reach_gradflow(tmp_path):
    blocks = write_yaml(tmp_path, BLOCKS, "blocks.py")
    model = write_yaml(tmp_path, TINY.replace("[-1, 1, Conv, [64, 3, 2]],    # 3 /8",
                                              "[-1, 1, Down, [64]],          # 3 /8"))
    result = runner.invoke(app, ["gradflow", str(model), "--modules", str(blocks), "--rule",
                                 "Down=channels", "--img", "64", "-f", "json"])
    assert result.exit_code == 0, result.output
    layers = json.loads(result.stdout)["gradflow"]["layers"]
    assert layers[3]["params"] > 0 and layers[3]["grad_norm"] > 0


def test_paths_in_findings_name_the_users_file(tmp_path):
    blocks = write_yaml(tmp_path, BLOCKS, "blocks.py")
    model = write_yaml(tmp_path, TINY.replace("[-1, 1, Conv, [64, 3, 2]],    # 3 /8",
                                              "[-1, 1, Down, [64]],          # 3 /8"))
    result = runner.invoke(app, ["check", str(model), "--modules", str(blocks), "-f", "json"])
    yd106 = next(f for f in json.loads(result.stdout)["findings"] if f["code"] == "YD106")
    assert str(Path(blocks)) in yd106["message"]


def test_block_that_needs_values_is_traced_on_the_cpu(tmp_path):
    """The meta device has shapes only; a block reading a value is traced on real tensors."""
    blocks = write_yaml(tmp_path, '''
class Gate(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.conv = Conv(c1, c2, 3, 2)

    def forward(self, x):
        return self.conv(x) if x.abs().sum().item() >= 0 else x
''', "gate.py")
    model = write_yaml(tmp_path, TINY.replace("[-1, 1, Conv, [64, 3, 2]],    # 3 /8",
                                              "[-1, 1, Gate, [64]],          # 3 /8"))
    result = runner.invoke(app, ["check", str(model), "--modules", str(blocks), "--rule",
                                 "Gate=channels", "-f", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"]["layers"][3]["out_shape"] == [1, 64, 80, 80]
    assert report["model"]["detect"]["strides"] == [8, 16]
