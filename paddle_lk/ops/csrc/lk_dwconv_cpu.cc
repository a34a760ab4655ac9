// Large-kernel depthwise conv2d, CPU kernels: AVX2/FMA register-blocked direct convolution,
// OpenMP over planes, with a portable scalar fallback chosen at run time.
//
// Why direct convolution: a depthwise KxK conv has no reduction over channels, so im2col/GEMM only
// adds memory traffic. Instead each plane is copied once into a zero-padded scratch buffer (so the
// inner loops have no bounds checks) and a block of 4 output rows x (8*R) columns is accumulated in
// registers. One unaligned input load is shared by the 4 output rows, one weight broadcast by the R
// column vectors, which keeps the loop FMA-bound instead of load-bound.
#include "lk_dwconv_cpu.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LK_AVX2 __attribute__((target("avx2,fma")))
#define LK_UNROLL _Pragma("GCC unroll 16")
#else
#define LK_UNROLL
#define LK_AVX2
#endif

namespace lk {
namespace {

#ifndef LK_ROWS
#define LK_ROWS 4
#endif
#ifndef LK_COLV
#define LK_COLV 3
#endif
// Forward register block: kRows output rows x kColV vectors of 8 columns (kRows * kColV accumulators).
constexpr int kRows = LK_ROWS;
constexpr int kColV = LK_COLV;

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// Threads for a call: at most one per independent work item, and one per ~4 MFLOP. Waking a team for
// a tiny problem costs more than it saves (and on a loaded machine a descheduled thread stalls the
// barrier for a whole time slice).
int pick_threads(int64_t items, double flops) {
#ifdef _OPENMP
  constexpr double kFlopsPerThread = 4e6;
  const int64_t by_work = static_cast<int64_t>(flops / kFlopsPerThread) + 1;
  const int64_t nt = std::min<int64_t>({static_cast<int64_t>(omp_get_max_threads()), items, by_work});
  return static_cast<int>(std::max<int64_t>(1, nt));
#else
  (void)items;
  (void)flops;
  return 1;
#endif
}

// ---------------------------------------------------------------------------------------------
// Forward / input-grad: y[h][w] = sum_{i,j} k[i][j] * xpad[h+i][w+j]
// ---------------------------------------------------------------------------------------------
struct FwdGeom {
  int64_t H, W, K, p;
  int64_t Hr, Wr;  // output extent rounded up to the register block (4 rows, 8 columns)
  int64_t Hp, Wp;  // padded input extent
  explicit FwdGeom(int64_t h, int64_t w, int64_t k) : H(h), W(w), K(k), p(k / 2) {
    Hr = round_up(H, kRows);
    Wr = round_up(W, 8);
    Hp = Hr + K - 1;
    Wp = Wr + K - 1 + 8;  // +8: slack so a vector load never leaves the buffer
  }
};

// Copy one HxW plane into the interior of a zeroed padded buffer (the border stays zero).
inline void pad_plane(const float* src, int64_t H, int64_t W, float* dst, int64_t Wp, int64_t top,
                      int64_t left) {
  for (int64_t h = 0; h < H; ++h) {
    std::memcpy(dst + (h + top) * Wp + left, src + h * W, sizeof(float) * W);
  }
}

// Weight plane with kRows-1 zero rows above and below and one zero column on the right (row stride
// K+1), optionally rotated by 180 degrees. The zero rows let every (input row, output row) pair of a
// block use the same branch-free FMA sequence; the zero column gives an even number of columns for
// the two-accumulator narrow kernel.
inline void ext_weights(const float* w, int64_t K, bool flip, float* we) {
  const int64_t ld = K + 1;
  float* body = we + (kRows - 1) * ld;
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) {
      body[i * ld + j] = flip ? w[(K - 1 - i) * K + (K - 1 - j)] : w[i * K + j];
    }
  }
}

template <int R>
LK_AVX2 void fwd_block_avx2(const float* xp, int64_t Wp, const float* we, int64_t K, float* out,
                            int64_t Wr, int64_t Y, int64_t X0) {
  // A narrow block (R == 1) has only kRows independent accumulators, too few to hide the FMA
  // latency: a second set takes the odd kernel columns (the zero column makes the count even).
  constexpr int S = R == 1 ? 2 : 1;
  const int64_t ld = K + 1;
  const int64_t cols = S == 2 ? K + 1 : K;
  __m256 acc[S][kRows][R];
  LK_UNROLL
  for (int s = 0; s < S; ++s)
    LK_UNROLL
    for (int b = 0; b < kRows; ++b)
      LK_UNROLL
      for (int r = 0; r < R; ++r) acc[s][b][r] = _mm256_setzero_ps();
  const int64_t T = K + kRows - 1;
  for (int64_t t = 0; t < T; ++t) {
    const float* xrow = xp + (Y + t) * Wp + X0;
    // Output row Y+b reads input row Y+t with kernel row t-b; `we` is offset by kRows-1 rows.
    const float* w0 = we + (t + kRows - 1) * ld;
    for (int64_t j = 0; j < cols; j += S) {
      LK_UNROLL
      for (int s = 0; s < S; ++s) {
        __m256 v[R];
        LK_UNROLL
        for (int r = 0; r < R; ++r) v[r] = _mm256_loadu_ps(xrow + j + s + 8 * r);
        LK_UNROLL
        for (int b = 0; b < kRows; ++b) {
          const __m256 wb = _mm256_broadcast_ss(w0 - b * ld + j + s);
          LK_UNROLL
          for (int r = 0; r < R; ++r) acc[s][b][r] = _mm256_fmadd_ps(wb, v[r], acc[s][b][r]);
        }
      }
    }
  }
  LK_UNROLL
  for (int b = 0; b < kRows; ++b)
    LK_UNROLL
    for (int r = 0; r < R; ++r) {
      __m256 a = acc[0][b][r];
      if (S == 2) a = _mm256_add_ps(a, acc[S - 1][b][r]);
      _mm256_storeu_ps(out + (Y + b) * Wr + X0 + 8 * r, a);
    }
}

LK_AVX2 void fwd_plane_avx2(const FwdGeom& g, const float* xp, const float* we, float* out) {
  for (int64_t Y = 0; Y < g.Hr; Y += kRows) {
    int64_t X0 = 0;
    for (; X0 + 8 * kColV <= g.Wr; X0 += 8 * kColV) {
      fwd_block_avx2<kColV>(xp, g.Wp, we, g.K, out, g.Wr, Y, X0);
    }
    // Column tail: one narrower block (the width is a multiple of 8).
    switch ((g.Wr - X0) / 8) {
      case 1: fwd_block_avx2<1>(xp, g.Wp, we, g.K, out, g.Wr, Y, X0); break;
      case 2: fwd_block_avx2<2>(xp, g.Wp, we, g.K, out, g.Wr, Y, X0); break;
      case 3: fwd_block_avx2<3>(xp, g.Wp, we, g.K, out, g.Wr, Y, X0); break;
      case 4: fwd_block_avx2<4>(xp, g.Wp, we, g.K, out, g.Wr, Y, X0); break;
      case 5: fwd_block_avx2<5>(xp, g.Wp, we, g.K, out, g.Wr, Y, X0); break;
      default: break;
    }
  }
}

void fwd_plane_scalar(const FwdGeom& g, const float* xp, const float* we, float* out) {
  const int64_t ld = g.K + 1;
  const float* wk = we + (kRows - 1) * ld;
  for (int64_t h = 0; h < g.H; ++h) {
    for (int64_t w = 0; w < g.W; ++w) {
      float s = 0.f;
      for (int64_t i = 0; i < g.K; ++i) {
        const float* xr = xp + (h + i) * g.Wp + w;
        const float* wr = wk + i * ld;
        for (int64_t j = 0; j < g.K; ++j) s += wr[j] * xr[j];
      }
      out[h * g.Wr + w] = s;
    }
  }
}

// Shared driver of forward (flip=false, optional bias) and input grad (flip=true, no bias).
void conv_same_planes(const float* in, const float* w, const float* b, float* out, int64_t N,
                      int64_t C, int64_t H, int64_t W, int64_t K, bool flip) {
  const bool avx2 = cpu_has_avx2_fma();
  const FwdGeom g(H, W, K);
  const int64_t planes = N * C;
  const int nt = pick_threads(planes, 2.0 * planes * H * W * K * K);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> xp(static_cast<size_t>(g.Hp * g.Wp), 0.f);
    std::vector<float> we(static_cast<size_t>((K + 2 * (kRows - 1)) * (K + 1)), 0.f);
    std::vector<float> ob(static_cast<size_t>(g.Hr * g.Wr), 0.f);
#pragma omp for schedule(dynamic, 1)
    for (int64_t pl = 0; pl < planes; ++pl) {
      const int64_t c = pl % C;
      pad_plane(in + pl * H * W, H, W, xp.data(), g.Wp, g.p, g.p);
      ext_weights(w + c * K * K, K, flip, we.data());
      if (avx2) {
        fwd_plane_avx2(g, xp.data(), we.data(), ob.data());
      } else {
        fwd_plane_scalar(g, xp.data(), we.data(), ob.data());
      }
      const float bias = b ? b[c] : 0.f;
      float* dst = out + pl * H * W;
      for (int64_t h = 0; h < H; ++h) {
        const float* src = ob.data() + h * g.Wr;
        for (int64_t x = 0; x < W; ++x) dst[h * W + x] = src[x] + bias;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Weight grad: dw[i][j] = sum_{n,y,x} dy[y][x] * xpad[y+i][x+j]
// Register block: BI kernel rows x J vectors of 8 kernel columns. One input vector load is shared by
// the BI kernel rows, one dy broadcast by the J column vectors.
// ---------------------------------------------------------------------------------------------
// Kernel rows per block, chosen so BI*J accumulators + BI broadcasts + 1 input vector fit the 16 ymm
// registers without spills (measured on AVX2: e.g. J=3 with BI=4 spills and runs ~35% slower).
constexpr int bi_for(int J) { return J == 1 ? 8 : J == 2 ? 5 : J == 3 ? 3 : J == 4 ? 3 : J <= 6 ? 2 : 1; }

struct WgtGeom {
  int64_t H, W, K, p, J, BI, Kr, Hq, Wq, Hd;
  WgtGeom(int64_t h, int64_t w, int64_t k) : H(h), W(w), K(k), p(k / 2) {
    J = (K + 7) / 8;
    BI = bi_for(static_cast<int>(J));
    Kr = round_up(K, BI);
    Hq = H + Kr;        // padded input rows (>= H + Kr - 1)
    Wq = W + 8 * J;     // padded input columns
    Hd = H + 2 * (BI - 1);  // dy with BI-1 zero rows above and below
  }
};

template <int J>
LK_AVX2 void wgt_plane_avx2(const WgtGeom& g, const float* xq, const float* dyp, float* acc_out) {
  constexpr int BI = bi_for(J);
  const int64_t W = g.W, Wq = g.Wq;
  for (int64_t i0 = 0; i0 < g.Kr; i0 += BI) {
    __m256 acc[BI][J];
    LK_UNROLL
    for (int a = 0; a < BI; ++a)
      LK_UNROLL
      for (int v = 0; v < J; ++v) acc[a][v] = _mm256_setzero_ps();
    const int64_t Q = g.H + BI - 1;
    for (int64_t q = 0; q < Q; ++q) {
      const float* xrow = xq + (i0 + q) * Wq;
      // kernel row i0+a pairs input row i0+q with dy row q-a (dyp row q-a+BI-1).
      const float* drow[BI];
      LK_UNROLL
      for (int a = 0; a < BI; ++a) drow[a] = dyp + (q - a + BI - 1) * W;
      for (int64_t x = 0; x < W; ++x) {
        __m256 d[BI];
        LK_UNROLL
        for (int a = 0; a < BI; ++a) d[a] = _mm256_broadcast_ss(drow[a] + x);
        LK_UNROLL
        for (int v = 0; v < J; ++v) {
          const __m256 xv = _mm256_loadu_ps(xrow + x + 8 * v);
          LK_UNROLL
          for (int a = 0; a < BI; ++a) acc[a][v] = _mm256_fmadd_ps(d[a], xv, acc[a][v]);
        }
      }
    }
    LK_UNROLL
    for (int a = 0; a < BI; ++a) {
      LK_UNROLL
      for (int v = 0; v < J; ++v) {
        float* dst = acc_out + (i0 + a) * 8 * J + 8 * v;
        _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), acc[a][v]));
      }
    }
  }
}

void wgt_plane_scalar(const WgtGeom& g, const float* xq, const float* dyp, float* acc_out) {
  const float* dy = dyp + (g.BI - 1) * g.W;
  for (int64_t i = 0; i < g.K; ++i) {
    for (int64_t j = 0; j < g.K; ++j) {
      float s = 0.f;
      for (int64_t y = 0; y < g.H; ++y) {
        const float* xr = xq + (y + i) * g.Wq + j;
        const float* dr = dy + y * g.W;
        for (int64_t x = 0; x < g.W; ++x) s += dr[x] * xr[x];
      }
      acc_out[i * 8 * g.J + j] += s;
    }
  }
}

using WgtFn = void (*)(const WgtGeom&, const float*, const float*, float*);

WgtFn pick_wgt_fn(int64_t J, bool avx2) {
  if (!avx2) return wgt_plane_scalar;
  switch (J) {
    case 1: return wgt_plane_avx2<1>;
    case 2: return wgt_plane_avx2<2>;
    case 3: return wgt_plane_avx2<3>;
    case 4: return wgt_plane_avx2<4>;
    case 5: return wgt_plane_avx2<5>;
    case 6: return wgt_plane_avx2<6>;
    case 7: return wgt_plane_avx2<7>;
    case 8: return wgt_plane_avx2<8>;
    default: return wgt_plane_scalar;  // K > 64: correct, just not vectorized
  }
}

}  // namespace

bool cpu_has_avx2_fma() {
#if defined(__GNUC__) || defined(__clang__)
  static const bool hw = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  // PADDLE_LK_OP_NO_AVX2=1 forces the portable scalar path (tests, debugging); read per call.
  const char* off = std::getenv("PADDLE_LK_OP_NO_AVX2");
  return hw && !(off && off[0] == '1');
#else
  return false;
#endif
}

void dwconv2d_forward_cpu(const float* x, const float* w, const float* b, float* y, int64_t N,
                          int64_t C, int64_t H, int64_t W, int64_t K) {
  conv_same_planes(x, w, b, y, N, C, H, W, K, /*flip=*/false);
}

void dwconv2d_input_grad_cpu(const float* dy, const float* w, float* dx, int64_t N, int64_t C,
                             int64_t H, int64_t W, int64_t K) {
  conv_same_planes(dy, w, nullptr, dx, N, C, H, W, K, /*flip=*/true);
}

void dwconv2d_weight_grad_cpu(const float* x, const float* dy, float* dw, float* db, int64_t N,
                              int64_t C, int64_t H, int64_t W, int64_t K) {
  const WgtGeom g(H, W, K);
  const WgtFn fn = pick_wgt_fn(g.J, cpu_has_avx2_fma());
  const int nt = pick_threads(C, 2.0 * N * C * H * W * K * K);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> xq(static_cast<size_t>(g.Hq * g.Wq), 0.f);
    std::vector<float> dyp(static_cast<size_t>(g.Hd * g.W), 0.f);
    std::vector<float> acc(static_cast<size_t>(g.Kr * 8 * g.J), 0.f);
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < C; ++c) {
      std::fill(acc.begin(), acc.end(), 0.f);
      double bsum = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t off = (n * C + c) * H * W;
        pad_plane(x + off, H, W, xq.data(), g.Wq, g.p, g.p);
        std::memcpy(dyp.data() + (g.BI - 1) * W, dy + off, sizeof(float) * H * W);
        fn(g, xq.data(), dyp.data(), acc.data());
        if (db) {
          for (int64_t i = 0; i < H * W; ++i) bsum += dy[off + i];
        }
      }
      for (int64_t i = 0; i < K; ++i)
        for (int64_t j = 0; j < K; ++j) dw[(c * K + i) * K + j] = acc[i * 8 * g.J + j];
      if (db) db[c] = static_cast<float>(bsum);
    }
  }
}

}  // namespace lk
