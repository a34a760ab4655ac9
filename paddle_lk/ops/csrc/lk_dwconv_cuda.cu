// Large-kernel depthwise conv2d, CUDA kernels. See lk_dwconv_cuda.h for the contract.
//
// Forward and input grad: one block per (output tile, channel, image). The block stages the input
// tile plus its K-1 halo and the channel's KxK weights in shared memory as float32, then each
// thread accumulates a column of outputs in registers. Input grad is the same kernel reading the
// weights rotated by 180 degrees.
// Weight grad: one block per (tile, channel, image) stages dy's tile and x's haloed tile, each thread
// reduces some (i, j) taps over the tile and atomically adds into a float32 workspace, which is then
// converted to the output dtype.
// Dilation D: output (h, w) reads only inputs of its own phase (h mod D, w mod D), so each block works
// on one phase's sub-grid (every D-th row and column): the tile, its K-1 halo and the shared memory
// are those of the undilated kernel, whatever D is. blockIdx.x enumerates (phase, tile).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "lk_dwconv_cuda.h"

namespace {

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_float<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Where a block works: phase (pr, pc) of the dilation and the tile origin (ty0, tx0) in that phase's
// sub-grid, whose point (sy, sx) is pixel (pr + D*sy, pc + D*sx).
struct BlockPos {
  int pr, pc, ty0, tx0;
};
template <int TILE>
__device__ __forceinline__ BlockPos block_pos(int D, int tiles_x, int tiles_per_phase) {
  const int phase = blockIdx.x / tiles_per_phase;
  const int tile = blockIdx.x % tiles_per_phase;
  return {phase / D, phase % D, (tile / tiles_x) * TILE, (tile % tiles_x) * TILE};
}

// Output tile TILE x TILE computed by TILE x BY threads, TILE / BY rows per thread.
template <typename T, int TILE, int BY>
__global__ void __launch_bounds__(TILE * BY)
    conv_same_kernel(const T* __restrict__ in, const T* __restrict__ w, const T* __restrict__ b,
                     T* __restrict__ out, int C, int H, int W, int K, int D, int tiles_x,
                     int tiles_per_phase, bool flip) {
  extern __shared__ float smem[];
  constexpr int RPT = TILE / BY;
  const int S = TILE + K - 1;
  float* xs = smem;
  float* ws = smem + S * S;
  const int c = blockIdx.y;
  const long long plane = static_cast<long long>(blockIdx.z) * C + c;
  const BlockPos bp = block_pos<TILE>(D, tiles_x, tiles_per_phase);
  const int y0 = bp.ty0, x0 = bp.tx0;
  const int p = K / 2;  // halo in sub-grid points
  const int tid = threadIdx.y * TILE + threadIdx.x;
  constexpr int kThreads = TILE * BY;

  const T* wc = w + static_cast<long long>(c) * K * K;
  for (int idx = tid; idx < K * K; idx += kThreads) {
    ws[idx] = to_float(wc[flip ? (K * K - 1 - idx) : idx]);
  }
  const T* ip = in + plane * H * W;
  for (int idx = tid; idx < S * S; idx += kThreads) {
    const int sy = y0 + idx / S - p, sx = x0 + idx % S - p;
    const int gy = bp.pr + D * sy, gx = bp.pc + D * sx;
    xs[idx] = (sy >= 0 && gy < H && sx >= 0 && gx < W)
                  ? to_float(ip[static_cast<long long>(gy) * W + gx])
                  : 0.f;
  }
  __syncthreads();

  float acc[RPT];
#pragma unroll
  for (int r = 0; r < RPT; ++r) acc[r] = 0.f;
  for (int i = 0; i < K; ++i) {
    const float* xr = xs + (threadIdx.y + i) * S + threadIdx.x;
    const float* wr = ws + i * K;
    for (int j = 0; j < K; ++j) {
      const float wv = wr[j];
#pragma unroll
      for (int r = 0; r < RPT; ++r) acc[r] = fmaf(wv, xr[r * BY * S + j], acc[r]);
    }
  }
  const float bias = b ? to_float(b[c]) : 0.f;
  T* op = out + plane * H * W;
  const int ox = bp.pc + D * (x0 + threadIdx.x);
#pragma unroll
  for (int r = 0; r < RPT; ++r) {
    const int oy = bp.pr + D * (y0 + threadIdx.y + r * BY);
    if (oy < H && ox < W) op[static_cast<long long>(oy) * W + ox] = from_float<T>(acc[r] + bias);
  }
}

// Partial weight grad of one TILE x TILE tile of one (image, channel), added into ws32[c].
template <typename T, int TILE>
__global__ void __launch_bounds__(256)
    wgrad_kernel(const T* __restrict__ x, const T* __restrict__ dy, float* __restrict__ ws32, int C,
                 int H, int W, int K, int D, int tiles_x, int tiles_per_phase) {
  extern __shared__ float smem[];
  const int S = TILE + K - 1;
  float* xs = smem;
  float* ds = smem + S * S;
  const int c = blockIdx.y;
  const long long plane = static_cast<long long>(blockIdx.z) * C + c;
  const BlockPos bp = block_pos<TILE>(D, tiles_x, tiles_per_phase);
  const int y0 = bp.ty0, x0 = bp.tx0;
  const int p = K / 2;  // halo in sub-grid points
  const int tid = threadIdx.x;
  const T* xp = x + plane * H * W;
  const T* dp = dy + plane * H * W;
  for (int idx = tid; idx < TILE * TILE; idx += blockDim.x) {
    const int gy = bp.pr + D * (y0 + idx / TILE);
    const int gx = bp.pc + D * (x0 + idx % TILE);
    ds[idx] = (gy < H && gx < W) ? to_float(dp[static_cast<long long>(gy) * W + gx]) : 0.f;
  }
  for (int idx = tid; idx < S * S; idx += blockDim.x) {
    const int sy = y0 + idx / S - p, sx = x0 + idx % S - p;
    const int gy = bp.pr + D * sy, gx = bp.pc + D * sx;
    xs[idx] = (sy >= 0 && gy < H && sx >= 0 && gx < W)
                  ? to_float(xp[static_cast<long long>(gy) * W + gx])
                  : 0.f;
  }
  __syncthreads();
  for (int idx = tid; idx < K * K; idx += blockDim.x) {
    const int i = idx / K;
    const int j = idx % K;
    float s = 0.f;
    for (int r = 0; r < TILE; ++r) {
      const float* xr = xs + (r + i) * S + j;
      const float* dr = ds + r * TILE;
#pragma unroll 8
      for (int q = 0; q < TILE; ++q) s = fmaf(dr[q], xr[q], s);
    }
    atomicAdd(ws32 + static_cast<long long>(c) * K * K + idx, s);
  }
}

template <typename T>
__global__ void cast_kernel(const float* __restrict__ src, T* __restrict__ dst, long long n) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    dst[i] = from_float<T>(src[i]);
  }
}

// db[c] = sum over n, h, w of dy: one block per channel, float32 tree reduction.
template <typename T>
__global__ void __launch_bounds__(256)
    bias_grad_kernel(const T* __restrict__ dy, T* __restrict__ db, int N, int C, long long HW) {
  __shared__ float red[256];
  const int c = blockIdx.x;
  float s = 0.f;
  for (int n = 0; n < N; ++n) {
    const T* p = dy + (static_cast<long long>(n) * C + c) * HW;
    for (long long i = threadIdx.x; i < HW; i += blockDim.x) s += to_float(p[i]);
  }
  red[threadIdx.x] = s;
  __syncthreads();
  for (int off = blockDim.x / 2; off > 0; off >>= 1) {
    if (threadIdx.x < off) red[threadIdx.x] += red[threadIdx.x + off];
    __syncthreads();
  }
  if (threadIdx.x == 0) db[c] = from_float<T>(red[0]);
}

bool grid_ok(int64_t tiles, int64_t C, int64_t N) {
  return tiles > 0 && tiles < (1LL << 31) && C <= 65535 && N <= 65535;
}

// Tiles of one phase's sub-grid (ceil(H/D) x ceil(W/D) points; phases with fewer rows or columns
// mask the rest) and of all D*D phases.
struct TileGrid {
  int64_t tiles_x, per_phase, total;
  TileGrid(int64_t H, int64_t W, int64_t D, int tile) {
    const int64_t hs = (H + D - 1) / D, ws = (W + D - 1) / D;
    tiles_x = (ws + tile - 1) / tile;
    per_phase = tiles_x * ((hs + tile - 1) / tile);
    total = per_phase * D * D;
  }
};

template <typename T>
cudaError_t launch_conv_same(const void* in, const void* w, const void* b, void* out, int64_t N,
                             int64_t C, int64_t H, int64_t W, int64_t K, int64_t D, bool flip,
                             cudaStream_t stream) {
  // Small tiles for very large kernels keep the haloed tile + weights under 48 KiB of shared memory.
  const bool big = K > 33;
  const int tile = big ? 16 : 32;
  const TileGrid tg(H, W, D, tile);
  if (!grid_ok(tg.total, C, N)) return cudaErrorInvalidConfiguration;
  const int64_t S = tile + K - 1;
  const size_t smem = sizeof(float) * static_cast<size_t>(S * S + K * K);
  const dim3 grid(static_cast<unsigned>(tg.total), static_cast<unsigned>(C), static_cast<unsigned>(N));
  const T* ip = static_cast<const T*>(in);
  const T* wp = static_cast<const T*>(w);
  const T* bp = static_cast<const T*>(b);
  T* op = static_cast<T*>(out);
  if (big) {
    conv_same_kernel<T, 16, 16><<<grid, dim3(16, 16), smem, stream>>>(
        ip, wp, bp, op, int(C), int(H), int(W), int(K), int(D), int(tg.tiles_x), int(tg.per_phase), flip);
  } else {
    conv_same_kernel<T, 32, 8><<<grid, dim3(32, 8), smem, stream>>>(
        ip, wp, bp, op, int(C), int(H), int(W), int(K), int(D), int(tg.tiles_x), int(tg.per_phase), flip);
  }
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_weight_grad(const void* x, const void* dy, void* dw, float* ws32, int64_t N,
                               int64_t C, int64_t H, int64_t W, int64_t K, int64_t D,
                               cudaStream_t stream) {
  constexpr int tile = 16;
  const TileGrid tg(H, W, D, tile);
  if (!grid_ok(tg.total, C, N)) return cudaErrorInvalidConfiguration;
  const int64_t n_w = C * K * K;
  cudaError_t err = cudaMemsetAsync(ws32, 0, sizeof(float) * static_cast<size_t>(n_w), stream);
  if (err != cudaSuccess) return err;
  const int64_t S = tile + K - 1;
  const size_t smem = sizeof(float) * static_cast<size_t>(S * S + tile * tile);
  const dim3 grid(static_cast<unsigned>(tg.total), static_cast<unsigned>(C), static_cast<unsigned>(N));
  wgrad_kernel<T, tile><<<grid, 256, smem, stream>>>(static_cast<const T*>(x),
                                                      static_cast<const T*>(dy), ws32, int(C),
                                                      int(H), int(W), int(K), int(D),
                                                      int(tg.tiles_x), int(tg.per_phase));
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  if (static_cast<void*>(ws32) != dw) {
    const int64_t blocks = (n_w + 255) / 256 < 4096 ? (n_w + 255) / 256 : 4096;
    cast_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(ws32, static_cast<T*>(dw),
                                                                      n_w);
    err = cudaGetLastError();
  }
  return err;
}

template <typename T>
cudaError_t launch_bias_grad(const void* dy, void* db, int64_t N, int64_t C, int64_t H, int64_t W,
                             cudaStream_t stream) {
  if (C > 2147483647LL || N > 2147483647LL) return cudaErrorInvalidConfiguration;
  bias_grad_kernel<T><<<static_cast<unsigned>(C), 256, 0, stream>>>(
      static_cast<const T*>(dy), static_cast<T*>(db), int(N), int(C), H * W);
  return cudaGetLastError();
}

bool empty_problem(int64_t N, int64_t C, int64_t H, int64_t W) {
  return N == 0 || C == 0 || H == 0 || W == 0;
}

bool bad_kernel(int64_t K, int64_t D) { return K < 1 || K % 2 == 0 || K > 63 || D < 1 || D > 64; }

}  // namespace

extern "C" cudaError_t lk_dwconv2d_forward_cuda(int dtype, const void* x, const void* w,
                                                const void* b, void* y, int64_t N, int64_t C,
                                                int64_t H, int64_t W, int64_t K, int64_t D,
                                                cudaStream_t stream) {
  if (empty_problem(N, C, H, W)) return cudaSuccess;
  if (bad_kernel(K, D)) return cudaErrorInvalidValue;
  switch (dtype) {
    case LK_DTYPE_FLOAT32: return launch_conv_same<float>(x, w, b, y, N, C, H, W, K, D, false, stream);
    case LK_DTYPE_FLOAT16: return launch_conv_same<__half>(x, w, b, y, N, C, H, W, K, D, false, stream);
    case LK_DTYPE_BFLOAT16:
      return launch_conv_same<__nv_bfloat16>(x, w, b, y, N, C, H, W, K, D, false, stream);
    default: return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t lk_dwconv2d_input_grad_cuda(int dtype, const void* dy, const void* w,
                                                   void* dx, int64_t N, int64_t C, int64_t H,
                                                   int64_t W, int64_t K, int64_t D,
                                                   cudaStream_t stream) {
  if (empty_problem(N, C, H, W)) return cudaSuccess;
  if (bad_kernel(K, D)) return cudaErrorInvalidValue;
  switch (dtype) {
    case LK_DTYPE_FLOAT32:
      return launch_conv_same<float>(dy, w, nullptr, dx, N, C, H, W, K, D, true, stream);
    case LK_DTYPE_FLOAT16:
      return launch_conv_same<__half>(dy, w, nullptr, dx, N, C, H, W, K, D, true, stream);
    case LK_DTYPE_BFLOAT16:
      return launch_conv_same<__nv_bfloat16>(dy, w, nullptr, dx, N, C, H, W, K, D, true, stream);
    default: return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t lk_dwconv2d_weight_grad_cuda(int dtype, const void* x, const void* dy,
                                                    void* dw, float* workspace, int64_t N,
                                                    int64_t C, int64_t H, int64_t W, int64_t K,
                                                    int64_t D, cudaStream_t stream) {
  if (bad_kernel(K, D)) return cudaErrorInvalidValue;
  if (empty_problem(N, C, H, W)) {
    // No contributions: the gradient is zero.
    const size_t elt = dtype == LK_DTYPE_FLOAT32 ? 4 : 2;
    return cudaMemsetAsync(dw, 0, elt * static_cast<size_t>(C * K * K), stream);
  }
  switch (dtype) {
    case LK_DTYPE_FLOAT32:
      return launch_weight_grad<float>(x, dy, dw, workspace, N, C, H, W, K, D, stream);
    case LK_DTYPE_FLOAT16:
      return launch_weight_grad<__half>(x, dy, dw, workspace, N, C, H, W, K, D, stream);
    case LK_DTYPE_BFLOAT16:
      return launch_weight_grad<__nv_bfloat16>(x, dy, dw, workspace, N, C, H, W, K, D, stream);
    default: return cudaErrorInvalidValue;
  }
}

extern "C" cudaError_t lk_dwconv2d_bias_grad_cuda(int dtype, const void* dy, void* db, int64_t N,
                                                  int64_t C, int64_t H, int64_t W,
                                                  cudaStream_t stream) {
  if (C == 0) return cudaSuccess;
  switch (dtype) {
    case LK_DTYPE_FLOAT32: return launch_bias_grad<float>(dy, db, N, C, H, W, stream);
    case LK_DTYPE_FLOAT16: return launch_bias_grad<__half>(dy, db, N, C, H, W, stream);
    case LK_DTYPE_BFLOAT16: return launch_bias_grad<__nv_bfloat16>(dy, db, N, C, H, W, stream);
    default: return cudaErrorInvalidValue;
  }
}
