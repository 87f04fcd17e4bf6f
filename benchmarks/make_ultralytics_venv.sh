#!/usr/bin/env bash
# Make a separate virtual environment holding the real ultralytics==8.4.190, for the optional
# live-oracle tests (marker `ultralytics`) and the Ultralytics check benchmark:
#   bash benchmarks/make_ultralytics_venv.sh ../ul-venv
#   ULTRALYTICS_PYTHON=../ul-venv/bin/python python -m pytest -m ultralytics tests
# Ultralytics is AGPL-3.0: it is never a dependency of yolodiag, only an oracle beside it. It wants
# torchvision; torch 2.14.1 and torchvision 0.29.1 are the pair this machine's pip takes from local
# disk (a CUDA build, run on the CPU), as the golden figures were recorded with.
set -euo pipefail
VENV=${1:-../ul-venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install torch==2.14.1 torchvision==0.29.1
"$VENV/bin/pip" install ultralytics==8.4.190
YOLO_OFFLINE=1 "$VENV/bin/python" -c \
  "from ultralytics.nn.tasks import DetectionModel; DetectionModel('yolo11n.yaml', verbose=False); print('ultralytics ok')"
