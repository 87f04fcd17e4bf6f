"""Run inside an interpreter that has the `yolov5` pip package (v7.0): call its check_dataset on
each data YAML and print one JSON object: the YOLOv5 root it resolves against, and per file
the train/val/test paths it resolved, or the exception it raised (autodownload off: none of
the files the test writes has a `download:` key, so train.py's default changes nothing).
Not part of yolodiag."""

import ast
import json
import logging
import os
import sys

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import

import yolov5.utils.general as general  # noqa: E402


class Logged(logging.Handler):
    """Keeps what check_dataset logs: its "missing paths [...]" line names where it looked."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


general.check_font = lambda *args, **kwargs: None  # the font download is not what is measured
logged = Logged()
general.LOGGER.addHandler(logged)
results = {}
for path in sys.argv[1:]:
    logged.lines.clear()
    try:
        data = general.check_dataset(path, autodownload=False)
        results[path] = {k: data[k] if isinstance(data[k], list) else [data[k]]
                         for k in ("train", "val", "test") if data.get(k)}
    except Exception as error:  # its refusal is the measurement
        missing = [line.split("missing paths ", 1)[1] for line in logged.lines
                   if "missing paths " in line]
        results[path] = {"raised": str(error).strip(),
                         "missing": ast.literal_eval(missing[0]) if missing else None}
print(json.dumps({"root": str(general.ROOT), "results": results}))
