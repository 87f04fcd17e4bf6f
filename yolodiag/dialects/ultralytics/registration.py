"""The channel rules an Ultralytics checkout's `parse_model` gives its classes, read statically.

A `--modules` file inside an Ultralytics checkout (or inside an installed package's folder) is
used by the `ultralytics/nn/tasks.py` of that tree, whose parse_model decides every class's rule
by membership: `m in base_modules` completes the row (input width inserted, output width capped
and scaled), a nested `m in repeat_modules` also inserts the repeat count, and the branches
after it (`m is Concat`, the heads, CBLinear...) each complete the row their own way; a class
in no branch gets the final `else`, which passes the arguments as written. Unlike YOLOv5's, the
sets are usually local names bound to `frozenset({...})` literals before the loop: they are
resolved from those bindings.

tasks.py is parsed with Python's `ast`, never run (nor copied). A branch is mapped to one of
our rules (`rules.py`) by what its body does with parse_model's locals (`args`, `c2`, `ch[f]`),
not by its text. Inside a branch, a nested test on some of its classes refines the rule for
those: the repeat count inserted, or a change our rule already makes for that class name (the
head's `legacy` flag; C3k2's and A2C2f's scale-letter tweaks, at the letters our rules use);
anything else in it (C2fAttn's rescaled arguments, Classify left unscaled by an `is not` test)
leaves those classes unmapped, named with the nested test's line.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

from yolodiag.build.plan import canonical_name
from yolodiag.dialects.common.registration import Registration
from yolodiag.dialects.ultralytics.repo import TASKS
from yolodiag.dialects.ultralytics.rules import C3K_SCALES, RESIDUAL_SCALES
from yolodiag.findings import Unsupported

__all__ = ["Registration", "find_checkout", "read_registration"]

INPUT_WIDTH = "ch[f]"  # parse_model's input width of the row (`f` its `from`)
SCALE_TWEAKS = {"C3k2": C3K_SCALES, "A2C2f": RESIDUAL_SCALES}  # made by our rules, by name
SET_CALLS = ("frozenset", "set", "tuple", "list")


def find_checkout(file: str | Path) -> Path | None:
    """The Ultralytics tree a file belongs to: the nearest folder at or above it holding
    ultralytics/nn/tasks.py (a checkout, or the site-packages of an installed package)."""
    for folder in Path(file).resolve().parents:
        if (folder / TASKS).is_file():
            return folder
    return None


def read_registration(root: str | Path) -> Registration:
    """The rules of `<root>/ultralytics/nn/tasks.py`'s parse_model (none when it defines no
    parse_model). Raises Unsupported naming the file and line when tasks.py is not valid
    Python."""
    source = (Path(root) / TASKS).resolve()
    try:
        modified = source.stat().st_mtime_ns
    except OSError as e:
        raise Unsupported(f"{source}: cannot read it for parse_model's registrations: {e}") from e
    return _read(str(source), modified)


@lru_cache(maxsize=8)
def _read(source: str, modified: int) -> Registration:
    """Cached per file and modification time (several --modules files of one tree)."""
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
        sets = {**_named_sets(tree.body), **_named_sets(ast.walk(function))}
        for chain in _chains(function, sets):
            _read_chain(chain, sets, rules, unmapped)
    return Registration(source, rules, unmapped)


def _named_sets(nodes) -> dict[str, list[str]]:
    """`name = frozenset({A, B})` (or a bare set, list or tuple literal) -> its class names."""
    sets = {}
    for node in nodes:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                node.targets[0], ast.Name):
            names = _literal_names(node.value)
            if names is not None:
                sets[node.targets[0].id] = names
    return sets


def _literal_names(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and (
            node.func.id in SET_CALLS) and len(node.args) == 1 and not node.keywords:
        node = node.args[0]
    if not isinstance(node, (ast.Set, ast.Tuple, ast.List)):
        return None
    names = [_class_name(element) for element in node.elts]
    return None if None in names else names  # type: ignore[return-value]


def _class_name(node: ast.expr) -> str | None:
    if isinstance(node, (ast.Name, ast.Attribute)):
        return canonical_name(ast.unparse(node))
    return None


def _membership(test: ast.expr, sets: dict[str, list[str]]) -> tuple[list[str], bool] | None:
    """(class names, negated) of `m in base_modules` / `m in {A, nn.B}` / `m is A` (or an `or`
    of those), negated for `not in` / `is not`; None for any other test."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        parts = [_membership(value, sets) for value in test.values]
        if None in parts or any(negated for _, negated in parts):  # type: ignore[misc]
            return None
        return [name for names, _ in parts for name in names], False  # type: ignore[misc]
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.left, ast.Name)):
        return None
    op, right = test.ops[0], test.comparators[0]
    if isinstance(op, (ast.In, ast.NotIn)):
        names = sets.get(right.id) if isinstance(right, ast.Name) else _literal_names(right)
    elif isinstance(op, (ast.Is, ast.Eq, ast.IsNot, ast.NotEq)):
        name = _class_name(right)
        names = [name] if name is not None else None
    else:
        return None
    return (names, isinstance(op, (ast.NotIn, ast.IsNot, ast.NotEq))) if names else None


def _chains(function: ast.FunctionDef, sets: dict[str, list[str]]) -> list[ast.If]:
    """The first `if` of every if/elif chain on membership, outermost first (a nested one is
    read with its branch)."""
    inner: set[int] = set()
    chains = []
    for node in ast.walk(function):
        if not isinstance(node, ast.If) or id(node) in inner:
            continue
        found = _membership(node.test, sets)
        if found is None or found[1]:
            continue
        chains.append(node)
        inner.update(id(child) for child in ast.walk(node) if isinstance(child, ast.If))
    return chains


def _read_chain(first: ast.If, sets: dict[str, list[str]], rules: dict[str, str],
                unmapped: dict[str, int]) -> None:
    branch: ast.If | None = first
    while branch is not None:
        found = _membership(branch.test, sets)
        if found is None or found[1]:  # an `elif` on something else: the chain ends here
            return
        here = [name for name in found[0] if name not in rules and name not in unmapped]
        rule = _branch_rule(_statements(branch.body, sets))
        repeats: set[str] = set()
        for name in here:
            if rule is None:
                unmapped[name] = branch.lineno
            else:
                rules[name] = rule
        for nested, (names, negated) in _nested(branch.body, sets):
            for name in (n for n in names if n in rules and n in here):
                refined = None if negated else _refinement(nested.body, name)
                if refined is None or (refined == "repeats" and rules[name] != "completed"):
                    del rules[name]
                    unmapped[name] = nested.lineno
                elif refined == "repeats":
                    repeats.add(name)
        for name in repeats & set(rules):
            rules[name] = "completed+repeats"
        orelse = branch.orelse
        branch = orelse[0] if len(orelse) == 1 and isinstance(orelse[0], ast.If) else None


def _nested(body: list[ast.stmt], sets: dict[str, list[str]]
            ) -> list[tuple[ast.If, tuple[list[str], bool]]]:
    """The membership tests inside a branch, with their names (inside other tests too)."""
    found = []
    for stmt in body:
        if isinstance(stmt, ast.If):
            membership = _membership(stmt.test, sets)
            if membership is not None:
                found.append((stmt, membership))
            found += _nested(stmt.body, sets) + _nested(stmt.orelse, sets)
    return found


def _statements(body: list[ast.stmt], sets: dict[str, list[str]]) -> list[ast.stmt]:
    """The statements a branch runs for all its classes: those of nested tests on other
    things and of negated membership tests (they run for the classes not named) included,
    those of positive membership tests (read on their own) excluded."""
    found: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.If):
            membership = _membership(stmt.test, sets)
            if membership is None or membership[1]:
                found += _statements(stmt.body, sets) + _statements(stmt.orelse, sets)
            continue
        found.append(stmt)
    return found


def _refinement(body: list[ast.stmt], name: str) -> str | None:
    """What a nested test's body does for `name`: "repeats" (the count inserted third),
    "same" (only what our rules do for that name already), or None (anything else)."""
    effect = "same"
    for stmt in body:
        text = ast.unparse(stmt)
        if text == "args.insert(2, n)":
            effect = "repeats"
        elif text == "n = 1":
            continue  # the copies are the block's own now
        elif isinstance(stmt, ast.Assign) and all(
                ast.unparse(t).split(".")[-1] == "legacy" for t in stmt.targets):
            continue  # the head's layout flag: our head rule sets it from the earlier rows
        elif not _own_scale_tweak(stmt, name):
            return None
    return effect


def _own_scale_tweak(stmt: ast.stmt, name: str) -> bool:
    """`if scale in {...}: ...` at the letters our rule tweaks `name` at."""
    if not (isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Compare)
            and ast.unparse(stmt.test.left) == "scale" and len(stmt.test.ops) == 1
            and isinstance(stmt.test.ops[0], ast.In) and name in SCALE_TWEAKS):
        return False
    letters = stmt.test.comparators[0]
    values = getattr(letters, "elts", None)
    return values is not None and all(isinstance(v, ast.Constant) for v in values) and {
        v.value for v in values} == set(SCALE_TWEAKS[name])


def _branch_rule(statements: list[ast.stmt]) -> str | None:
    """Our rule for what a branch's statements do to the row, or None when they are none of
    ours."""
    assigned: dict[str, list[ast.expr]] = {}
    for stmt in statements:
        if isinstance(stmt, ast.Assign):
            for target in stmt.targets:
                pairs = (zip(target.elts, stmt.value.elts) if isinstance(target, ast.Tuple)
                         and isinstance(stmt.value, ast.Tuple) else [(target, stmt.value)])
                for key, value in pairs:
                    assigned.setdefault(ast.unparse(key), []).append(value)
    inputs = {INPUT_WIDTH} | {key for key, values in assigned.items()
                              if any(ast.unparse(v) == INPUT_WIDTH for v in values)}
    calls = [stmt.value for stmt in statements if isinstance(stmt, ast.Expr)
             and isinstance(stmt.value, ast.Call)
             and ast.unparse(stmt.value.func).startswith("args.")]
    args, c2 = assigned.get("args", []), [ast.unparse(v) for v in assigned.get("c2", [])]
    if calls:
        return _head_rule(calls) if not args and not c2 else None
    if len(args) == 1:
        return _completion_rule(args[0], c2, assigned.get("c2", []), inputs)
    if not args and len(c2) == 1:
        value = assigned["c2"][0]
        if c2[0] in inputs:
            return "passthrough"
        if c2[0] == "ch[f[-1]]":
            return "cbfuse"
        if isinstance(value, ast.Call) and ast.unparse(value.func) == "sum" and "ch[" in c2[0]:
            return "concat-sum"
    return None


def _head_rule(calls: list[ast.Call]) -> str | None:
    """`args.extend([reg_max, end2end, <input widths>])`: Detect's; `args.append(<input
    widths>)`: v10Detect's."""
    if len(calls) != 1 or len(calls[0].args) != 1:
        return None
    method, value = ast.unparse(calls[0].func), calls[0].args[0]
    if method == "args.append" and _reads_widths(value):
        return "v10detect"
    if method == "args.extend" and isinstance(value, ast.List) and len(value.elts) == 3 and (
            _reads_widths(value.elts[2])):
        return "anchor-free-detect"
    return None


def _reads_widths(value: ast.expr) -> bool:
    return isinstance(value, ast.ListComp) and "ch[" in ast.unparse(value.elt)


def _completion_rule(value: ast.expr, c2: list[str], c2_values: list[ast.expr],
                     inputs: set[str]) -> str | None:
    """`args = [ch[f]]`: batchnorm; `[c1, c2, *args[1:]]` with c2 the first argument
    scaled (a call on it): completed, left as written: cblinear."""
    if not isinstance(value, ast.List) or not value.elts:
        return None
    items = [ast.unparse(e) for e in value.elts]
    if items[0] not in inputs:
        return None
    if len(items) == 1 and not c2:
        return "batchnorm"
    if items[1:] != ["c2", "*args[1:]"] or not c2 or c2[0] != "args[0]":
        return None
    if len(c2) == 1:
        return "cblinear"
    scaled = all(isinstance(v, ast.Call) and "c2" in ast.unparse(v) for v in c2_values[1:])
    return "completed" if scaled else None
