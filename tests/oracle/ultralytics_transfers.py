"""Run inside an interpreter that has ultralytics==8.4.190: for each case, build the real
DetectionModel from a stock name with a class count (and class names, as the trainer sets the
data's before loading), load a recorded checkpoint into it with BaseModel.load and keep the
`Transferred X/Y` line it logs. tests/test_ultralytics_checkpoint.py compares. Not part of
yolodiag; the recorded checkpoints are trusted files, loaded the way Ultralytics loads them.

argv: cases.json (a list of {"checkpoint", "cfg", "nc", "names"}), output .json path.
"""

import json
import logging
import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import

import torch  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils import LOGGER  # noqa: E402


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def main(cases_path, out_path):
    cases = json.loads(open(cases_path).read())
    lines = Lines()
    LOGGER.addHandler(lines)
    loaded = {}
    logs = []
    for case in cases:
        path = case["checkpoint"]
        if path not in loaded:
            loaded[path] = torch.load(path, map_location="cpu", weights_only=False)
        model = DetectionModel(case["cfg"], nc=case["nc"], verbose=False)
        if case["names"]:
            model.names = {int(k): v for k, v in case["names"].items()}
        lines.lines.clear()
        model.load(loaded[path])
        logs.append(next((x for x in lines.lines if x.startswith("Transferred")), None))
    with open(out_path, "w") as f:
        json.dump(logs, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
