"""YD106, YD110, YD111: the blocks YOLOv5's parse_model may not know as written. How each row is
completed (its channel rule: stock YOLOv5's, read from your checkout's yolo.py, declared, or
assumed) and whose class builds it (yours, or the table's when yours behaves the same)."""

from __future__ import annotations

from collections.abc import Iterator

from yolodiag.checks.engine import Facts
from yolodiag.findings import Problem, Severity, Stage, check

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


@check("YD106", "not-channel-aware", E, Stage.SPEC)
def not_channel_aware(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A module whose constructor takes `(c1, c2, ...)` (input and output widths) but that
        YOLOv5's parse_model does not treat as channel-aware: it gets the YAML's arguments
        unchanged (no input width inserted, no width_multiple) and parse_model records its
        output width as its input width. Reported when that disagrees with what the arguments
        build: the first argument is not the real input width, or the second changes it.
        An error when the block's rule says passthrough (a torch class, a stock class, a
        block your checkout's yolo.py does not register, or one declared `passthrough`: "not
        registered"); a warning for a --modules block with no declared rule and no yolo.py
        read, which yolodiag builds as channel-aware from its signature although stock YOLOv5
        would not, unless your yolo.py registers it; also when such a block's row spells out
        `[c1, c2, ...]` with the real widths, as written for the fallback: yolodiag's assumed
        completion inserts the input width again and checks other arguments than stock builds
        (DGSConv [64, 64, 3, 1] checked as DGSConv(64, 64, 64, 3, 1)). The rows of one module
        with the same problem are one finding listing the layers. A row whose raw arguments
        cannot even build the class is the build failure itself (YD202, which says why), and
        the rows after it are not reported: YOLOv5 never gets there.
    Why it zeroes P and R:
        The block is built for the wrong input (a crash), or later rows are built for a width
        it does not produce; with `width_multiple` the YAML's numbers are not even scaled.
    Why it is an error:
        Under a passthrough rule the widths disagree by construction: the block's first layer
        receives other channels than it was built for, or the next layer reading it does, so
        YOLOv5's own build (its stride probe forward) raises and nothing trains. Measured on
        the example below: YOLOv5 v7.0's `Model()` stops with a RuntimeError (layer 7 built
        for 128 input channels receives 192). The warning case is not measured: the model
        checked is the channel-aware one, which builds.
    Example:
        [-1, 1, nn.Conv2d, [64, 128, 3, 2, 1]]
    Fix:
        Use a channel-aware module (Conv), or register the block in parse_model's channel-aware
        set (the list of modules that get `c1, c2 = ch[f], args[0]`) and write only
        `[c2, ...]` in the YAML; with --modules, declare it: `YOLODIAG_RULES = {"Name":
        "channels"}` or `--rule Name=channels`.
    """
    from yolodiag.usermodules import RuleSource, channel_parameters, register_fix, why_raw

    stopped = facts.stopped
    failed = (stopped.location.layer if stopped is not None and stopped.code == "YD202"
              else None)
    groups: dict[tuple[str, bool], list] = {}
    for planned in facts.plan:
        if failed is not None and planned.row.index >= failed:
            break  # that row's build failure is the finding; YOLOv5 stops there
        entry = planned.entry
        assumed = entry.decided == RuleSource.SIGNATURE
        if planned.done is None or not (entry.rule == "passthrough" or assumed):
            continue
        if channel_parameters(entry.load()) is None:
            continue
        spelled = assumed and _spells_widths(planned)
        if _width_kept(planned) and not spelled:
            continue
        groups.setdefault((planned.row.module, assumed, spelled), []).append(planned)
    for (module, assumed, spelled), rows in groups.items():
        entry = rows[0].entry
        built = "; ".join(_raw_build(p) for p in rows)
        layers = [p.row.index for p in rows]
        data = {"module": module, "layers": layers, "args": list(rows[0].args),
                "input_channels": rows[0].inputs[0],
                "parse_model_output_channels": rows[0].inputs[0]}
        if spelled:
            first = rows[0]
            yield Problem(
                f"{module} ({entry.factory}) has no declared rule and no yolo.py of yours was "
                f"read: yolodiag builds it as channel-aware from its signature, but the YAML "
                f"spells out its widths, as for a block stock {facts.possessive} parse_model does "
                f"not know and passes the arguments as written: layer {first.row.index} "
                f"{module}({', '.join(map(repr, first.args))}) is checked as "
                f"{module}({', '.join(map(repr, first.done.args))}) (layers "
                f"{', '.join(map(str, layers))})",
                f"if your parse_model does not register {module}, declare it: --rule "
                f"{module}=passthrough (or YOLODIAG_RULES = {{{module!r}: 'passthrough'}}); if "
                f"it does, write `[c2, ...]` without the input width",
                facts.where(layers[0]), {**data, "assumed_rule": entry.rule}, severity=W)
            continue
        if assumed:
            yield Problem(
                f"{module} ({entry.factory}) has no declared rule and no yolo.py of yours was "
                f"read: yolodiag builds it as channel-aware from its signature, but stock "
                f"{facts.title} does not know it; unless your yolo.py registers it, parse_model "
                "passes "
                f"it the YAML's arguments: {built}",
                f"{register_fix(module, facts.dialect)}; then declare it: "
                f"YOLODIAG_RULES = {{{module!r}: 'channels'}} or --rule {module}=channels",
                facts.where(layers[0]),
                {**data, "assumed_rule": entry.rule}, severity=W)
            continue
        yield Problem(f"parse_model passes {module} the YAML's arguments unchanged "
                      f"({why_raw(entry, facts.dialect)}): {built}",
                      register_fix(module, facts.dialect, entry),
                      facts.where(layers[0]), data)


def _raw_build(planned) -> str:
    """What a row builds from the YAML's arguments as they are, and what it receives."""
    from yolodiag.usermodules import channel_parameters, raw_widths

    module, args, c_in = planned.row.module, planned.args, planned.inputs[0]
    call = f"layer {planned.row.index} {module}({', '.join(map(repr, args))})"
    widths = raw_widths(planned.entry.load(), args)
    if isinstance(widths, str):
        return f"{call} cannot be built ({widths})"
    built_for, gives = widths
    names = channel_parameters(planned.entry.load())
    counted = f"parse_model counts its output as {c_in}"
    if built_for != c_in:
        return (f"{call} is built for {built_for} input channels ({names[0]}) but receives "
                f"{c_in}, and {counted}")
    return f"{call} gives {gives} channels ({names[1]}), but {counted}"


@check("YD110", "user-module-rule", INFO, Stage.SPEC)
def user_module_rule(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A block the YAML uses whose channel rule yolodiag assumed, as no YOLOv5 code says
        it: a --modules block with no declared rule (neither YOLODIAG_RULES in its file nor
        --rule, and no checkout's yolo.py that registers it), or a block of yolodiag's own
        table that is not a YOLOv5 v7.0 module (the seed's BasicBlock, assumed registered in
        parse_model's channel-aware set as the seed did). It says which rule, and what stock
        YOLOv5's parse_model would do instead. Inferred: channel-aware when the
        constructor's first two parameters name input and output widths (c1, c2;
        in_channels, out_channels; inp, oup; ch_in, ch_out...), also taking the repeat count
        when the third is `n`; otherwise YOLOv5's fallback (raw arguments, output width =
        input width). A block your yolo.py gives a parse_model branch that none of yolodiag's
        rules mirrors is reported with that branch's line. (A class redefining a stock name
        keeps that name's rule, as in YOLOv5: YD111 reports it.) When the inferred
        channel-aware rule differs from what stock YOLOv5 would build, YD106 (a warning)
        says so instead.
    Why it zeroes P and R:
        It does not by itself: the analysis holds for the rule stated. If your yolo.py
        handles the block differently, the model YOLOv5 builds differs from the one checked.
    Example:
        yolodiag check --modules blocks.py
        [-1, 1, SEBlock, [64]]
    Fix:
        Declare the rule your parse_model applies (blocks.py: `SEBlock(channels,
        reduction=16)`): `YOLODIAG_RULES = {"SEBlock": "input"}` in the file, or `--rule
        SEBlock=input`. Rules: channels, channels+repeats, passthrough, out=args0, input,
        concat-sum, concat-max, detect, or a function of RuleInput. Pass the file from your
        checkout (`--modules models/common.py`) and its yolo.py's registrations are read.
    """
    from yolodiag.usermodules import RuleSource, channel_parameters

    warned = {p.row.module for p in facts.plan if p.entry.decided == RuleSource.SIGNATURE
              and p.done is not None and (not _width_kept(p) or _spells_widths(p))}
    assumed = (RuleSource.SIGNATURE, RuleSource.FALLBACK, RuleSource.UNMAPPED)
    seen: set[str] = set()
    for planned in facts.plan:
        entry, module = planned.entry, planned.row.module
        seed = entry.cls is None and entry.decided == "seed"
        if module in seen or module in warned or not (
                seed or (entry.cls is not None and entry.decided in assumed)):
            continue
        seen.add(module)
        layers = [p.row.index for p in facts.plan if p.row.module == module]
        data = {"module": module, "assumed_rule": entry.rule, "decided": entry.decided,
                "layers": layers}
        if seed:
            yield Problem(
                f"{module} is not {_article(facts.dialect.full_title)} module: yolodiag builds "
                "it as "
                f"the seed's block ({entry.factory.partition(':')[0].replace('.', '/')}.py), "
                "registered in "
                "parse_model's channel-aware set as the seed did, so it gets (c1, c2, *args) "
                f"(layers {', '.join(map(str, layers))})",
                f"if your {module} or your parse_model differs, say so: --modules with the "
                f"file holding your {module} (your checkout's "
                f"{facts.dialect.example('blocks_file')}: the "
                f"{facts.dialect.example('parser_file')} beside it is read), or --rule "
                f"{module}=passthrough if your {facts.dialect.example('parser_file')} does not "
                f"register it", facts.where(planned.row.index), data)
            continue
        names = channel_parameters(entry.cls)
        if names is not None:
            because = f"its constructor starts ({names[0]}, {names[1]})"
            stock = ("passthrough (raw arguments, output width = input width), "
                     f"{_fallback_build(planned)}")
        else:
            because = "its constructor does not start with input and output widths"
            stock = f"the same (stock {facts.title} passes unknown modules their raw arguments)"
        declared = "has no declared rule"
        if entry.decided == RuleSource.UNMAPPED:
            declared = (f"has a parse_model branch of its own at {entry.registered_by}, which "
                        f"none of yolodiag's rules mirrors")
        yield Problem(
            f"{module} from {entry.factory} {declared}: yolodiag assumes {entry.rule} because "
            f"{because}; stock {facts.possessive} parse_model would apply {stock}",
            f"if your parse_model registers {module} differently, declare it: "
            f"YOLODIAG_RULES = {{{module!r}: '<rule>'}} or --rule {module}=<rule>",
            facts.where(planned.row.index), data)


def _width_kept(planned) -> bool:
    """The row's raw arguments already name the real widths: the fallback's build agrees with
    parse_model's count of its output."""
    args, c_in = planned.args, planned.inputs[0]
    return bool(args) and args[0] == c_in and (len(args) < 2 or args[1] == c_in)


def _bindings(planned) -> tuple[dict | None, dict | None]:
    """The constructor values the raw and the completed call bind (None: it binds none)."""
    import inspect

    try:
        signature = inspect.signature(planned.entry.load())
    except (TypeError, ValueError):
        return None, None
    bound = []
    for args in (planned.args, planned.done.args if planned.done is not None else None):
        try:
            call = signature.bind(*args) if args is not None else None
        except TypeError:
            call = None
        if call is not None:
            call.apply_defaults()
        bound.append(call.arguments if call is not None else None)
    return bound[0], bound[1]


def _fallback_build(planned) -> str:
    """What the fallback builds of a row, beside the completion yolodiag checks."""
    raw, done = _bindings(planned)
    if raw is not None and raw == done:
        return "which builds this row the same way"
    module = planned.row.module
    written = f"{module}({', '.join(map(repr, planned.args))})"
    if planned.done is None:
        return f"which builds {written}"
    completed = f"{module}({', '.join(map(repr, planned.done.args))})"
    return f"which builds {written}, not the {completed} of the rule assumed"


def _spells_widths(planned) -> bool:
    """The YAML writes `[c1, c2, ...]` with the real widths, as for a block the family's
    parse_model does not know (its fallback builds that call as written), while the completion
    of the rule yolodiag assumed inserts the input width again: the two calls bind other
    constructor values (DGSConv [64, 64, 3, 1] checked as DGSConv(64, 64, 64, 3, 1))."""
    if len(planned.args) < 2 or not _width_kept(planned):
        return False
    raw, done = _bindings(planned)
    return raw is not None and done is not None and raw != done


@check("YD111", "stock-module-replaced", INFO, Stage.SPEC)
def stock_module_replaced(facts: Facts) -> Iterator[Problem]:
    """
    What it detects:
        A --modules file defines a class under a name of yolodiag's module table (Concat, C3,
        GhostConv, the seed's BasicBlock...) that the YAML uses, and the class differs from
        the table's: built with the same representative arguments, its weights (state_dict
        names and shapes) or its output on the same input differ. The user's class replaces
        the table's, as a redefinition in common.py does, and every row naming it builds the
        user's class. A class that behaves as the table's (the stock classes of your own
        common.py) is the table's: no finding. With --repo: your YOLOv5's class of a stock
        name whose constructor takes other parameters.
    Why it zeroes P and R:
        It does not by itself. It explains a model that differs from stock: another
        constructor (Concat as a weighted BiFPN node), other parameters, checkpoints of the
        stock model that no longer transfer into those layers.
    Example:
        yolodiag check --modules concat.py
        [[-1, 3], 1, Concat, [1]]
    Fix:
        Nothing if intended. Otherwise restore the stock class (or rename yours), or declare
        its rule if your parse_model treats it differently from the stock name
        (YOLODIAG_RULES, --rule).
    """
    seen: set[str] = set()
    for planned in facts.plan:
        entry, module = planned.entry, planned.row.module
        table = facts.dialect.modules.get(module)
        if entry.differs is None or table is None or module in seen:
            continue
        seen.add(module)
        rows = [p.row.index for p in facts.plan if p.row.module == module]
        built = (f"it builds layers {', '.join(map(str, rows))} with rule {entry.rule}"
                 f" (the table's: {table.rule})")
        if table.decided == "seed":
            message = (f"your {module} ({entry.factory}) is not the block yolodiag's table "
                       f"holds under that name ({module} is no {facts.dialect.full_title} "
                       "module; the "
                       f"table's is the seed's block of the bundled example): "
                       f"{entry.differs}; yours is the one checked: {built}")
            hint = f"nothing if intended: your {module} is the one checked"
        else:
            message = (f"your {module} ({entry.factory}) differs from stock {facts.possessive}: "
                       f"{entry.differs}; {built}")
            hint = (f"nothing if intended; if the stock {module} was meant, restore it (or "
                    f"rename yours)")
        yield Problem(message, hint, facts.where(planned.row.index),
                      {"module": module, "layers": rows, "rule": entry.rule,
                       "stock_rule": table.rule, "differs": entry.differs})


def _article(title: str) -> str:
    return f"an {title}" if title[:1] in "AEIOU" else f"a {title}"
