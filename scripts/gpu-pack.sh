#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a bare GPU host (no network, no Node.js) into .portable/
# (ignored by git; carry it with the work tree): this machine's Node.js, node_modules without other
# platforms' native binaries (onnxruntime-node ships all of them) and without type-only packages,
# the Vulkan loader (libvulkan.so.1) that the WebGPU provider needs and bare hosts often lack, and
# the native CUDA addon (src/runtime/cuda) when nvcc is here.
# Run it from the repository root after `npm ci`:
#
#   scripts/gpu-pack.sh
set -euo pipefail
dir=.portable
rm -rf "$dir" && mkdir -p "$dir/vulkan"
node_bin=$(readlink -f "$(command -v node)")
xz -T0 -6 -c "$node_bin" > "$dir/node.xz"
tar -cf - \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/darwin' \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/win32' \
  --exclude='node_modules/onnxruntime-node/bin/napi-v6/linux/arm64' \
  --exclude='node_modules/typescript' --exclude='node_modules/@types' --exclude='node_modules/openai' \
  --exclude='node_modules/k6' --exclude='node_modules/yaml' \
  node_modules | xz -T0 -6 > "$dir/node_modules.tar.xz"
# The native CUDA decoder, when this machine can build it (nvcc): carried as .portable/cuda/.
bash src/runtime/cuda/build.sh
if [ -f build/cuda/mop_cuda.node ]; then mkdir -p "$dir/cuda" && cp build/cuda/mop_cuda.node "$dir/cuda/"; fi
for lib in /usr/lib/x86_64-linux-gnu/libvulkan.so.1 /usr/lib64/libvulkan.so.1; do
  if [ -e "$lib" ]; then cp -L "$lib" "$dir/vulkan/libvulkan.so.1" && break; fi
done
cat > "$dir/activate.sh" <<'ACT'
# source from the repo root: Node into /tmp/portable-node, node_modules if missing
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -x /tmp/portable-node/bin/node ]; then
  mkdir -p /tmp/portable-node/bin
  xz -dc "$here/node.xz" > /tmp/portable-node/bin/node && chmod +x /tmp/portable-node/bin/node
fi
export PATH=/tmp/portable-node/bin:$PATH
if [ ! -d node_modules ]; then xz -dc "$here/node_modules.tar.xz" | tar -xf -; fi
ACT
echo "packed $(node --version), node_modules and the Vulkan loader into $dir ($(du -sh "$dir" | cut -f1))"
