#!/usr/bin/env bash
# Create the separate virtual environment the DSPy side of the peer benchmarks runs in.
#
#   bash bench/setup_dspy.sh [VENV_DIR]        (default: $DSPY_VENV, else /work/dspy-venv)
#
# DSPy lives in its own venv, outside the repository, so that its pins (litellm,
# pydantic, optuna, ...) never meet promptopt's dev environment. bench/dspy_side.py
# needs only DSPy and the standard library. Set DSPY_SPEC to try another release.
set -euo pipefail

venv_dir="${1:-${DSPY_VENV:-/work/dspy-venv}}"
python_bin="${PYTHON:-python3}"
dspy_spec="${DSPY_SPEC:-dspy>=3,<4}"

if [ ! -x "$venv_dir/bin/python" ]; then
    echo "creating $venv_dir with $($python_bin --version)"
    "$python_bin" -m venv "$venv_dir"
fi
"$venv_dir/bin/python" -m pip install --quiet --upgrade pip
"$venv_dir/bin/python" -m pip install --quiet "$dspy_spec"

# Print what was installed, so a results file can name the version.
"$venv_dir/bin/python" - <<'EOF'
import sys
from importlib.metadata import version

import dspy  # noqa: F401  (the import itself is the check)

print(f"dspy {version('dspy')} (gepa {version('gepa')}, litellm {version('litellm')}) "
      f"on Python {sys.version.split()[0]} at {sys.prefix}")
EOF
