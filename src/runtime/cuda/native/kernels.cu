// Kernels of the native CUDA decoder (see ../README.md). Compiled by nvcc into a fatbin that the
// addon embeds and loads through the driver API, so nothing here links against cudart.
//
// Conventions: weights are float16, row-major [out, in] (Hugging Face layout); activations, the
// residual stream and all accumulation are float32; the KV cache is float16
// [slot][kvHead][position][headDim]. Q/K rows are in the rotate-half RoPE layout (what the model
// readers produce). `n` is the number of token rows in a run (a decode batch or a prefill chunk).
#include <cuda_fp16.h>
#include <stdint.h>

#define WARP 32
#define GEMV_ROWS_PER_BLOCK 8  // one warp per output row
#define GEMV_VEC 8             // token rows handled per pass over a weight row

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ float block_sum(float v, float* shared) {
  const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + WARP - 1) / WARP;
  float t = (threadIdx.x < warps) ? shared[threadIdx.x] : 0.f;
  if (warp == 0) t = warp_sum(t);
  if (threadIdx.x == 0) shared[0] = t;
  __syncthreads();
  float r = shared[0];
  __syncthreads();
  return r;
}

__device__ float block_max(float v, float* shared) {
  const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
  for (int o = WARP / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + WARP - 1) / WARP;
  float t = (threadIdx.x < warps) ? shared[threadIdx.x] : -INFINITY;
  if (warp == 0)
    for (int o = WARP / 2; o > 0; o >>= 1) t = fmaxf(t, __shfl_xor_sync(0xffffffffu, t, o));
  if (threadIdx.x == 0) shared[0] = t;
  __syncthreads();
  float r = shared[0];
  __syncthreads();
  return r;
}

// out[r, :] = embed[tokens[r], :]   grid: n blocks
extern "C" __global__ void mop_embed(float* out, const __half* embed, const int* tokens, int hidden) {
  const int r = blockIdx.x;
  const __half* row = embed + (size_t)tokens[r] * hidden;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) out[(size_t)r * hidden + i] = __half2float(row[i]);
}

// out[r, :] = in[r, :] / rms(in[r, :]) * gamma   grid: n blocks
extern "C" __global__ void mop_rmsnorm(float* out, const float* in, const __half* gamma, int hidden, float eps) {
  __shared__ float shared[WARP];
  const float* x = in + (size_t)blockIdx.x * hidden;
  float ss = 0.f;
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) ss += x[i] * x[i];
  const float scale = rsqrtf(block_sum(ss, shared) / hidden + eps);
  for (int i = threadIdx.x; i < hidden; i += blockDim.x) out[(size_t)blockIdx.x * hidden + i] = x[i] * scale * __half2float(gamma[i]);
}

// out[r, o] = (accumulate ? out[r, o] : 0) + Σ_i W[o, i] · x[r, i]   for r < n, o < rows
// One warp per output row reads the weight row once per GEMV_VEC token rows; 16-byte loads when
// the row length allows. grid: ceil(rows / GEMV_ROWS_PER_BLOCK), block: GEMV_ROWS_PER_BLOCK warps.
extern "C" __global__ void mop_gemv(float* out, const __half* W, const float* x, int n, int rows, int cols, int accumulate) {
  const int lane = threadIdx.x % WARP;
  const int o = blockIdx.x * GEMV_ROWS_PER_BLOCK + threadIdx.x / WARP;
  if (o >= rows) return;
  const __half* w = W + (size_t)o * cols;
  for (int r0 = 0; r0 < n; r0 += GEMV_VEC) {
    const int m = min(GEMV_VEC, n - r0);
    float acc[GEMV_VEC];
#pragma unroll
    for (int j = 0; j < GEMV_VEC; j++) acc[j] = 0.f;
    if ((cols % 8) == 0) {
      const uint4* w8 = reinterpret_cast<const uint4*>(w);
      // Unrolled so each lane has several 16-byte loads in flight: decode is bandwidth-bound.
#pragma unroll 4
      for (int c = lane; c < cols / 8; c += WARP) {
        // x rows are 32-byte aligned here (cols % 8 == 0): two float4 loads per row.
        const uint4 packed = w8[c];
        const __half2* h = reinterpret_cast<const __half2*>(&packed);
        float wf[8];
#pragma unroll
        for (int k = 0; k < 4; k++) {
          const float2 f = __half22float2(h[k]);
          wf[2 * k] = f.x;
          wf[2 * k + 1] = f.y;
        }
#pragma unroll
        for (int j = 0; j < GEMV_VEC; j++) {
          if (j < m) {
            const float4* xr = reinterpret_cast<const float4*>(x + (size_t)(r0 + j) * cols + c * 8);
            const float4 a = xr[0], b = xr[1];
            acc[j] += wf[0] * a.x + wf[1] * a.y + wf[2] * a.z + wf[3] * a.w + wf[4] * b.x + wf[5] * b.y + wf[6] * b.z + wf[7] * b.w;
          }
        }
      }
    } else {
      for (int c = lane; c < cols; c += WARP) {
        const float wf = __half2float(w[c]);
#pragma unroll
        for (int j = 0; j < GEMV_VEC; j++)
          if (j < m) acc[j] += wf * x[(size_t)(r0 + j) * cols + c];
      }
    }
#pragma unroll
    for (int j = 0; j < GEMV_VEC; j++) {
      if (j < m) {
        const float s = warp_sum(acc[j]);
        if (lane == 0) {
          float* y = out + (size_t)(r0 + j) * rows + o;
          *y = accumulate ? *y + s : s;
        }
      }
    }
  }
}

// Rotate-half RoPE of `count` heads of one token row at position `pos`, by the block's threads.
__device__ void rope_rows(float* row, int count, int headDim, int pos, const float* invFreq) {
  const int half = headDim / 2;
  for (int t = threadIdx.x; t < count * half; t += blockDim.x) {
    const int h = t / half, i = t % half;
    float s, c;
    sincosf(pos * invFreq[i], &s, &c);
    float* p = row + h * headDim;
    const float a = p[i], b = p[i + half];
    p[i] = a * c - b * s;
    p[i + half] = b * c + a * s;
  }
}

// RoPE (rotate-half) on q and k of each token row of the fused projection qkv
// ([n, (heads + 2·kvHeads)·headDim]: q, then k, then v), then k and v into the cache at the row's
// slot and position. invFreq: [headDim / 2]. grid: n blocks.
extern "C" __global__ void mop_rope_store(float* qkv, const int* positions, const int* slots, const float* invFreq,
                                          __half* kCache, __half* vCache, int heads, int kvHeads, int headDim, int maxContext) {
  const int r = blockIdx.x;
  const int pos = positions[r];
  float* qr = qkv + (size_t)r * (heads + 2 * kvHeads) * headDim;
  float* kr = qr + heads * headDim;
  const float* vr = kr + kvHeads * headDim;
  rope_rows(qr, heads, headDim, pos, invFreq);
  rope_rows(kr, kvHeads, headDim, pos, invFreq);
  __syncthreads();
  const size_t slotBase = (size_t)slots[r] * kvHeads * maxContext * headDim;
  for (int t = threadIdx.x; t < kvHeads * headDim; t += blockDim.x) {
    const int h = t / headDim, d = t % headDim;
    const size_t at = slotBase + ((size_t)h * maxContext + pos) * headDim + d;
    kCache[at] = __float2half(kr[t]);
    vCache[at] = __float2half(vr[t]);
  }
}

// Causal grouped-query attention of one query head of one token row over its slot's cache
// positions [0, position]. Scores live in dynamic shared memory (maxContext floats).
// grid: (n, heads), block: 256 threads; dynamic shared: maxContext * 4 + 2 KiB.
// q is read from the fused projection qkv ([n, (heads + 2·kvHeads)·headDim], q first).
extern "C" __global__ void mop_attention(float* out, const float* qkv, const __half* kCache, const __half* vCache, const int* positions, const int* slots,
                                         int heads, int kvHeads, int headDim, int maxContext, float scale) {
  extern __shared__ float smem[];
  float* reduce = smem;            // WARP floats
  float* partial = smem + WARP;    // blockDim.x floats
  float* scores = partial + blockDim.x;
  const int r = blockIdx.x, h = blockIdx.y;
  const int kvh = h / (heads / kvHeads);
  const int len = positions[r] + 1;
  const float* qh = qkv + (size_t)r * (heads + 2 * kvHeads) * headDim + (size_t)h * headDim;
  const size_t base = ((size_t)slots[r] * kvHeads + kvh) * maxContext * headDim;
  const __half* K = kCache + base;
  const __half* V = vCache + base;
  // Scores: one warp per key position, lanes over the head dimension.
  const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, warps = blockDim.x / WARP;
  for (int j = warp; j < len; j += warps) {
    float s = 0.f;
    for (int d = lane; d < headDim; d += WARP) s += qh[d] * __half2float(K[(size_t)j * headDim + d]);
    s = warp_sum(s);
    if (lane == 0) scores[j] = s * scale;
  }
  __syncthreads();
  float m = -INFINITY;
  for (int j = threadIdx.x; j < len; j += blockDim.x) m = fmaxf(m, scores[j]);
  m = block_max(m, reduce);
  float sum = 0.f;
  for (int j = threadIdx.x; j < len; j += blockDim.x) {
    const float e = __expf(scores[j] - m);
    scores[j] = e;
    sum += e;
  }
  sum = block_sum(sum, reduce);
  // Output: thread t handles dimension t % headDim over the positions j ≡ t / headDim (mod groups).
  const int groups = blockDim.x / headDim;  // headDim ≤ blockDim.x
  const int d = threadIdx.x % headDim, g = threadIdx.x / headDim;
  float acc = 0.f;
  if (g < groups)
    for (int j = g; j < len; j += groups) acc += scores[j] * __half2float(V[(size_t)j * headDim + d]);
  partial[threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.x < headDim) {
    float t = 0.f;
    for (int k = 0; k < groups; k++) t += partial[k * headDim + threadIdx.x];
    out[((size_t)r * heads + h) * headDim + threadIdx.x] = t / sum;
  }
}

// act[r, i] = silu(gu[r, i]) · gu[r, ffn + i] from the fused gate/up projection gu ([n, 2·ffn]).
// grid: ceil(n·ffn / blockDim)
extern "C" __global__ void mop_silu_mul(float* act, const float* gu, int n, int ffn) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n * ffn) {
    const int r = i / ffn, c = i % ffn;
    const float g = gu[(size_t)r * 2 * ffn + c];
    act[i] = g / (1.f + __expf(-g)) * gu[(size_t)r * 2 * ffn + ffn + c];
  }
}

// dst[k, :] = src[rows[k], :]   grid: count blocks
extern "C" __global__ void mop_gather_rows(float* dst, const float* src, const int* rows, int width) {
  const float* s = src + (size_t)rows[blockIdx.x] * width;
  for (int i = threadIdx.x; i < width; i += blockDim.x) dst[(size_t)blockIdx.x * width + i] = s[i];
}
