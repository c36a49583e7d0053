#!/usr/bin/env bash
# Installs everything AdaFormer for BasicSR needs, into the current Python environment.
# 1. PyTorch first: basicsr 1.4.2 is a source distribution whose build imports torch.
# 2. basicsr without build isolation: an isolated build would install torch a second time just to build it.
# 3. This package, editable, with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch>=2.1,<=2.14.1" "torchvision<=0.29.1"
python -m pip install -q cython numpy setuptools wheel
python -m pip install -q --no-build-isolation "basicsr==1.4.2"
python -m pip install -q -e ".[test]"
