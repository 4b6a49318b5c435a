#!/usr/bin/env bash
# The prepared GPU check (issue #23) on a fresh single-GPU Linux machine with Python 3.11+:
#   bash bench/gpu.sh [bench/gpu.py options]      e.g. bash bench/gpu.sh --out gpu.json
# Uses the machine's Python when it already has the project's packages (and its CUDA torch);
# else installs the project into .venv-gpu (system site packages kept, so a CUDA torch already
# there is used), from PyPI, or offline from wheels in .whl/ when that folder exists.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if ! "$python" -c "import ray.train, mlflow, torchvision, pipelines" 2>/dev/null; then
  if [ ! -x .venv-gpu/bin/python ]; then
    echo "setting up .venv-gpu ..."
    "$python" -m venv --system-site-packages .venv-gpu
    if [ -d .whl ]; then
      .venv-gpu/bin/python -m pip install -q --no-index --find-links .whl -e .
    else
      .venv-gpu/bin/python -m pip install -q -e .
    fi
  fi
  python=.venv-gpu/bin/python
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
exec env PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$python" bench/gpu.py "$@"
