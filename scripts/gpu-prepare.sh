#!/usr/bin/env bash
# Prepare the GPU check on this machine (docs/gpu.md): fetch the onnxruntime-gpu wheel
# (checked against its pinned sha256), build the MiniLM and demo packages, pack the
# three into one tar and cut it into parts small enough for one device call each
# (.gpu/parts/bundle.tar.NN, with .gpu/parts/SHA256SUMS). Prints the device calls to
# make, in order. Nothing it writes is tracked (.gpu/ is ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${INFERFLEET_VENV:-.venv}

WHEEL=onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
WHEEL_SHA256=05d548956197b9d01f59b625de740e0d6be3593f874e241a12dc0362650ecdf7
# One device call carries at most 64 MiB with the working tree (about 2 MiB).
PART_BYTES=${GPU_PART_BYTES:-$((60 * 1024 * 1024))}

mkdir -p .gpu/wheel
if [[ ! -f .gpu/wheel/$WHEEL ]]; then
    "$venv/bin/python" -m pip download onnxruntime-gpu==1.31.1 --no-deps \
        --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
        -d .gpu/wheel
fi
echo "$WHEEL_SHA256  .gpu/wheel/$WHEEL" | sha256sum -c -

rm -rf .gpu/bundle .gpu/parts
mkdir -p .gpu/bundle/packages .gpu/parts
cp ".gpu/wheel/$WHEEL" .gpu/bundle/
"$venv/bin/python" models/fraud/build.py .gpu/bundle/packages/fraud
"$venv/bin/python" models/minilm/build.py .gpu/bundle/packages/minilm
# The same inputs give the same bytes: sorted names, fixed owners and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    -C .gpu/bundle -cf .gpu/bundle.tar .
split -b "$PART_BYTES" -d -a 2 .gpu/bundle.tar .gpu/parts/bundle.tar.
(cd .gpu && sha256sum bundle.tar && cd parts && sha256sum bundle.tar.*) > .gpu/SHA256SUMS
mv .gpu/SHA256SUMS .gpu/parts/SHA256SUMS
rm .gpu/bundle.tar

parts=(.gpu/parts/bundle.tar.*)
echo
echo "bundle: $(du -b .gpu/bundle | tail -1 | cut -f1) bytes in ${#parts[@]} parts; device calls, in order, each within ~30 s of the last:"
last=$((${#parts[@]} - 1))
for i in "${!parts[@]}"; do
    step=receive
    [[ $i -eq $last ]] && step=run
    echo "  run(command='bash scripts/gpu-check.sh $step', carry=['${parts[$i]}', '.gpu/parts/SHA256SUMS'])"
done
