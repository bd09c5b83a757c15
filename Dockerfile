# syntax=docker/dockerfile:1
#
# mop-serve images. Two final targets share the build stages:
#
#   docker build -t mop-serve:0.1.0 .                          # CPU (default: the last stage)
#   docker build --target cuda -t mop-serve:0.1.0-cuda .       # NVIDIA GPU, CUDA 12 + cuDNN 9
#
# Base images are pinned to exact version tags. Pin the digests too once you can pull them:
#   docker buildx imagetools inspect node:20.20.2-bookworm-slim   (then FROM node:...@sha256:<digest>)
# Every server setting is an environment variable (PORT, HOST, MOP_*; see docs/deploying.md).
# The bundled stories260K model is inside the image; mount bigger checkpoints at /models and set
# MOP_MODEL=/models/<file>.

# --- build: compile TypeScript to dist/ (dev dependencies live only here) ---------------------
FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: tsc needs no native binaries, and `prepare` would run before src/ is here.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- deps: production node_modules for the CPU image ------------------------------------------
FROM node:20.20.2-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: onnxruntime-node's only install step downloads the CUDA provider, which the CPU
# image does not want (package.json's allowScripts denies it too, on npm >= 11), and `prepare`
# needs the sources. Then drop the ONNX Runtime binaries of other platforms (~250 MB: macOS,
# Windows, other arch).
RUN npm ci --no-audit --no-fund --omit=dev --ignore-scripts \
 && arch="$(node -p process.arch)" \
 && find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 1 -maxdepth 1 ! -name linux -exec rm -rf {} + \
 && find node_modules/onnxruntime-node/bin/napi-v6/linux -mindepth 1 -maxdepth 1 ! -name "$arch" -exec rm -rf {} + \
 && npm cache clean --force

# --- deps-cuda: the same, plus ONNX Runtime's CUDA 12 execution provider -----------------------
FROM deps AS deps-cuda
# onnxruntime-node's install script, run with node rather than `npm rebuild` (npm >= 11 skips it:
# package.json's allowScripts denies it), downloads what ONNXRUNTIME_NODE_INSTALL names:
# libonnxruntime_providers_cuda.so from the Microsoft.ML.OnnxRuntime.Gpu.Linux NuGet package of the
# same version. The build needs network here; the test fails it if the provider did not arrive.
ENV ONNXRUNTIME_NODE_INSTALL=cuda12
RUN node node_modules/onnxruntime-node/script/install.js \
 && test -f "node_modules/onnxruntime-node/bin/napi-v6/linux/$(node -p process.arch)/libonnxruntime_providers_cuda.so"

# --- cuda: NVIDIA CUDA 12 runtime + cuDNN 9 (what ORT's CUDA 12 packages need), Node 20 --------
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04 AS cuda
# Node from the same pinned image as the CPU build (official binaries need glibc >= 2.28;
# Ubuntu 22.04 has 2.35), so both images run the same Node release. npm is not needed at run time.
COPY --from=build /usr/local/bin/node /usr/local/bin/node
# libvulkan1: the Vulkan loader, for --device webgpu (the WebGPU provider is bundled in
# onnxruntime-node); the NVIDIA container toolkit mounts the driver's Vulkan ICD when the
# `graphics` capability is asked for (below). tini: the init the image runs as PID 1 (ENTRYPOINT).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 mop \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /app --shell /usr/sbin/nologin mop
WORKDIR /app
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    MOP_DEVICE=cuda \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
COPY --from=deps-cuda /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY models ./models
COPY data ./data
USER 1000:1000
EXPOSE 8000
# Node, not curl: the image has no curl. Start-up (loading, pruning with MOP_PRUNE_TARGET) can take
# minutes on big models, hence the generous start period; Kubernetes uses its own probes instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# tini as PID 1 forwards SIGTERM/SIGINT to node and reaps zombies; the server handles the signal
# (drain, or a start-up that stops at its next step) and exits within MOP_SHUTDOWN_GRACE_MS + 8 s.
ENTRYPOINT ["tini", "--", "node", "bin/mop.js"]
# --device cuda selects ONNX Runtime's CUDA execution provider; it needs this image (the CPU
# image has no CUDA provider) and a GPU passed to the container (docker run --gpus all).
# --device webgpu (KV cache resident on the GPU) also works here; see docs/gpu.md.
CMD ["serve", "--device", "cuda"]

# --- runtime (default): the CPU image ----------------------------------------------------------
FROM node:20.20.2-bookworm-slim AS runtime
# tini (Debian's package): the init the image runs as PID 1 (ENTRYPOINT below).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY models ./models
COPY data ./data
# uid 1000 is the image's `node` user; numeric so Kubernetes' runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8000)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# tini as PID 1 forwards SIGTERM/SIGINT to node and reaps zombies (see the cuda stage).
ENTRYPOINT ["tini", "--", "node", "bin/mop.js"]
CMD ["serve"]
