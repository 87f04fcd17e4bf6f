"""YOLOv5 v7.0's channel rules: those of its parse_model lineage (`dialects/common/rules.py`,
which YOLOv7's parse_model shares), all of them."""

from yolodiag.dialects.common.rules import (  # noqa: F401  (the names tests and users import)
    RULES,
    Completion,
    RuleError,
    RuleInput,
    make_divisible,
    passthrough,
)
