#!/usr/bin/env bash
# The GPU check: on an NVIDIA GPU host (no network and no Node.js needed: run scripts/gpu-pack.sh
# first where there are both, and bring .portable/ along), in under 8 minutes:
#   prints the GPU and driver; checks logits parity GPU vs CPU on the bundled model; measures the
#   decode-step cost of a synthetic ~1B LLaMA-shaped model at context 128/1024/4096 against the
#   memory-bandwidth bound; prunes it with MoP to 0.4 on the GPU; and compares dense vs pruned
#   end-to-end latency at concurrency 1 and 8 through the real server.
# Every figure goes to one JSON file: $GPU_CHECK_OUT, default bench-out/gpu-check.json (or
# $OUT/gpu-check.json when $OUT is set). Extra arguments go to scripts/gpu-check.ts
# (`--device cpu --preset tiny` rehearses the whole thing anywhere in seconds).
#
#   scripts/gpu-check.sh [scripts/gpu-check.ts options]      e.g. scripts/gpu-check.sh --device cpu --preset tiny
set -uo pipefail
cd "$(dirname "$0")/.."
out=${GPU_CHECK_OUT:-${OUT:-bench-out}/gpu-check.json}
mkdir -p "$(dirname "$out")"

if ! command -v node >/dev/null 2>&1 || [ ! -d node_modules ]; then
  if [ -f .portable/activate.sh ]; then
    # shellcheck disable=SC1091
    source .portable/activate.sh
  else
    echo "gpu-check: no node on PATH or no node_modules, and no .portable/ here: run scripts/gpu-pack.sh on a machine with Node.js and npm, and bring .portable/ along" >&2
    exit 2
  fi
fi
echo "gpu-check: node $(node --version)"

bandwidth=()
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader || true
  name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  # Peak HBM bandwidth by product (GB/s), for the bandwidth-bound figure.
  case "$name" in
    *H200*) bandwidth=(--bandwidth-gbs 4800) ;;
    *H100*SXM* | *H100\ 80GB\ HBM3*) bandwidth=(--bandwidth-gbs 3350) ;;
    *H100*) bandwidth=(--bandwidth-gbs 2000) ;;
    *A100*80GB*) bandwidth=(--bandwidth-gbs 2039) ;;
    *A100*) bandwidth=(--bandwidth-gbs 1555) ;;
    *L40S* | *L40*) bandwidth=(--bandwidth-gbs 864) ;;
    *A10*) bandwidth=(--bandwidth-gbs 600) ;;
    *L4*) bandwidth=(--bandwidth-gbs 300) ;;
  esac
else
  echo "gpu-check: nvidia-smi not found (no NVIDIA driver tools on this host)"
fi

# The WebGPU provider loads libvulkan.so.1 and finds the driver through a Vulkan ICD file. Bare
# hosts often have the NVIDIA driver without either: use the packed loader, and point Vulkan at
# the driver's own ICD library when no ICD file is installed.
ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
if ! "$ldconfig" -p 2>/dev/null | grep -q "libvulkan.so.1" && [ -f .portable/vulkan/libvulkan.so.1 ]; then
  export LD_LIBRARY_PATH="$PWD/.portable/vulkan${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  echo "gpu-check: using the packed Vulkan loader"
fi
if [ -z "${VK_ICD_FILENAMES:-}" ] && ! ls /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
  for lib in libGLX_nvidia.so.0 libEGL_nvidia.so.0; do
    if "$ldconfig" -p 2>/dev/null | grep -q "$lib"; then
      icd=$(mktemp /tmp/nvidia_icd.XXXXXX.json)
      printf '{"file_format_version":"1.0.1","ICD":{"library_path":"%s","api_version":"1.3"}}\n' "$lib" > "$icd"
      export VK_ICD_FILENAMES="$icd"
      echo "gpu-check: no NVIDIA Vulkan ICD file installed; using $lib through $icd"
      break
    fi
  done
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
addon=()
if [ ! -f build/cuda/mop_cuda.node ] && [ -f .portable/cuda/mop_cuda.node ]; then
  addon=(--cuda-addon "$PWD/.portable/cuda/mop_cuda.node")
fi

timeout 470 node --import tsx scripts/gpu-check.ts --out "$out" "${bandwidth[@]}" "${addon[@]}" "$@"
rc=$?
echo "gpu-check: exit $rc; figures in $out"
[ -f "$out" ] && cat "$out"
exit $rc
