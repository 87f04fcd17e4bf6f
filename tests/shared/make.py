"""Builds tests/shared, the tests' copy of the project's `../shared`: the files the tests use,
byte-exact (COPIED), the stock YOLOv5 YAMLs without their comments (STRIPPED) and the golden
checkpoints shrunk (SHRUNK), and MANIFEST.json, the sha256 of each copy and of its original.
Run it again after ../shared changes: `python tests/shared/make.py [SOURCE]` (SOURCE defaults
to `../shared` beside the repository; `--manifest` records the hashes only). README.md beside
this file says what each file is and what was changed.

A checkpoint is shrunk at the archive level, never unpickled: its `data.pkl` keeps every opcode,
so every global it names (models.yolo.DetectionModel, ultralytics.nn.tasks.DetectionModel, ...),
every dict key and every tensor's size and dtype stay as written; only the tensors' storages
shrink. A storage of at most KEEP elements is kept whole (anchors, strides, BatchNorm counters,
small biases keep their values); a larger one keeps its first KEEP elements, and every tensor
built on it gets storage offset 0 and all strides 0 in the pickle: the same size, one value
repeated. The record sizes in the pickle's persistent ids are edited to match. The result is
then read back: the project's own safe reader must give the same facts as from the original.
"""

from __future__ import annotations

import hashlib
import json
import pickletools
import shutil
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

# Copied byte for byte; a folder means every file under it (the tests list these folders).
# Not copied: yamls/community, other people's GPL and AGPL YAMLs and module sources, which an
# MIT repository does not take in (test_usermodules skips without ../shared).
COPIED_FOLDERS = (
    "golden/data/shapes",         # test_data, test_data_paths, test_runs copy the dataset
    "golden/runs/seed-stale",     # test_checkpoint reads the run folder
    "golden/yolov7/runs/tiny-scratch",  # the YOLOv7 run folders `run` reads
    "golden/yolov7/runs/resnet18-scratch",
    "golden/ultralytics/runs/yolo11n-shapes-3ep",  # the Ultralytics run folder `run` reads
    "yamls/ultralytics/resnet18",  # the seed's recipe in YOLO11 and YOLOv8 form, and the fix
)
COPIED_FILES = (
    "yamls/resnet18/basicblock_seed.py",
    "yamls/resnet18/yolov5n-resnet18.yaml",
    "yamls/resnet18/yolov5s-resnet18.yaml",
    "yamls/resnet18/yolov5s-resnet18-fixed.yaml",
    "golden/yolov5-v7.0-build.json",
    "golden/transfers.json",
    # the tests rebuild outputs from these weights: every value matters, kept whole
    "golden/numerics/yolov5n.numerics.pt",
    "golden/numerics/yolov5n-resnet18.numerics.pt",
    "golden/numerics/ap_per_class.pt",
    "golden/yolov7/build.json",  # test_yolov7_golden
    "golden/yolov7/numerics/yolov7-tiny.numerics.pt",
    "golden/yolov7/numerics/ap_per_class.pt",
    "golden/yolov7/transfers.json",
    "yamls/yolov7/resnet18/yolov7-tiny-resnet18.yaml",
    "yamls/yolov7/resnet18/yolov7-tiny-resnet18-fixed.yaml",
    "golden/ultralytics/build.json",  # test_ultralytics_golden
    "golden/ultralytics/transfers.json",
    "golden/ultralytics/numerics/yolo11n.numerics.pt",
    "golden/ultralytics/numerics/yolov8n.numerics.pt",
    "golden/ultralytics/numerics/yolo11n-resnet18.numerics.pt",
    "golden/ultralytics/numerics/ap_per_class.pt",
    "golden/ultralytics/numerics/match_predictions.pt",
)
# YOLOv5's stock YAMLs (test_checks and test_fuzz read every one) are AGPL-3.0 text: only their
# facts are kept, every comment removed and every line kept, so that line numbers stay the
# originals'.
STRIPPED = ("yamls/stock", "yamls/yolov7/stock",  # YOLOv7's are GPL-3.0 text: the same
            "yamls/ultralytics/stock")  # and Ultralytics' AGPL-3.0 text
SHRUNK = (
    "golden/checkpoints/yolov5s-release-format.pt",
    "golden/checkpoints/yolov5n-midtrain-pkg.pt",
    "golden/checkpoints/yolov5n-resnet18-repo.pt",
    "golden/ultralytics/checkpoints/yolo11n-release-format.pt",
    "golden/ultralytics/checkpoints/yolo11n-shapes-3ep-best.pt",
    "golden/yolov7/checkpoints/yolov7-tiny-stripped-format.pt",
)
OWN = ("README.md", "make.py", "MANIFEST.json")  # this folder's own files, not copies
MANIFEST = "MANIFEST.json"  # per file: the sha256 of the copy here and of its original
KEEP = 64  # elements a storage keeps: its first record stays over 16 bytes, which the CRC test
# flips (test_checkpoint_format), and small tensors keep every value

INT_OPS = {"BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG"}
MEMO_OPS = {"BINPUT", "LONG_BINPUT", "MEMOIZE", "PUT"}
GET_OPS = {"BINGET", "LONG_BINGET", "GET"}
PUSH_OPS = {"BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "UNICODE", "GLOBAL"} | INT_OPS


def copied(source: Path) -> list[str]:
    """The copied files, relative paths, as `source` holds them now."""
    return list(COPIED_FILES) + _under(source, COPIED_FOLDERS)


def stripped(source: Path) -> list[str]:
    """The YAMLs copied without comments, relative paths."""
    return _under(source, STRIPPED)


def _under(source: Path, folders: tuple[str, ...]) -> list[str]:
    return [p.relative_to(source).as_posix() for folder in folders
            for p in sorted((source / folder).rglob("*")) if p.is_file()]


def without_comments(text: str) -> str:
    """The YAML with every `#` comment removed (outside quotes, at a line's start or after a
    blank) and trailing blanks trimmed; every line stays, so line numbers do not move."""
    lines = []
    for line in text.split("\n"):
        quote = None
        for i, c in enumerate(line):
            if quote:
                quote = None if c == quote else quote
            elif c in "'\"":
                quote = c
            elif c == "#" and (i == 0 or line[i - 1] in " \t"):
                line = line[:i]
                break
        lines.append(line.rstrip())
    return "\n".join(lines)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the pickle ------------------------------------------------------------------------------


def _int_op(value: int) -> bytes:
    """The shortest opcode pushing a small non-negative int (BININT1, BININT2)."""
    if value < 256:
        return b"K" + bytes([value])
    assert value < 65536, value
    return b"M" + value.to_bytes(2, "little")


def _tuple_ops(ops: list, at: int) -> tuple[list[int], int]:
    """Indices of the int opcodes of the tuple that starts at `at`, and the index after it
    (and after its memo opcode)."""
    name = ops[at][0].name
    if name == "EMPTY_TUPLE":
        items, end = [], at + 1
    elif name == "MARK":
        end = at + 1
        while ops[end][0].name != "TUPLE":
            end += 1
        items, end = list(range(at + 1, end)), end + 1
    else:
        end = at
        while ops[end][0].name in INT_OPS:
            end += 1
        assert ops[end][0].name in ("TUPLE1", "TUPLE2", "TUPLE3"), ops[end][0].name
        items, end = list(range(at, end)), end + 1
    assert all(ops[i][0].name in INT_OPS for i in items), [ops[i][0].name for i in items]
    if end < len(ops) and ops[end][0].name in MEMO_OPS:
        end += 1
    return items, end


def shrink_pickle(data: bytes, keep: int = KEEP) -> tuple[bytes, dict[str, tuple[int, int]]]:
    """`data.pkl` with storages over `keep` elements cut to `keep` (persistent ids edited) and
    the tensors on them at offset 0 and strides 0. Returns the new pickle and, per storage key,
    its element count before and after. Only integer opcodes change, so memo indices stay
    valid."""
    ops = list(pickletools.genops(data))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2 and not any(
        op.name == "FRAME" for op, _, _ in ops), "torch.save's protocol 2 expected"
    ends = [pos for _, _, pos in ops[1:]] + [len(data)]
    memo: dict[int, object] = {}
    replace: dict[int, bytes] = {}
    numel: dict[str, tuple[int, int]] = {}
    for index, (op, arg, _) in enumerate(ops):
        if op.name in MEMO_OPS and ops[index - 1][0].name in PUSH_OPS:
            memo[len(memo) if op.name == "MEMOIZE" else arg] = ops[index - 1][1]
        if op.name != "BINPERSID":
            continue
        # ('storage', StorageType, key, location, numel) TUPLE [memo] BINPERSID
        close = index - 1 if ops[index - 1][0].name == "TUPLE" else index - 2
        mark = close
        while ops[mark][0].name != "MARK":
            mark -= 1
        values = [memo[a] if o.name in GET_OPS else a for o, a, _ in ops[mark + 1:close]
                  if o.name not in MEMO_OPS]
        assert values[0] == "storage" and len(values) == 5, values
        key, count = values[2], values[4]
        size_at = close - 1
        assert ops[size_at][0].name in INT_OPS and ops[size_at][1] == count
        # then _rebuild_tensor_v2's offset, size and stride
        assert ops[index + 1][0].name in INT_OPS, ops[index + 1][0].name
        sizes, after = _tuple_ops(ops, index + 2)
        strides, _ = _tuple_ops(ops, after)
        assert len(sizes) == len(strides)
        if count <= keep:
            numel[key] = (count, count)
            continue
        numel[key] = (count, keep)
        replace[size_at] = _int_op(keep)
        replace[index + 1] = _int_op(0)
        replace.update({i: _int_op(0) for i in strides})
    out = bytearray()
    for index, (_, _, pos) in enumerate(ops):
        out += replace.get(index, data[pos:ends[index]])
    return bytes(out), numel


# -- the archive -----------------------------------------------------------------------------


def shrink_checkpoint(source: Path, dest: Path, keep: int = KEEP) -> None:
    """`source`'s torch zip with a shrunk pickle and storages, written by torch's own archive
    writer (its record alignment) under the same archive folder name (the file's stem)."""
    import torch

    assert dest.name == source.name  # torch names the archive's folder after the file
    with zipfile.ZipFile(source) as archive:
        infos = archive.infolist()
        prefix = infos[0].filename.split("/")[0] + "/"
        records = {i.filename.removeprefix(prefix): archive.read(i) for i in infos}
    pickled, numel = shrink_pickle(records["data.pkl"], keep)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    writer = torch._C.PyTorchFileWriter(str(dest))
    for name, content in records.items():
        if name in ("version", ".data/serialization_id"):
            continue  # the writer adds both when it closes the archive
        if name == "data.pkl":
            content = pickled
        elif name.startswith("data/"):
            before, after = numel[name.removeprefix("data/")]
            assert len(content) % max(before, 1) == 0, name
            content = content[:after * (len(content) // max(before, 1))]  # whole elements
        writer.write_record(name, content, len(content))
    writer.write_end_of_file()


# -- checks ----------------------------------------------------------------------------------


def verify(original: Path, shrunk: Path) -> str:
    """The facts the tests read, from both files through the project's safe reader (which
    never runs a pickled global): equal, or AssertionError. Returns a one-line summary."""
    import torch

    from yolodiag.dialects.yolov5.checkpoint import read_checkpoint
    from yolodiag.findings import Refused

    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint
    assert unsafe(str(original)) == unsafe(str(shrunk)), "globals differ"
    try:
        before = read_checkpoint(original)
    except Refused as e:  # another framework's: the refusal is what the tests check
        with_shrunk = None
        try:
            read_checkpoint(shrunk)
        except Refused as f:
            with_shrunk = f.finding
        assert with_shrunk is not None and with_shrunk.data == e.finding.data
        assert with_shrunk.message.replace(str(shrunk), "") == \
            e.finding.message.replace(str(original), ""), "refusal differs"
        return f"refused as before: {e.finding.code} {e.finding.data}"
    after = read_checkpoint(shrunk)
    for field in ("layout", "yaml", "stride", "names", "nc", "epoch", "date", "opt",
                  "has_optimizer", "has_ema", "half", "globals"):
        assert getattr(before, field) == getattr(after, field), field
    assert list(before.state) == list(after.state), "keys differ"
    for key, value in before.state.items():
        other = after.state[key]
        assert (value.shape, value.dtype) == (other.shape, other.dtype), key
        if value.numel() <= KEEP:
            assert torch.equal(value, other), key
    assert after.nonfinite == []
    return f"{len(after.state)} tensors, same keys, shapes, dtypes and facts"


def manifest(source: Path) -> dict[str, dict[str, str]]:
    """Per file made here: the sha256 of the copy and of the original it was made from, so that
    a clone without ../shared can still tell a copy edited by hand (test_shared)."""
    names = sorted({*copied(source), *stripped(source), *SHRUNK})
    return {name: {"copy": sha256(HERE / name), "source": sha256(source / name)}
            for name in names}


def write_manifest(source: Path) -> None:
    (HERE / MANIFEST).write_text(json.dumps(manifest(source), indent=1) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    only_manifest = "--manifest" in argv  # the copies as they are: record their hashes only
    argv = [a for a in argv if a != "--manifest"]
    source = Path(argv[1] if len(argv) > 1 else ROOT.parent / "shared").resolve()
    if not (source / "golden").is_dir():
        print(f"no golden figures in {source}: pass the shared folder", file=sys.stderr)
        return 2
    if only_manifest:
        write_manifest(source)
        return 0
    sys.path.insert(0, str(ROOT))  # the project's reader, for verify()
    files = copied(source)
    for stale in (p for p in HERE.rglob("*") if p.is_file()):
        name = stale.relative_to(HERE).as_posix()
        if name not in OWN:
            stale.unlink()
    for name in files:
        (HERE / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, HERE / name)
    for name in stripped(source):
        (HERE / name).parent.mkdir(parents=True, exist_ok=True)
        text = (source / name).read_text(encoding="utf-8")
        (HERE / name).write_text(without_comments(text), encoding="utf-8")
    for name in SHRUNK:
        shrink_checkpoint(source / name, HERE / name)
        summary = verify(source / name, HERE / name)
        print(f"{name}: {(source / name).stat().st_size:,} -> "
              f"{(HERE / name).stat().st_size:,} bytes; {summary}")
    for folder in sorted((p for p in HERE.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):  # left by a file ../shared no longer has
            folder.rmdir()
    write_manifest(source)
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"{len(files)} files copied, {len(stripped(source))} without comments, {len(SHRUNK)} "
          f"shrunk: {total:,} bytes in {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
