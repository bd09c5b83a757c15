#!/usr/bin/env bash
# Builds the native CUDA addon (build/cuda/mop_cuda.node) when nvcc, g++ and Node's headers are
# here; otherwise says what is missing and exits 0, so installs and CI on machines without a CUDA
# toolkit are unaffected. The kernels are compiled once into a fatbin (sm_80 and sm_90 SASS plus
# compute_90 PTX) embedded in the addon; the addon loads libcuda.so.1 only when used, so the
# result also loads on machines without a GPU. `npm run build:cuda`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${MOP_CUDA_BUILD_DIR:-$root/build/cuda}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [ ! -x "$nvcc" ]; then
  echo "mop cuda: skipped: nvcc not found (install the CUDA toolkit, or set NVCC=/path/to/nvcc)"
  exit 0
fi
if ! command -v g++ >/dev/null 2>&1; then
  echo "mop cuda: skipped: g++ not found"
  exit 0
fi
headers=""
for dir in "$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node" /usr/include/node /usr/local/include/node; do
  if [ -f "$dir/node_api.h" ]; then headers=$dir && break; fi
done
if [ -z "$headers" ]; then
  echo "mop cuda: skipped: Node's headers (node_api.h) not found"
  exit 0
fi
mkdir -p "$out"
"$nvcc" -fatbin -O3 -std=c++17 \
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
  "$here/native/kernels.cu" -o "$out/kernels.fatbin"
node -e '
const fs = require("fs");
const bytes = fs.readFileSync(process.argv[1]);
const rows = [];
for (let i = 0; i < bytes.length; i += 24) rows.push(Array.from(bytes.subarray(i, i + 24)).join(","));
fs.writeFileSync(process.argv[2], "// generated from kernels.cu by build.sh\nalignas(8) static const unsigned char mop_kernels_fatbin[] = {\n" + rows.join(",\n") + "\n};\n");
' "$out/kernels.fatbin" "$out/kernels_fatbin.h"
g++ -std=c++17 -O2 -shared -fPIC -Wall -Wno-unused-function \
  -I"$out" -I"$headers" -DNODE_GYP_MODULE_NAME=mop_cuda \
  "$here/native/addon.cc" -o "$out/mop_cuda.node" -ldl
echo "mop cuda: built $out/mop_cuda.node ($("$nvcc" --version | tail -1))"
