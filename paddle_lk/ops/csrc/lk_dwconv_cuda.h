// Large-kernel depthwise conv2d, CUDA kernels (float32, float16 and bfloat16, float32 accumulation).
//
// Plain C API over raw device pointers and a cudaStream_t: no Paddle headers, so the same file is
// bound to Paddle (lk_dwconv_op.cc) and loaded through ctypes by benchmarks/dwconv_gpu.py.
// Semantics are those of lk_dwconv_cpu.h: NCHW, groups == C, multiplier 1, square odd K,
// stride 1, dilation D >= 1, zero padding D*(K/2). Every function returns the launch status.
#pragma once

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

// Element type codes of the `dtype` argument.
enum { LK_DTYPE_FLOAT32 = 0, LK_DTYPE_FLOAT16 = 1, LK_DTYPE_BFLOAT16 = 2 };

// y = dwconv(x, w) (+ b when b != NULL).
cudaError_t lk_dwconv2d_forward_cuda(int dtype, const void* x, const void* w, const void* b, void* y,
                                     int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t D,
                                     cudaStream_t stream);

// dx = dL/dx: a "same" conv of dy with the 180-degree rotated kernel.
cudaError_t lk_dwconv2d_input_grad_cuda(int dtype, const void* dy, const void* w, void* dx,
                                        int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t D,
                                        cudaStream_t stream);

// dw = dL/dw (overwritten). `workspace` is device memory for C*K*K floats (float32 accumulation,
// also for float16 / bfloat16 tensors); it may alias `dw` when dtype is float32.
cudaError_t lk_dwconv2d_weight_grad_cuda(int dtype, const void* x, const void* dy, void* dw,
                                         float* workspace, int64_t N, int64_t C, int64_t H,
                                         int64_t W, int64_t K, int64_t D, cudaStream_t stream);

// db = dL/db = sum of dy over N, H, W (overwritten).
cudaError_t lk_dwconv2d_bias_grad_cuda(int dtype, const void* dy, void* db, int64_t N, int64_t C,
                                       int64_t H, int64_t W, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
