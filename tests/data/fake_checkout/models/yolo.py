"""A stand-in for a YOLOv5 checkout's models/yolo.py, written for yolodiag's tests (not taken
from YOLOv5). yolodiag reads its parse_model's branches with Python's ast and never runs this
file: only their shape matters, which is the shape of YOLOv5's (membership tests on the module
class, the completed `args` and output width `c2` per branch). The names are this checkout's.
"""


def parse_model(d, ch):  # noqa: C901 - a chain of branches, as the format is
    layers, c2 = [], ch[-1]
    for i, (f, n, m, args) in enumerate(d["backbone"] + d["head"]):
        if m in {Conv, C3, Down, BasicBlock, Plain_not_here}:  # noqa: F821
            c1, c2 = ch[f], args[0]
            args = [c1, c2, *args[1:]]
            if m in (C3,):  # noqa: F821
                args.insert(2, n)
                n = 1
        elif m is Concat:  # noqa: F821
            c2 = sum(ch[x] for x in f)
        elif m == Detect:  # noqa: F821
            args.append([ch[x] for x in f])
        elif m in [Attention]:  # noqa: F821
            args = [ch[f], *args]
            c2 = ch[f]
        elif m is Widen:  # noqa: F821
            c2 = args[0]
        elif m is Gate:  # noqa: F821
            c2 = ch[f] + args[0] // 2  # a branch of its own, which no yolodiag rule mirrors
        else:
            c2 = ch[f]
        layers.append((i, f, n, m, args))
        if i == 0:
            ch = []
        ch.append(c2)
    return layers
