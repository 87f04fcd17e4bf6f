"""YAML text -> ModelSpec, as the YAML's dialect reads it, with YAML line numbers.

YOLOv5 reads a model YAML with `yaml.safe_load` and then runs Python's eval on every module
name and every string argument. This module reads the same YAML (same safe loader, so the same
values), picks the dialect that claims it (`dialects.choose`, or --dialect), and resolves those
strings through closed tables instead: that dialect's module names and activations, the
activation grammar (`nn.LeakyReLU(0.1)`), the symbols `nc`, `anchors` and `None`, and known
string literals. Anything else is refused with a finding that names file, line and layer;
nothing is evaluated. It must not import torch: the spec stage runs in milliseconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from pathlib import Path
from typing import Any

import yaml

from yolodiag.findings import Location, Refused, Unsupported
from yolodiag.spec.model import Activation, ArgValue, LayerSpec, ModelSpec, Scaling, Symbol
from yolodiag.yaml_text import ascii_text

SECTIONS = ("backbone", "head")
# Strings YOLOv5's eval leaves as they are (NameError, suppressed): interpolation and padding
# modes passed to torch.nn classes.
KNOWN_LITERALS = frozenset({
    "nearest", "linear", "bilinear", "bicubic", "trilinear", "area", "nearest-exact",
    "zeros", "reflect", "replicate", "circular", "same", "valid",
})
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)")
_DOTTED_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_ACTIVATION_CALL = re.compile(r"(?:torch\.)?nn\.([A-Za-z][A-Za-z0-9]*)\((.*)\)")
_KEYWORD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)")


def _refuse(code: str, message: str, hint: str, location: Location) -> Refused:
    return Refused(code, message, hint, location)


def module_names(path: str | Path) -> frozenset[str]:
    """The module names a YAML's rows use, read without building anything (for --repo, whose
    code defines names no table of ours holds). Unreadable input: none; load_spec says why."""
    from yolodiag.build.plan import canonical_name

    try:
        data = yaml.safe_load(ascii_text(Path(path).read_bytes())[0])
    except (OSError, yaml.YAMLError):
        return frozenset()
    rows = [row for key in ("backbone", "head") if isinstance(data, dict)
            and isinstance(data.get(key), list) for row in data[key]]
    return frozenset(canonical_name(row[2]) for row in rows
                     if isinstance(row, list) and len(row) == 4 and isinstance(row[2], str))


def load_spec(path: str | Path, *, extra_modules: frozenset[str] = frozenset(),
              dialect: str = "auto", scale: str | None = None) -> ModelSpec:
    """Read a model YAML file into a ModelSpec as `dialect` reads it ("auto": the one that
    claims it), at `scale` for a family with a scales table (None: as its code picks one);
    raise Refused (YD100-YD105, YD113) when we cannot."""
    path, named = Path(path), str(path)
    path = _located(path, dialect)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _refuse("YD100", f"cannot read the file: {e.strerror or e}", "check the path",
                      Location(file=str(path))) from e
    text, dropped = ascii_text(raw)  # as YOLOv5 opens it: ASCII, other characters dropped
    spec = parse_spec(text, str(path), extra_modules=extra_modules, dialect=dialect, scale=scale,
                      named=named)
    return spec if dropped is None else dataclasses.replace(spec, dropped=dropped)


def parse_spec(text: str, path: str = "<yaml>", *, extra_modules: frozenset[str] = frozenset(),
               dialect: str = "auto", scale: str | None = None,
               named: str | None = None) -> ModelSpec:
    """Parse model YAML text into a ModelSpec; raise Refused (YD100-YD105, YD113) when we
    cannot. `named`: the name the user gave, when a family read another file for it."""
    return _SpecReader(text, path, extra_modules, dialect, scale, named).read()


def _located(path: Path, dialect: str) -> Path:
    """The file a family's own code reads for a name that is not a file (Ultralytics:
    `yolo11n.yaml` is `yolo11.yaml` at scale n); the path itself otherwise."""
    from yolodiag.dialects import AUTO, DIALECTS

    if path.is_file():
        return path
    for family in DIALECTS.values():
        if family.locate is not None and dialect in (AUTO, family.name):
            found = family.locate(path)
            if found is not None:
                return found[0]
    return path


class _SpecReader:
    def __init__(self, text: str, path: str, extra_modules: frozenset[str], dialect: str,
                 scale: str | None = None, named: str | None = None):
        from yolodiag.dialects import DEFAULT, DIALECTS

        self.text = text
        self.path = path
        self.extra_modules = extra_modules
        self.requested = dialect
        self.requested_scale = scale
        self.named = named or path
        self.dialect = DIALECTS[DEFAULT]  # until the YAML's data says which (messages)
        self.module_names = frozenset(self.dialect.modules) | extra_modules
        self.activations = self.dialect.activations

    def where(self, line: int | None = None, layer: int | None = None,
              section: str | None = None) -> Location:
        return Location(file=self.path, line=line, layer=layer, section=section)

    def read(self) -> ModelSpec:
        root = self._compose()
        keys = {k.value: (k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode)}
        key_lines = {name: k.start_mark.line + 1 for name, (k, _) in keys.items()}
        try:
            data = yaml.SafeLoader("").construct_document(root)
        except yaml.MarkedYAMLError as e:  # e.g. a !!python/... tag: the safe loader refuses it
            mark = e.problem_mark or e.context_mark
            raise _refuse("YD100", f"not plain YAML data: {e.problem or e}",
                          "remove the tag; a model YAML holds numbers, strings and lists",
                          self.where(mark.line + 1 if mark else None)) from e

        def line_of(name: str) -> int | None:
            return key_lines.get(name)

        chosen = self._choose(data)
        for key in ("nc", *chosen.dialect.required_keys, "backbone", "head"):
            if key not in data:
                raise _refuse("YD101", f"the key `{key}` is missing ({self.title} requires it)",
                              f"add `{key}:` at the top level", self.where())
        nc = data["nc"]
        if not _is_int(nc) or nc < 1:
            raise _refuse("YD101", f"`nc` must be a positive integer, got {nc!r}",
                          "set `nc:` to the number of classes", self.where(line_of("nc")))
        scaling = self._scaling(data, chosen.dialect, line_of)
        anchors = self._anchors(data["anchors"], line_of("anchors")) if "anchors" in data else ()
        activation = None
        if data.get("activation") is not None:
            activation = self._activation(data["activation"], self.where(line_of("activation")))
        ch = data.get("ch", 3)
        if not _is_int(ch) or ch < 1:
            raise _refuse("YD101", f"`ch` must be a positive integer, got {ch!r}",
                          "remove `ch:` or set it to the input channels", self.where(line_of("ch")))

        layers: list[LayerSpec] = []
        for section in SECTIONS:
            node = keys[section][1]
            rows = data[section]
            if not isinstance(rows, list) or not isinstance(node, yaml.SequenceNode):
                raise _refuse("YD101", f"`{section}` must be a list of layer rows, "
                              f"got {type(rows).__name__}", f"write `{section}:` as a YAML list",
                              self.where(line_of(section), section=section))
            for row, row_node in zip(rows, node.value):
                layers.append(self._layer(len(layers), row, row_node.start_mark.line + 1, section))
        if not layers:
            raise _refuse("YD101", "`backbone` and `head` hold no layers", "add layer rows",
                          self.where(line_of("backbone")))
        return ModelSpec(
            path=self.path, nc=nc, depth_multiple=scaling.depth_multiple,
            width_multiple=scaling.width_multiple, anchors=anchors, layers=tuple(layers),
            activation=activation, ch=ch, key_lines=key_lines, dialect=chosen.dialect.name,
            dialect_reason=chosen.reason, scale=scaling.scale, scale_source=scaling.source,
            scale_reason=scaling.reason, max_channels=scaling.max_channels,
            options=scaling.options)

    def _scaling(self, data: dict, dialect, line_of) -> Scaling:
        """The depth and width the rows are scaled by: the family's own reading (a scales
        table) where it has one, else `depth_multiple`/`width_multiple` (1.0 when absent)."""
        if dialect.read_scaling is not None:
            return dialect.read_scaling(data, self.path, self.named, self.requested_scale,
                                        line_of)
        multiples = {}
        for key in ("depth_multiple", "width_multiple"):
            value = data.get(key, 1.0)
            if not _is_number(value) or value <= 0:
                raise _refuse("YD101", f"`{key}` must be a positive number, got {value!r}",
                              f"set `{key}:` (1.0 keeps the YAML as written)",
                              self.where(line_of(key)))
            multiples[key] = value
        return Scaling(multiples["depth_multiple"], multiples["width_multiple"])

    def _choose(self, data: Any):
        """The dialect the rows are read as; its table and title from here on."""
        from yolodiag.dialects import UnknownDialect, choose

        try:
            chosen = choose(data, self.requested)
        except UnknownDialect as e:
            raise Unsupported(str(e)) from e
        self.dialect = chosen.dialect
        self.module_names = frozenset(self.dialect.modules) | self.extra_modules
        self.activations = self.dialect.activations
        return chosen

    @property
    def title(self) -> str:
        return self.dialect.title

    def _compose(self) -> yaml.MappingNode:
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark else None
            column = mark.column + 1 if mark else None
            raise _refuse("YD100", f"not valid YAML: {e.problem or e}", "fix the YAML syntax",
                          Location(file=self.path, line=line, column=column)) from e
        except yaml.YAMLError as e:
            raise _refuse("YD100", f"not valid YAML: {e}", "fix the YAML syntax",
                          self.where()) from e
        if not isinstance(root, yaml.MappingNode):
            kind = "empty" if root is None else "not a mapping"
            raise _refuse("YD100", f"the document is {kind}",
                          "a model YAML is a mapping with nc, anchors, backbone and head",
                          self.where(root.start_mark.line + 1 if root is not None else None))
        return root

    def _anchors(self, value: Any, line: int | None) -> tuple[tuple[float, ...], ...] | int:
        where = self.where(line)
        if _is_int(value):
            if value < 1:
                raise _refuse("YD101", f"`anchors: {value}` must be at least 1",
                              "give anchors per level, or a positive count", where)
            return value
        if not isinstance(value, list) or not value:
            raise _refuse("YD101", f"`anchors` must be a list of rows or a count, got {value!r}",
                          "write one `[w,h, w,h, ...]` row per detection level", where)
        rows = []
        for number, row in enumerate(value):
            if not isinstance(row, list) or not row or not all(_is_number(a) for a in row):
                raise _refuse("YD101", f"anchor row {number} must be a list of numbers, "
                              f"got {row!r}", "write pixel sizes `[w,h, w,h, ...]`", where)
            rows.append(tuple(row))
        return tuple(rows)

    def _layer(self, index: int, row: Any, line: int, section: str) -> LayerSpec:
        where = self.where(line, index, section)
        if not isinstance(row, list) or len(row) != 4:
            raise _refuse("YD102", f"a layer row must be [from, number, module, args], got {row!r}",
                          "write the row as `[from, number, module, [args]]`", where)
        from_, number, module, args = row
        from_ = self._from(from_, index, where)
        if not _is_int(number) or number < 1:
            raise _refuse("YD102", f"`number` must be an integer >= 1, got {number!r}",
                          "write how many times the module repeats", where)
        if not isinstance(module, str):
            raise _refuse("YD102", f"`module` must be a name, got {module!r}",
                          f"write a module name such as {self.dialect.example('block')}", where)
        module = self._module(module, where)
        if not isinstance(args, list):
            raise _refuse("YD102", f"`args` must be a list, got {args!r}",
                          "write the arguments as a YAML list, e.g. [64, 3, 2]", where)
        resolved = tuple(self._argument(a, i, where) for i, a in enumerate(args))
        return LayerSpec(index, from_, number, module, resolved, section, line)

    def _from(self, value: Any, index: int, where: Location) -> int | tuple[int, ...]:
        if _is_int(value):
            sources: tuple[int, ...] = (value,)
        elif isinstance(value, list) and value and all(_is_int(v) for v in value):
            sources = tuple(value)
        else:
            raise _refuse("YD102", f"`from` must be an integer or a list of integers, "
                          f"got {value!r}", "write -1 for the previous layer, or layer indices",
                          where)
        for source in sources:
            if source == -1:
                if index == 0 and len(sources) > 1:
                    raise _refuse("YD104", "layer 0 can only read the input image (`from: -1`)",
                                  "use `from: -1` on the first layer", where)
                continue
            target = index + source if source < 0 else source
            if target >= index:
                problem = "itself" if target == index else f"the later layer {target}"
                raise _refuse("YD104", f"`from` {source} points to {problem}",
                              f"point to an earlier layer (0..{index - 1})", where)
            if target < 0:
                raise _refuse("YD104", f"`from` {source} points before layer 0",
                              f"use an index between {-index} and {index - 1}", where)
        return value if isinstance(value, int) else sources

    def _module(self, name: str, where: Location) -> str:
        from yolodiag.build.plan import canonical_name

        if not _DOTTED_NAME.fullmatch(name):
            raise _refuse("YD105", f"module `{name}` is an expression, not a name; "
                          f"{self.title} would evaluate it, yolodiag refuses it",
                          "write a module name", where)
        if canonical_name(name) in self.module_names:
            return canonical_name(name)
        close = difflib.get_close_matches(canonical_name(name), self.module_names, n=3,
                                          cutoff=0.6)
        hint = (f"did you mean {', '.join(close)}?" if close else
                f"use a {self.dialect.full_title} module name, or give your own block's class with "
                "--modules FILE.py")
        raise _refuse("YD103", f"unknown module `{name}`", hint, where)

    def _argument(self, value: Any, position: int, where: Location) -> ArgValue:
        if isinstance(value, list):
            # YOLOv5 only evaluates top-level strings: nested values pass through as written.
            return tuple(_freeze(v) for v in value)
        if isinstance(value, dict):
            raise _refuse("YD102", f"argument {position} is a mapping {value!r}",
                          "write arguments as a list of values", where)
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text in self.dialect.symbols:
            return Symbol(text)
        if text == "None":
            return None
        if text in ("True", "False"):
            return text == "True"
        if _NUMBER.fullmatch(text):
            return float(text) if any(c in text for c in ".eE") else int(text)
        if text in KNOWN_LITERALS:
            return text
        if _ACTIVATION_CALL.fullmatch(text):
            return self._activation(text, where)
        raise _refuse("YD105", f"argument {position} `{value}` is an expression {self.title} would "
                      "evaluate; yolodiag never evaluates it",
                      "use a number, nc, anchors, None, a known string such as 'nearest', "
                      "or an activation such as nn.SiLU()", where)

    def _activation(self, text: Any, where: Location) -> Activation:
        hint = f"write one of {', '.join('nn.' + a + '()' for a in self.activations[:4])}, ..."
        match = _ACTIVATION_CALL.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None or match.group(1) not in self.activations:
            raise _refuse("YD105", f"activation `{text}` is not a known activation call; "
                          "yolodiag never evaluates it", hint, where)
        args: list[Any] = []
        kwargs: list[tuple[str, Any]] = []
        body = match.group(2).strip()
        for part in filter(None, (p.strip() for p in body.split(","))) if body else ():
            keyword = _KEYWORD.fullmatch(part)
            literal = _literal(keyword.group(2).strip() if keyword else part)
            if literal is _INVALID:
                raise _refuse("YD105", f"activation `{text}` has the non-literal argument "
                              f"`{part}`", "use numbers, True or False", where)
            if keyword:
                kwargs.append((keyword.group(1), literal))
            elif kwargs:
                raise _refuse("YD105", f"activation `{text}`: positional after keyword",
                              "put positional arguments first", where)
            else:
                args.append(literal)
        return Activation(match.group(1), tuple(args), tuple(kwargs))


_INVALID = object()


def _literal(text: str) -> Any:
    if _NUMBER.fullmatch(text):
        return float(text) if any(c in text for c in ".eE") else int(text)
    return {"True": True, "False": False, "None": None}.get(text, _INVALID)


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite int or float (YAML's .inf and .nan are floats YOLOv5 would choke on)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
