#!/usr/bin/env bash
# Make a separate virtual environment in which a YOLOv7 checkout (WongKinYiu/yolov7 at a207844)
# builds its models on CPU torch 2.13.0 (the torch of make_oracle_venv.sh), for the optional
# live-oracle tests (marker `yolov7`) and the YOLOv7 check benchmark:
#   bash benchmarks/make_yolov7_venv.sh ../y7-venv
#   YOLOV7_PYTHON=../y7-venv/bin/python YOLOV7_REPO=../yolov7 python -m pytest -m yolov7 tests
#   YOLOV7_PYTHON=../y7-venv/bin/python YOLOV7_REPO=../yolov7 python benchmarks/bench_check.py \
#       --family yolov7
# YOLOv7 is GPL-3.0 and not a package: it is the user's checkout, never installed here nor in
# yolodiag's environment. Every install after torch uses --no-deps so torch is never replaced;
# only what `models/yolo.py` imports to build a model is installed.
set -euo pipefail
VENV=${1:-../y7-venv}
python3 -m venv "$VENV"
VENV=$(cd "$VENV" && pwd)
"$VENV/bin/pip" install torch==2.13.0
"$VENV"/bin/pip install --no-deps \
  filelock==4.3.1 fsspec==2026.9.0 Jinja2==3.1.6 MarkupSafe==3.0.4 mpmath==1.3.0 networkx==3.6.1 \
  sympy==1.14.0 typing_extensions==4.16.0
# What models/yolo.py imports through models/common.py and utils/ (general, torch_utils, plots,
# datasets, loss, google_utils, metrics). numpy<2.4: yolov7's compute_ap calls np.trapz.
"$VENV"/bin/pip install --no-deps \
  numpy==2.3.5 PyYAML==6.0.4 tqdm==4.70.1 pandas==3.1.1 python-dateutil==4.0.0 tzdata==2026.6 \
  six==1.17.0 matplotlib==3.11.2 contourpy==1.3.3 cycler==0.12.1 fonttools==4.68.0 \
  kiwisolver==1.5.1 packaging==26.4 pyparsing==3.3.3 pillow==13.0.0 seaborn==0.13.2 \
  scipy==1.17.1 opencv-python-headless==5.0.0.93 requests==2.34.2 certifi==2026.10.19.post1 \
  charset-normalizer==3.5.3 idna==3.20 urllib3==2.8.0
# models/common.py imports torchvision.ops at import time.
"$VENV"/bin/pip install --no-deps torchvision==0.28.0
# The only torchvision on offer here is linked against CUDA torch: its C++ ops cannot load, and
# `import torchvision` fails on two unguarded fake-op registrations. Guard them: model building and
# forward passes work; torchvision.ops (nms) raises when called.
sed -i 's|^@torch.library.register_fake("torchvision::\(q\?nms\)")$|@(torch.library.register_fake("torchvision::\1") if torchvision.extension._has_ops() else (lambda f: f))  # oracle patch|' \
  "$VENV"/lib/python3*/site-packages/torchvision/_meta_registrations.py
if [ -n "${YOLOV7_REPO:-}" ]; then
  (cd "$YOLOV7_REPO" && "$VENV/bin/python" -W ignore -c \
    "from models.yolo import Model; Model('cfg/training/yolov7-tiny.yaml'); print('yolov7 ok')")
fi
