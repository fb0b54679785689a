#!/usr/bin/env bash
# The GPU check, on the device machine (docs/gpu.md). Two steps:
#
#   gpu-check.sh receive   check the part(s) of .gpu/parts/ that arrived, against
#                          SHA256SUMS; they stay there for the next call
#   gpu-check.sh run       the same, then with every part there: reassemble and verify
#                          the bundle, unpack the onnxruntime-gpu wheel, check which CUDA
#                          libraries its CUDA provider finds, then bench/gpu_check.py
#                          (the sessions run on CUDA and the worker's report says so)
#                          and, if that passed, bench/gpu.py; everything under $OUT
#
# `GPU_BENCH_ARGS` overrides the bench's options (default: --seconds 1.5).
set -uo pipefail
cd "$(dirname "$0")/.."
step=${1:?usage: gpu-check.sh receive|run}
out=${OUT:-.gpu/out}
mkdir -p "$out" .gpu/device
python=${PYTHON:-python3}

# Lists the parts there are; returns 0 when all are there, 1 when some are still to
# come, 2 when one arrived corrupt (it is removed: send it again).
receive() {
    local sums=.gpu/parts/SHA256SUMS
    [[ -f $sums ]] || { echo "no $sums: carry it with every part"; return 2; }
    local missing=0 corrupt=0
    while read -r sum name; do
        [[ $name == bundle.tar ]] && continue
        if [[ ! -f .gpu/parts/$name ]]; then
            echo "missing $name"
            missing=$((missing + 1))
        elif ! echo "$sum  .gpu/parts/$name" | sha256sum -c --quiet -; then
            echo "corrupt $name: removed, send it again"
            rm -f ".gpu/parts/$name"
            corrupt=1
        else
            echo "have $name"
        fi
    done < "$sums"
    ((corrupt)) && return 2
    ((missing)) && return 1
    return 0
}

libraries() {
    # Folders of the CUDA libraries pip packages installed (torch's nvidia-* wheels),
    # searched before the system's.
    "$python" - <<'PY'
import site, pathlib
roots = [pathlib.Path(p) for p in site.getsitepackages() + [site.getusersitepackages()]]
dirs = {str(d) for r in roots for d in r.glob("nvidia/*/lib") if d.is_dir()}
dirs |= {str(d) for r in roots for d in r.glob("nvidia/cu*/lib") if d.is_dir()}
dirs |= {str(r / "torch" / "lib") for r in roots if (r / "torch" / "lib").is_dir()}
print(":".join(sorted(dirs)))
PY
}

run() {
    receive > "$out/parts.txt" || {
        cat "$out/parts.txt"
        echo "parts missing: send them, then run again"
        return 1
    }
    local bundle=.gpu/device/bundle.tar expected
    expected=$(grep ' bundle.tar$' .gpu/parts/SHA256SUMS)
    # A second run (after a failed check) reuses what the first one unpacked.
    if [[ $(cat .gpu/device/unpacked.sha256 2>/dev/null) != "$expected" ]]; then
        cat .gpu/parts/bundle.tar.* > "$bundle"
        (cd .gpu/device && echo "$expected" | sha256sum -c -) || return 1
        rm -rf .gpu/device/unpacked .gpu/device/site
        mkdir -p .gpu/device/unpacked && tar -C .gpu/device/unpacked -xf "$bundle" && rm "$bundle"
        "$python" -m zipfile -e .gpu/device/unpacked/onnxruntime_gpu-*.whl .gpu/device/site
        echo "$expected" > .gpu/device/unpacked.sha256
    fi
    local packages=.gpu/device/unpacked/packages
    export LD_LIBRARY_PATH="$(libraries)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    {
        nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
        "$python" --version
        echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
        echo "libraries the CUDA provider links, as the loader finds them:"
        ldd .gpu/device/site/onnxruntime/capi/libonnxruntime_providers_cuda.so
        echo "cuDNN (loaded at run time):"
        ldconfig -p | grep -E 'libcudnn\.so\.9' || find ${LD_LIBRARY_PATH//:/ } -name 'libcudnn.so.9*' 2>/dev/null
    } > "$out/device.txt" 2>&1
    grep -E 'not found|NVIDIA|H200|Python' "$out/device.txt"
    export PYTHONPATH="$PWD/.gpu/device/site:$PWD"
    "$python" bench/gpu_check.py --package "$packages/minilm" --package "$packages/fraud" \
        --json "$out/check.json" 2>&1 | tee "$out/check.txt"
    local checked=${PIPESTATUS[0]}
    if [[ $checked -ne 0 && -z ${GPU_BENCH_ANYWAY:-} ]]; then
        echo "the check failed: no bench (GPU_BENCH_ANYWAY=1 runs it regardless)"
        return "$checked"
    fi
    # shellcheck disable=SC2086 # word splitting of the options is wanted
    "$python" bench/gpu.py --package "$packages/minilm" --package "$packages/fraud" \
        --provider cuda ${GPU_BENCH_ARGS:---seconds 1.5} --json "$out/bench.json" 2>&1 \
        | tee "$out/bench.txt"
    return "${PIPESTATUS[0]}"
}

case $step in
    receive) receive; [[ $? -le 1 ]] ;;
    run) run ;;
    *) echo "usage: gpu-check.sh receive|run"; exit 2 ;;
esac
