#!/usr/bin/env bash
# Make a separate virtual environment with the real YOLOv5 v7.0 (pip package yolov5==7.0.14) on CPU
# torch 2.13.0, for the optional live-oracle test and the benchmark:
#   bash benchmarks/make_oracle_venv.sh ../oracle-venv
#   YOLOV5_PYTHON=../oracle-venv/bin/python python -m pytest tests/test_yolov5_oracle.py
#   YOLOV5_PYTHON=../oracle-venv/bin/python python benchmarks/bench_check.py
# YOLOv5 is AGPL and heavy: it never enters yolodiag's own environment. Every install after torch
# uses --no-deps so torch is never replaced; only what building a model imports is installed.
set -euo pipefail
VENV=${1:-../oracle-venv}
python3 -m venv "$VENV"
"$VENV/bin/pip" install torch==2.13.0
"$VENV"/bin/pip install --no-deps \
  filelock==4.3.1 fsspec==2026.9.0 Jinja2==3.1.6 MarkupSafe==3.0.4 mpmath==1.3.0 networkx==3.6.1 \
  sympy==1.14.0 typing_extensions==4.16.0 "setuptools==80.10.2"
# setuptools<81: yolov5 imports pkg_resources, which setuptools 81 removed
"$VENV"/bin/pip install --no-deps yolov5==7.0.14
"$VENV"/bin/pip install --no-deps \
  numpy==2.4.6 PyYAML==6.0.4 tqdm==4.70.1 pandas==3.1.1 python-dateutil==4.0.0 tzdata==2026.6 \
  matplotlib==3.11.2 contourpy==1.3.3 cycler==0.12.1 fonttools==4.68.0 kiwisolver==1.5.1 \
  packaging==26.4 pyparsing==3.3.3 pillow==13.0.0 seaborn==0.13.2 scipy==1.17.1 \
  opencv-python-headless==5.0.0.93 requests==2.34.2 certifi==2026.10.19.post1 \
  charset-normalizer==3.5.3 idna==3.20 urllib3==2.8.0 psutil==7.2.2 thop==0.1.1.post2209072238
# yolov5 7.0.14 imports `from ultralytics.utils.checks import check_requirements` at import time
"$VENV"/bin/pip install --no-deps ultralytics==8.4.190
# yolov5 imports torchvision at import time.
"$VENV"/bin/pip install --no-deps torchvision==0.28.0
# The only torchvision on offer here is linked against CUDA torch: its C++ ops cannot load, and
# `import torchvision` fails on two unguarded fake-op registrations. Guard them: model building and
# forward passes work; torchvision.ops (nms) raises when called.
sed -i 's|^@torch.library.register_fake("torchvision::\(q\?nms\)")$|@(torch.library.register_fake("torchvision::\1") if torchvision.extension._has_ops() else (lambda f: f))  # oracle patch|' \
  "$VENV"/lib/python3*/site-packages/torchvision/_meta_registrations.py
# ultralytics probes the network on import unless YOLO_OFFLINE=1 (the tests and benchmark set it).
YOLO_OFFLINE=1 "$VENV/bin/python" -W ignore -c "from yolov5.models.yolo import Model; print('yolov5 ok')"
