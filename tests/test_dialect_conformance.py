"""Every registered dialect keeps the contract the shared engine relies on.

One parametrised test per promise, over the real dialects (YOLOv5, YOLOv7, and any added later):
the table's rules exist, each part the dialect declares offers what the engine calls on it,
capabilities agree with the parts, the head classes are in a --modules file's reach, its own
stock YAMLs are claimed by it, and one of them builds on the meta device with the head measured.
A new family that forgets one of these fails here, not in a user's run.
"""

from __future__ import annotations

import pytest

from conftest import shared
from yolodiag.dialects import DIALECTS, choose

# What the engine calls on each part (grep the shared code for `dialect.<part>.`).
PART_INTERFACE = {
    "model": ("PROBE_SIZE", "activation_scope", "measure_head", "initialize_weights",
              "untrainable", "priors"),
    "loss": ("HYP", "TERMS", "MUST_FALL", "train_hyp", "loss_terms", "compute_loss", "assign",
             "prior_loss", "optimizer", "batch_positives"),
    "evaluation": ("CONF", "IOU", "non_max_suppression", "correct", "detection_metrics",
                   "candidates"),
    "checkpoint": ("read_checkpoint", "transfer", "embedded_spec", "claims"),
    "runs": ("claims", "read_run", "locate_inputs", "pillow_available"),
    "repo": ("repo_traced",),
    "checkout": ("find_checkout", "read_registration"),
    "stockmatch": ("differences",),
}
# A capability a check may need -> the part that must exist for it.
CAPABILITY_PART = {"loss": "loss"}
# A capability -> what the checks needing it call on the dialect's model part.
CAPABILITY_MODEL = {"anchors": ("ANCHOR_ORDER_RULE",), "objectness": ("objectness_prior",),
                    "anchor-free": ("class_prior", "largest_box_side", "head_facts",
                                    "VALIDATION_CONF")}
# Each real dialect's stock YAMLs in tests/shared, and the ones its sniff cannot claim because
# they are written in YOLOv5's terms only (the default reads them; --dialect forces).
STOCK = {
    "yolov5": (("yamls", "stock"), ()),
    "yolov7": (("yamls", "yolov7", "stock"), ("yolov3.yaml", "yolov3-spp.yaml")),
    "ultralytics": (("yamls", "ultralytics", "stock"), ()),
}
REAL = sorted(STOCK)


def test_every_registered_dialect_is_covered_here():
    assert set(DIALECTS) == set(STOCK), "add the new dialect's stock YAMLs to STOCK"


@pytest.mark.parametrize("name", REAL)
def test_every_table_entry_names_a_rule_of_its_dialect(name):
    dialect = DIALECTS[name]
    missing = {module: entry.rule for module, entry in dialect.modules.items()
               if entry.rule is not None and entry.rule not in dialect.rules}
    assert missing == {}
    assert dialect.head_modules, "a dialect with no head module cannot measure strides"


@pytest.mark.parametrize("name", REAL)
def test_each_declared_part_offers_what_the_engine_calls(name):
    dialect = DIALECTS[name]
    for part, attributes in PART_INTERFACE.items():
        module = getattr(dialect, part)
        if module is None:
            continue
        lacking = [a for a in attributes if not hasattr(module, a)]
        assert lacking == [], f"{name}.{part} lacks {lacking}"


@pytest.mark.parametrize("name", REAL)
def test_capabilities_agree_with_the_parts(name):
    dialect = DIALECTS[name]
    for capability, part in CAPABILITY_PART.items():
        assert (capability in dialect.capabilities) == (getattr(dialect, part) is not None), \
            f"{name}: capability {capability!r} and part {part!r} disagree"
    for capability, attributes in CAPABILITY_MODEL.items():
        if capability in dialect.capabilities:
            lacking = [a for a in attributes if not hasattr(dialect.model, a)]
            assert lacking == [], f"{name}.model lacks {lacking} for {capability!r}"


@pytest.mark.parametrize("name", REAL)
def test_head_classes_are_in_a_modules_files_reach(name):
    dialect = DIALECTS[name]
    namespace = dialect.namespace()
    assert sorted(dialect.head_modules - set(namespace)) == []
    for key in ("block", "head", "stem", "pooling"):
        assert dialect.example(key), key


def _stock(name: str):
    folder, unclaimed = STOCK[name]
    root = shared(*folder)
    return sorted(p for p in root.rglob("*.yaml")), unclaimed


@pytest.mark.parametrize("name", REAL)
def test_its_own_stock_yamls_are_read_as_it(name):
    import yaml

    paths, unclaimed = _stock(name)
    assert paths
    wrong = {p.name: choose(yaml.safe_load(p.read_text())).dialect.name for p in paths
             if p.name not in unclaimed}
    assert {k: v for k, v in wrong.items() if v != name} == {}


@pytest.mark.parametrize("name", REAL)
def test_a_stock_yaml_builds_on_meta_with_its_head_measured(name):
    from yolodiag.build.builder import build
    from yolodiag.spec import load_spec

    paths, unclaimed = _stock(name)
    path = next(p for p in paths if p.name not in unclaimed)
    spec = load_spec(path, dialect=name)
    built = build(spec, device="meta")
    assert built.dialect.name == name
    levels = len(spec.layers[-1].sources)
    assert built.stride is not None and len(built.stride) == levels
    assert built.anchors is None or built.anchors.shape[0] == levels
    assert list(built.stride) == sorted(built.stride)
