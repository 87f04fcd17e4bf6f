"""Run inside an interpreter that has ultralytics==8.4.190: pass each request through the real
validation functions and save what tests/test_ultralytics_evaluation.py compares. Not part of
yolodiag.

Usage: python ultralytics_evaluation.py REQUEST OUT. REQUEST (torch.save'd) holds `nms`, a list
of {"prediction", "kwargs"}, `match`, a list of {"pred_classes", "true_classes", "iou"}, and
`ap`, a list of {"tp", "conf", "pred_cls", "target_cls"}. OUT gets `nms`: per case, per
backend ("torch": its own TorchNMS, what runs while torchvision is not imported; "torchvision":
torchvision.ops.nms, what training runs, since its data pipeline imports torchvision) the list of
per-image outputs; `match`: the greedy result per case; `ap`: the 12 outputs per case, keyed by
the names ultralytics documents.
"""

import os
import sys
import time
from types import SimpleNamespace

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics otherwise probes the network on import

import torch  # noqa: E402
from ultralytics.engine.validator import BaseValidator  # noqa: E402
from ultralytics.utils import nms  # noqa: E402
from ultralytics.utils.metrics import ap_per_class  # noqa: E402

AP_KEYS = ("tp", "fp", "p", "r", "f1", "ap", "unique_classes", "p_curve", "r_curve", "f1_curve",
           "x", "prec_values")


def run_nms(cases: list) -> list:
    results = [{} for _ in cases]
    for backend in ("torch", "torchvision"):
        if backend == "torchvision":
            import torchvision  # noqa: F401  (8.4.190 switches on it being in sys.modules)
        assert ("torchvision" in sys.modules) == (backend == "torchvision")
        for case, result in zip(cases, results):
            start = time.perf_counter()
            result[backend] = nms.non_max_suppression(case["prediction"], **case["kwargs"])
            # past its time limit (2 s + 0.05 s per image) 8.4.190 leaves later images empty
            assert time.perf_counter() - start < 2.0, "NMS ran into its time limit: use fewer boxes"
    return results


def main(request_path: str, out_path: str) -> None:
    request = torch.load(request_path, weights_only=True)
    validator = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))  # all match_predictions reads
    out = {"nms": run_nms(request["nms"]),
           "match": [BaseValidator.match_predictions(validator, c["pred_classes"],
                                                     c["true_classes"], c["iou"])
                     for c in request["match"]],
           "ap": [{key: torch.as_tensor(value) for key, value in
                   zip(AP_KEYS, ap_per_class(c["tp"].numpy(), c["conf"].numpy(),
                                             c["pred_cls"].numpy(), c["target_cls"].numpy()))}
                  for c in request["ap"]]}
    torch.save(out, out_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
