// Large-kernel depthwise conv2d, CPU kernels (float32, NCHW).
//
// Semantics (all functions): groups == C, channel multiplier 1, square odd kernel K (1 <= K),
// stride 1, dilation D >= 1, zero "same" padding D*(K/2): tap (i, j) of output (h, w) reads
// x[h + D*(i - K/2)][w + D*(j - K/2)]. Tensors are dense row-major:
//   x, y, dx, dy: [N, C, H, W]      w, dw: [C, 1, K, K]      b, db: [C]
// No Paddle headers here: the kernels take raw pointers so they can be reused and tested alone.
#pragma once

#include <cstdint>

namespace lk {

// True when the running CPU supports AVX2 and FMA (the vectorized path) and PADDLE_LK_OP_NO_AVX2 is not
// "1"; else a portable scalar path is used.
bool cpu_has_avx2_fma();

// y = dwconv(x, w) (+ b when b != nullptr).
void dwconv2d_forward_cpu(const float* x, const float* w, const float* b, float* y,
                          int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t D);

// dx = dL/dx given dy = dL/dy: a "same" conv of dy with the 180-degree rotated kernel.
void dwconv2d_input_grad_cpu(const float* dy, const float* w, float* dx,
                             int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t D);

// dw = dL/dw (overwritten) and, when db != nullptr, db = dL/db (overwritten).
void dwconv2d_weight_grad_cpu(const float* x, const float* dy, float* dw, float* db,
                              int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t D);

}  // namespace lk
