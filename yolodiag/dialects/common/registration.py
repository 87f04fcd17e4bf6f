"""The channel rules a checkout's `parse_model` gives its classes, read statically (YOLOv5's and
YOLOv7's parse_model are written alike; each dialect adds the width expressions only its own has).

A `--modules` file inside a checkout (`<root>/models/common.py`) is used by the `models/yolo.py`
beside it, whose parse_model decides every class's rule by membership: `if m in {...}` inserts
the input width and scales the output width, a nested `if m in {...}` there also passes the
repeat count, and the other branches (`m is nn.BatchNorm2d`, `m is Concat`, the heads...) each
complete the row their own way; a class in no branch gets the final `else`, the fallback.

yolo.py is parsed with Python's `ast`, never run (nor copied). A branch is mapped to one of
yolodiag's rules by what its body does with parse_model's locals (`args`, `c2`, `ch[f]`), not
by its text; a branch that matches none is reported as unmapped, with its line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from yolodiag.build.plan import canonical_name
from yolodiag.findings import Unsupported

INPUT_WIDTH = "ch[f]"  # parse_model's input width of the row (`f` its `from`)


@dataclass(frozen=True)
class Registration:
    """What one yolo.py's parse_model does with each class it names."""

    source: str  # the yolo.py read
    rules: dict[str, str] = field(default_factory=dict)  # class name -> yolodiag rule
    unmapped: dict[str, int] = field(default_factory=dict)  # class name -> line of its branch


# A family's own output-width expressions: (the expression as ast.unparse writes it, the rule),
# e.g. YOLOv7's `c2 = ch[f] * 4` for ReOrg.
Widths = tuple[tuple[str, str], ...]


def find_checkout(file: str | Path, is_checkout=None) -> Path | None:
    """The checkout a file belongs to: the nearest folder at or above it holding models/yolo.py
    (and, given `is_checkout(folder)`, that says it is of the family's layout)."""
    path = Path(file).resolve()
    for folder in path.parents:
        if (folder / "models" / "yolo.py").is_file() and (
                is_checkout is None or is_checkout(folder)):
            return folder
    return None


def read_registration(root: str | Path, widths: Widths = ()) -> Registration:
    """The rules of `<root>/models/yolo.py`'s parse_model (none when it defines no parse_model),
    with the family's own output-width expressions `widths` besides the shared ones. Raises
    Unsupported naming the file and line when yolo.py is not valid Python."""
    source = (Path(root) / "models" / "yolo.py").resolve()
    try:
        modified = source.stat().st_mtime_ns
    except OSError as e:
        raise Unsupported(f"{source}: cannot read it for parse_model's registrations: {e}") from e
    return _read(str(source), modified, widths)


@lru_cache(maxsize=8)
def _read(source: str, modified: int, widths: Widths) -> Registration:
    """Cached per file, modification time and family (several --modules files of one
    checkout)."""
    try:
        tree = ast.parse(Path(source).read_text(encoding="utf-8"), source)
    except (OSError, UnicodeDecodeError) as e:
        raise Unsupported(f"{source}: cannot read it for parse_model's registrations: {e}") from e
    except SyntaxError as e:
        raise Unsupported(f"{source}:{e.lineno}: SyntaxError: {e.msg} (read for parse_model's "
                          "registrations of your --modules classes)") from e
    function = next((node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                     and node.name == "parse_model"), None)
    rules: dict[str, str] = {}
    unmapped: dict[str, int] = {}
    if function is not None:
        for chain in _chains(function):
            _read_chain(chain, rules, unmapped, dict(widths))
    return Registration(source, rules, unmapped)


def _membership(test: ast.expr) -> list[str] | None:
    """The class names of `m in {A, nn.B}` / `m is A` / `m == A` (or an `or` of those)."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        parts = [_membership(value) for value in test.values]
        return None if None in parts else [name for part in parts for name in part]
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.left, ast.Name)):
        return None
    op, right = test.ops[0], test.comparators[0]
    if isinstance(op, ast.In) and isinstance(right, (ast.Set, ast.Tuple, ast.List)):
        names = [_class_name(element) for element in right.elts]
    elif isinstance(op, (ast.Is, ast.Eq)):
        names = [_class_name(right)]
    else:
        return None
    return None if None in names else names  # type: ignore[return-value]


def _class_name(node: ast.expr) -> str | None:
    if isinstance(node, (ast.Name, ast.Attribute)):
        return canonical_name(ast.unparse(node))
    return None


def _chains(function: ast.FunctionDef) -> list[ast.If]:
    """The first `if` of every if/elif chain on membership, outermost first (a nested one, such
    as the repeat set inside the channel-aware branch, is read with its branch)."""
    inner: set[int] = set()
    chains = []
    for node in ast.walk(function):
        if not isinstance(node, ast.If) or id(node) in inner or _membership(node.test) is None:
            continue
        chains.append(node)
        for child in ast.walk(node):
            if isinstance(child, ast.If) and child is not node:
                inner.add(id(child))
    return chains


def _read_chain(first: ast.If, rules: dict[str, str], unmapped: dict[str, int],
                own: dict[str, str]) -> None:
    branch: ast.If | None = first
    while branch is not None:
        names = _membership(branch.test)
        if names is None:  # an `elif` on something else: the chain ends here
            return
        statements = _statements(branch.body)
        here = [name for name in names if name not in rules and name not in unmapped]
        _record(here, _branch_rule(statements, own), branch.lineno, rules, unmapped)
        # A nested `if m in {...}` refines the branch for the names in both (the repeat set
        # inside the channel-aware one, Segment inside the heads' branch).
        for nested in _nested(branch.body):
            inner = [name for name in _membership(nested.test) or () if name in here]
            for name in inner:
                rules.pop(name, None)
                unmapped.pop(name, None)
            _record(inner, _branch_rule(statements + _statements(nested.body), own),
                    nested.lineno, rules, unmapped)
        orelse = branch.orelse
        branch = orelse[0] if len(orelse) == 1 and isinstance(orelse[0], ast.If) else None


def _record(names: list[str], rule: str | None, line: int, rules: dict[str, str],
            unmapped: dict[str, int]) -> None:
    for name in names:
        if rule is None:
            unmapped[name] = line
        else:
            rules[name] = rule


def _nested(body: list[ast.stmt]) -> list[ast.If]:
    """The membership tests inside a branch (not inside another nested one)."""
    found = []
    for stmt in body:
        if isinstance(stmt, ast.If):
            if _membership(stmt.test) is not None:
                found.append(stmt)
            else:
                found += _nested(stmt.body) + _nested(stmt.orelse)
    return found


def _statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Every statement of a branch, nested `if`s on other things included (`if c2 != no:`),
    nested membership tests excluded (they are subsets read on their own)."""
    found: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.If):
            if _membership(stmt.test) is None:
                found += _statements(stmt.body) + _statements(stmt.orelse)
            continue
        found.append(stmt)
    return found


def _assigned(statements: list[ast.stmt]) -> dict[str, list[ast.expr]]:
    """Target text -> values assigned to it (`c1, c2 = ch[f], args[0]` split element-wise)."""
    values: dict[str, list[ast.expr]] = {}
    for stmt in statements:
        if not isinstance(stmt, ast.Assign):
            continue
        for target in stmt.targets:
            if isinstance(target, ast.Tuple) and isinstance(stmt.value, ast.Tuple) and len(
                    target.elts) == len(stmt.value.elts):
                pairs = zip(target.elts, stmt.value.elts)
            else:
                pairs = [(target, stmt.value)]
            for name, value in pairs:
                values.setdefault(ast.unparse(name), []).append(value)
    return values


def _is_call(stmt: ast.stmt, function: str) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and ast.unparse(stmt.value.func) == function)


def _call_args(stmt: ast.stmt) -> list[str]:
    return [ast.unparse(a) for a in stmt.value.args]  # type: ignore[attr-defined]


def _branch_rule(statements: list[ast.stmt], own: dict[str, str]) -> str | None:
    """The yolodiag rule a branch's statements amount to, or None when they are none of them
    (`own`: the family's output-width expressions -> rule)."""
    assigned = _assigned(statements)
    widths = {INPUT_WIDTH} | {name for name, values in assigned.items()
                              if any(ast.unparse(v) == INPUT_WIDTH for v in values)}
    args = assigned.get("args", [])
    c2 = [ast.unparse(v) for v in assigned.get("c2", [])]
    appended = [s for s in statements if _is_call(s, "args.append")]
    if appended and any("ch[" in a for s in appended for a in _call_args(s)):
        return "segment" if "args[3]" in assigned else "detect"
    for value in args:
        rule = _args_rule(value, widths)
        if rule == "channels":
            repeats = any(_is_call(s, "args.insert") and _call_args(s)[:1] == ["2"]
                          for s in statements)
            return "channels+repeats" if repeats else rule
        if (rule == "input" and set(c2) <= widths):
            return rule
        if rule == "batchnorm" and not c2:
            return rule
    if args:
        return None
    if len(c2) == 1:
        return own.get(c2[0]) or _width_rule(assigned["c2"][0], widths)
    return None


def _args_rule(value: ast.expr, widths: set[str]) -> str | None:
    """`args = [c1, c2, *args[1:]]`: channels; `[c1, *args]` or `[c1, args[0], ...]`: input;
    `[ch[f]]`: batchnorm."""
    if not isinstance(value, ast.List) or not value.elts:
        return None
    first, rest = ast.unparse(value.elts[0]), [ast.unparse(e) for e in value.elts[1:]]
    if first not in widths:
        return None
    if not rest:
        return "batchnorm"
    if len(rest) == 2 and rest[1] == "*args[1:]":
        return "channels"
    if rest == ["*args"] or rest == [f"args[{k}]" for k in range(len(rest))]:
        return "input"
    return None


def _width_rule(value: ast.expr, widths: set[str]) -> str | None:
    """The rule of a branch that sets only the output width."""
    text = ast.unparse(value)
    if text in widths:
        return "passthrough"
    if text == "args[0]":
        return "out=args0"
    if isinstance(value, ast.Call) and ast.unparse(value.func) in ("sum", "max") and (
            "ch[" in text):
        return f"concat-{ast.unparse(value.func)}"
    if isinstance(value, ast.BinOp) and ast.unparse(value.left) in widths and isinstance(
            value.right, ast.BinOp) and isinstance(value.right.op, ast.Pow):
        return {ast.Mult: "contract", ast.FloorDiv: "expand"}.get(type(value.op))
    return None
