"""Run inside an interpreter that has the `yolov5` pip package (v7.0): build each YAML with
torch.manual_seed(0) and save what the oracle test compares. Not part of yolodiag."""

import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import

import torch  # noqa: E402
from torch import nn  # noqa: E402
from yolov5.models.common import Conv  # noqa: E402
from yolov5.models.yolo import Model  # noqa: E402

out = {}
for path in sys.argv[2:]:
    # YOLOv5 stores a YAML's `activation:` on the Conv class, so it leaks into every model built
    # later in the same process; undo that so each model is built as in a fresh process.
    Conv.default_act = nn.SiLU()
    torch.manual_seed(0)
    model = Model(path)
    state = {k: v.clone() for k, v in model.state_dict().items()}  # before forwards move BN stats
    x = torch.rand(2, 3, 128, 192, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.eval()
        decoded = model(x)[0]
        model.train()
        raw = model(x)
        raw = raw[0] if isinstance(raw, tuple) else raw
    out[path] = {"state": state, "stride": model.stride.tolist(),
                 "decoded": decoded, "raw": raw}
torch.save(out, sys.argv[1])
