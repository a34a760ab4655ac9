// Large-kernel depthwise conv2d, CPU kernels: AVX2/FMA register-blocked direct convolution,
// OpenMP over channels, with a portable scalar fallback chosen at run time.
//
// Why direct convolution: a depthwise KxK conv has no reduction over channels, so im2col/GEMM only
// adds memory traffic. Instead each plane is copied once into a zero-padded scratch buffer (so the
// inner loops have no bounds checks) and a block of 4 output rows x (8*R) columns is accumulated in
// registers. One unaligned input load is shared by the 4 output rows, one weight broadcast by the R
// column vectors, which keeps the loop FMA-bound instead of load-bound. Kernel rows and columns that
// only meet the zero border are skipped. The exception is maps smaller than the kernel (RepLKNet's
// 7x7 stage 4 under a 13x13 kernel), where a per-channel dense matrix shared by the batch wins; see
// "Small maps" below.
//
// Dilation D: tap (i, j) reads x[h + D*(i - K/2)][w + D*(j - K/2)]. Along W the 8 output columns of a
// vector still read 8 consecutive inputs (offset D*j), so the forward only strides its taps; along H
// a register block takes 4 output rows D apart, which then share input rows exactly as with D == 1.
// The weight gradient vectorizes over 8 kernel columns, whose inputs are D apart: it reads a copy of
// the plane split into D column phases, where they are consecutive again.
#include "lk_dwconv_cpu.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define LK_AVX2 __attribute__((target("avx2,fma")))
#define LK_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define LK_UNROLL _Pragma("GCC unroll 16")
#define LK_INLINE inline __attribute__((always_inline))
#else
#define LK_INLINE inline
#define LK_UNROLL
#define LK_AVX2
#define LK_AVX512
#endif

namespace lk {
namespace {

// Forward register block: kRows output rows x up to 3 vectors of 8 columns (12 accumulators, 3 input
// vectors and 1 broadcast fill the 16 ymm registers).
constexpr int kRows = 4;

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
// Ceiling of a / b for b > 0 and any sign of a.
inline int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

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

// Masked store of lanes [0, left) (all 8 when left >= 8).
LK_AVX2 LK_INLINE void store_lanes(float* dst, __m256 v, int64_t left) {
  if (left >= 8) {
    _mm256_storeu_ps(dst, v);
  } else if (left > 0) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(dst, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lane), v);
  }
}

// ---------------------------------------------------------------------------------------------
// Forward / input-grad: y[h][w] = sum_{i,j} k[i][j] * xpad[h+i][w+j]
// ---------------------------------------------------------------------------------------------
struct FwdGeom {
  int64_t H, W, K, D, p;  // p = D*(K/2): the "same" padding in pixels
  int64_t Wr;      // output width rounded up to 8 columns
  int64_t Hp, Wp;  // padded input extent
  explicit FwdGeom(int64_t h, int64_t w, int64_t k, int64_t d) : H(h), W(w), K(k), D(d), p(d * (k / 2)) {
    // Output rows go in blocks of kRows rows D apart (one block per phase r mod D): the last block
    // of a phase may name rows past H, whose input rows must still lie in the buffer.
    const int64_t blocks = ceil_div(ceil_div(H, D), kRows);
    Wr = round_up(W, 8);
    Hp = D * kRows * blocks + D * (K - 1);
    // Slack so a vector load never leaves the buffer: 8 columns, and D for the zero weight column
    // (tap K) of the narrow kernel.
    Wp = Wr + D * (K - 1) + std::max<int64_t>(8, D);
  }
};

// Copies n floats with vector moves and a masked tail: no memcpy call per short row (on 7- and
// 14-wide maps the calls cost as much as the convolution of the row), nothing written past n.
LK_AVX2 LK_INLINE void copy_row_avx2(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
  if (i < n) {
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(dst + i, m, _mm256_maskload_ps(src + i, m));
  }
}

// Copies `rows` rows of n floats (strides sld / dld).
LK_AVX2 void copy_rows_avx2(float* dst, int64_t dld, const float* src, int64_t sld, int64_t rows, int64_t n) {
  for (int64_t h = 0; h < rows; ++h) copy_row_avx2(dst + h * dld, src + h * sld, n);
}

void copy_rows(float* dst, int64_t dld, const float* src, int64_t sld, int64_t rows, int64_t n, bool avx2) {
  if (avx2) {
    copy_rows_avx2(dst, dld, src, sld, rows, n);
    return;
  }
  for (int64_t h = 0; h < rows; ++h) std::memcpy(dst + h * dld, src + h * sld, sizeof(float) * n);
}

// Copy one HxW plane into the interior of a zeroed padded buffer (the border stays zero).
inline void pad_plane(const float* src, int64_t H, int64_t W, float* dst, int64_t Wp, int64_t top,
                      int64_t left, bool avx2) {
  copy_rows(dst + top * Wp + left, Wp, src, W, H, W, avx2);
}

// Weight plane with kRows-1 zero rows above and below and one zero column on the right (row stride
// K+1), optionally rotated by 180 degrees. The zero rows keep the fixed row patterns of
// fwd_block_avx2 correct for any K (a pattern may name an output row whose kernel row is out of
// range, e.g. when K < kRows-1); the zero column gives an even number of columns for the
// two-accumulator narrow kernel.
inline void ext_weights(const float* w, int64_t K, bool flip, float* we) {
  const int64_t ld = K + 1;
  float* body = we + (kRows - 1) * ld;
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) {
      body[i * ld + j] = flip ? w[(K - 1 - i) * K + (K - 1 - j)] : w[i * K + j];
    }
  }
}

// One input row of a forward block: output rows b in [BLO, BHI) (kernel row t-b) x R vectors, kernel
// columns [jlo, jhi). The caller passes only rows whose kernel row can be non-zero, so the first and
// last kRows-1 input rows of a block (where fewer than kRows output rows have a kernel row) skip the
// FMAs that would multiply zero weights.
template <int R, int S, int BLO, int BHI>
LK_AVX2 LK_INLINE void fwd_row(const float* xrow, const float* wt, int64_t ld, int64_t D, int64_t jlo,
                               int64_t jhi, __m256 (&acc)[S][kRows][R]) {
  for (int64_t j = jlo; j < jhi; j += S) {
    LK_UNROLL
    for (int s = 0; s < S; ++s) {
      __m256 v[R];
      LK_UNROLL
      for (int r = 0; r < R; ++r) v[r] = _mm256_loadu_ps(xrow + D * (j + s) + 8 * r);
      LK_UNROLL
      for (int b = BLO; b < BHI; ++b) {
        const __m256 wb = _mm256_broadcast_ss(wt - b * ld + j + s);
        LK_UNROLL
        for (int r = 0; r < R; ++r) acc[s][b][r] = _mm256_fmadd_ps(wb, v[r], acc[s][b][r]);
      }
    }
  }
}

// Output rows Y, Y+D, .., Y+(kRows-1)*D x columns [X0, X0+8R). Input row t of the block is padded row
// Y + D*t: output row b meets it through kernel row t - b. Input rows and kernel columns that only meet the
// zero border are skipped (small maps under a large kernel are mostly border: a 13x13 kernel on a
// 7x7 map touches the map with 49 of its 169 taps).
template <int R>
LK_AVX2 void fwd_block_avx2(const FwdGeom& g, const float* xp, const float* we, float bias,
                            float* out, int64_t Y, int64_t X0) {
  static_assert(kRows == 4, "the head/tail row patterns below assume 4 output rows per block");
  // A narrow block (R == 1) has only kRows independent accumulators, too few to hide the FMA
  // latency: a second set takes the odd kernel columns (the zero column makes the count even).
  constexpr int S = R == 1 ? 2 : 1;
  const int64_t K = g.K, D = g.D, p = g.p, ld = K + 1, Wp = g.Wp;
  const int64_t cols = S == 2 ? K + 1 : K;
  __m256 acc[S][kRows][R];
  LK_UNROLL
  for (int s = 0; s < S; ++s)
    LK_UNROLL
    for (int b = 0; b < kRows; ++b)
      LK_UNROLL
      for (int r = 0; r < R; ++r) acc[s][b][r] = _mm256_set1_ps(s == 0 ? bias : 0.f);
  // Input rows Y+t (padded coordinates) holding map rows, and kernel columns whose loads can touch
  // map columns [p, p+W).
  const int64_t T = K + kRows - 1;
  const int64_t thi = std::min(T, ceil_div(p + g.H - Y, D));
  int64_t t = std::max<int64_t>(0, ceil_div(p - Y, D));
  int64_t jlo = std::max<int64_t>(0, ceil_div(p - X0 - 8 * R + 1, D));
  const int64_t jhi = std::min(cols, ceil_div(p + g.W - X0, D));
  if (S == 2) jlo &= ~int64_t{1};
  const float* xrow0 = xp + Y * Wp + X0;
  const int64_t rs = D * Wp;  // padded-row stride between the block's input rows
  // `we` carries kRows-1 zero rows above the kernel, so output row b reads kernel row t-b at
  // wt - b*ld; patterns that are a superset of the valid rows stay correct for any K.
  const float* wt0 = we + (kRows - 1) * ld;
  for (; t < std::min<int64_t>(thi, kRows - 1); ++t) {
    const float* xr = xrow0 + t * rs;
    const float* wt = wt0 + t * ld;
    switch (t) {
      case 0: fwd_row<R, S, 0, 1>(xr, wt, ld, D, jlo, jhi, acc); break;
      case 1: fwd_row<R, S, 0, 2>(xr, wt, ld, D, jlo, jhi, acc); break;
      default: fwd_row<R, S, 0, 3>(xr, wt, ld, D, jlo, jhi, acc); break;
    }
  }
  for (; t < std::min(thi, K); ++t) {
    fwd_row<R, S, 0, kRows>(xrow0 + t * rs, wt0 + t * ld, ld, D, jlo, jhi, acc);
  }
  for (; t < thi; ++t) {
    const float* xr = xrow0 + t * rs;
    const float* wt = wt0 + t * ld;
    switch (t - K) {
      case 0: fwd_row<R, S, 1, 4>(xr, wt, ld, D, jlo, jhi, acc); break;
      case 1: fwd_row<R, S, 2, 4>(xr, wt, ld, D, jlo, jhi, acc); break;
      default: fwd_row<R, S, 3, 4>(xr, wt, ld, D, jlo, jhi, acc); break;
    }
  }
  // Store straight into the [H, W] output: rows past H are dropped, a vector crossing W is masked.
  LK_UNROLL
  for (int b = 0; b < kRows; ++b) {
    if (Y + D * b >= g.H) break;
    float* orow = out + (Y + D * b) * g.W + X0;
    LK_UNROLL
    for (int r = 0; r < R; ++r) {
      __m256 a = acc[0][b][r];
      if (S == 2) a = _mm256_add_ps(a, acc[S - 1][b][r]);
      store_lanes(orow + 8 * r, a, g.W - X0 - 8 * r);
    }
  }
}

LK_AVX2 void fwd_plane_avx2(const FwdGeom& g, const float* xp, const float* we, float bias,
                            float* out) {
  // Column blocks of 3 vectors, with the remainder as blocks of 2 (4 = 2+2): a 1-vector block is
  // load-bound (10 loads per 8 FMAs), so it is used only when the whole row is one vector.
  const int64_t nvec = g.Wr / 8;
  int64_t n3 = nvec / 3, n2 = 0;
  if (nvec == 1) {
    n3 = 0;
  } else if (nvec % 3 == 2) {
    n2 = 1;
  } else if (nvec % 3 == 1) {
    n3 -= 1;
    n2 = 2;
  }
  // Row phases r mod D, each in blocks of kRows rows D apart (D == 1: plain blocks of 4 rows).
  for (int64_t r = 0; r < std::min(g.D, g.H); ++r) {
    for (int64_t k = 0; k < ceil_div(g.H - r, g.D); k += kRows) {
      const int64_t Y = r + g.D * k;
      int64_t X0 = 0;
      for (int64_t i = 0; i < n3; ++i, X0 += 24) fwd_block_avx2<3>(g, xp, we, bias, out, Y, X0);
      for (int64_t i = 0; i < n2; ++i, X0 += 16) fwd_block_avx2<2>(g, xp, we, bias, out, Y, X0);
      if (nvec == 1) fwd_block_avx2<1>(g, xp, we, bias, out, Y, X0);
    }
  }
}

void fwd_plane_scalar(const FwdGeom& g, const float* xp, const float* we, float bias, float* out) {
  const int64_t ld = g.K + 1;
  const float* wk = we + (kRows - 1) * ld;
  for (int64_t h = 0; h < g.H; ++h) {
    for (int64_t w = 0; w < g.W; ++w) {
      float s = bias;
      for (int64_t i = 0; i < g.K; ++i) {
        const float* xr = xp + (h + g.D * i) * g.Wp + w;
        const float* wr = wk + i * ld;
        for (int64_t j = 0; j < g.K; ++j) s += wr[j] * xr[g.D * j];
      }
      out[h * g.W + w] = s;
    }
  }
}

// Work items in channel-major order (all N planes of a channel in a row), so a thread prepares the
// weights of a channel once, not once per plane; chunks of N keep a channel on one thread when there
// are enough channels to share out.
inline int64_t channel_chunk(int64_t N, int64_t C, int nt) { return C >= 2 * nt ? N : 1; }

// Shared driver of forward (flip=false, optional bias) and input grad (flip=true, no bias).
void conv_same_planes(const float* in, const float* w, const float* b, float* out, int64_t N,
                      int64_t C, int64_t H, int64_t W, int64_t K, int64_t D, bool flip) {
  const bool avx2 = cpu_has_avx2_fma();
  const FwdGeom g(H, W, K, D);
  const int64_t planes = N * C;
  const int nt = pick_threads(planes, 2.0 * planes * H * W * K * K);
  const int64_t chunk = channel_chunk(N, C, nt);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> xp(static_cast<size_t>(g.Hp * g.Wp), 0.f);
    std::vector<float> we(static_cast<size_t>((K + 2 * (kRows - 1)) * (K + 1)), 0.f);
    int64_t prepared = -1;  // channel whose weights are in `we`
#pragma omp for schedule(dynamic, chunk)
    for (int64_t item = 0; item < planes; ++item) {
      const int64_t c = item / N, pl = (item % N) * C + c;
      if (c != prepared) {
        ext_weights(w + c * K * K, K, flip, we.data());
        prepared = c;
      }
      pad_plane(in + pl * H * W, H, W, xp.data(), g.Wp, g.p, g.p, avx2);
      const float bias = b ? b[c] : 0.f;
      if (avx2) {
        fwd_plane_avx2(g, xp.data(), we.data(), bias, out + pl * H * W);
      } else {
        fwd_plane_scalar(g, xp.data(), we.data(), bias, out + pl * H * W);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Weight grad: dw[i][j] = sum_{n,y,x} dy[y][x] * xpad[y+D*i][x+D*j]
// Register block: BI kernel rows x J vectors of 8 kernel columns. One input vector load is shared by
// the BI kernel rows, one dy broadcast by the J column vectors. The 8 kernel columns of a vector read
// inputs D apart, so the padded plane is stored split into D column phases (row u, phase s holds
// xpad[u][s], xpad[u][s+D], ...): for x = D*b + s they are then consecutive at phase s, offset b+j.
// ---------------------------------------------------------------------------------------------
// Kernel rows per block, chosen so BI*J accumulators + BI broadcasts + 1 input vector fit the 16 ymm
// registers without spills (measured on AVX2: e.g. J=3 with BI=4 spills and runs ~35% slower).
constexpr int bi_for(int J) { return J == 1 ? 8 : J == 2 ? 5 : J == 3 ? 3 : J == 4 ? 3 : J <= 6 ? 2 : 1; }

struct WgtGeom {
  int64_t H, W, K, D, p, J, BI, Kr, Hq, L, Hd;
  WgtGeom(int64_t h, int64_t w, int64_t k, int64_t d) : H(h), W(w), K(k), D(d), p(d * (k / 2)) {
    J = (K + 7) / 8;
    BI = bi_for(static_cast<int>(J));
    Kr = round_up(K, BI);
    Hq = H + D * (Kr - 1) + 1;          // padded input rows read by the Kr kernel rows
    L = (W - 1) / D + 8 * J + 1;        // length of one column phase of a padded row
    Hd = H + 2 * D * (BI - 1);          // dy with D*(BI-1) zero rows above and below
  }
};

// Copy one HxW plane into a zeroed padded buffer split into D column phases of length L per row.
inline void pad_plane_phased(const float* src, int64_t H, int64_t W, float* dst, int64_t L, int64_t D,
                             int64_t p, bool avx2) {
  if (D == 1) {
    copy_rows(dst + p * L + p, L, src, W, H, W, avx2);
    return;
  }
  for (int64_t h = 0; h < H; ++h) {
    float* row = dst + (h + p) * D * L;
    for (int64_t x = 0; x < W; ++x) {
      const int64_t X = x + p;
      row[(X % D) * L + X / D] = src[h * W + x];
    }
  }
}

// One input row of a weight-grad block: kernel rows i0+a for a in [ALO, AHI) (dy row q-D*a, at
// dq - a*dstride) x J vectors of kernel columns. As in the forward, with D == 1 the first and last
// BI-1 rows of a block pass only the kernel rows that can meet a non-zero dy row.
template <int J, int BI, int ALO, int AHI>
LK_AVX2 LK_INLINE void wgt_row(const float* xrow, const float* dq, int64_t W, int64_t D, int64_t L,
                               int64_t dstride, __m256 (&acc)[BI][J]) {
  for (int64_t s = 0; s < std::min(D, W); ++s) {
    const float* xs = xrow + s * L;
    for (int64_t b = 0, x = s; x < W; ++b, x += D) {
      __m256 d[BI];
      LK_UNROLL
      for (int a = ALO; a < AHI; ++a) d[a] = _mm256_broadcast_ss(dq - a * dstride + x);
      LK_UNROLL
      for (int v = 0; v < J; ++v) {
        const __m256 xv = _mm256_loadu_ps(xs + b + 8 * v);
        LK_UNROLL
        for (int a = ALO; a < AHI; ++a) acc[a][v] = _mm256_fmadd_ps(d[a], xv, acc[a][v]);
      }
    }
  }
}

// Head rows q < BI-1 pass kernel rows [0, q+1); tail rows q = H+u pass [u+1, BI) (D == 1 only).
template <int J, int BI, size_t... U>
LK_AVX2 LK_INLINE void wgt_head_row(int64_t q, const float* xrow, const float* dq, int64_t W,
                                    __m256 (&acc)[BI][J], std::index_sequence<U...>) {
  (void)xrow, (void)dq, (void)W, (void)acc;  // unused when BI == 1 (empty pack)
  ((q == static_cast<int64_t>(U) ? wgt_row<J, BI, 0, static_cast<int>(U) + 1>(xrow, dq, W, 1, 0, W, acc)
                                 : void()),
   ...);
}
template <int J, int BI, size_t... U>
LK_AVX2 LK_INLINE void wgt_tail_row(int64_t u, const float* xrow, const float* dq, int64_t W,
                                    __m256 (&acc)[BI][J], std::index_sequence<U...>) {
  (void)xrow, (void)dq, (void)W, (void)acc;  // unused when BI == 1 (empty pack)
  ((u == static_cast<int64_t>(U) ? wgt_row<J, BI, static_cast<int>(U) + 1, BI>(xrow, dq, W, 1, 0, W, acc)
                                 : void()),
   ...);
}

template <int J>
LK_AVX2 void wgt_plane_avx2(const WgtGeom& g, const float* xq, const float* dyp, float* acc_out) {
  constexpr int BI = bi_for(J);
  const int64_t H = g.H, W = g.W, D = g.D, L = g.L, p = g.p;
  const int64_t rs = D * L;                 // row stride of the phase-split padded plane
  const int64_t Q = H + D * (BI - 1);
  for (int64_t i0 = 0; i0 < g.Kr; i0 += BI) {
    __m256 acc[BI][J];
    LK_UNROLL
    for (int a = 0; a < BI; ++a)
      LK_UNROLL
      for (int v = 0; v < J; ++v) acc[a][v] = _mm256_setzero_ps();
    // Kernel row i0+a pairs padded input row D*i0+q (map rows are [p, p+H)) with dy row q-D*a (dyp
    // row q-D*a+D*(BI-1); dyp has D*(BI-1) zero rows above and below). Rows of the zero border are
    // skipped.
    const int64_t base = D * i0;
    const int64_t qhi = std::min(Q, p + H - base);
    int64_t q = std::max<int64_t>(0, p - base);
    if (D == 1) {
      for (; q < std::min<int64_t>(qhi, BI - 1); ++q) {
        wgt_head_row<J, BI>(q, xq + (base + q) * rs, dyp + (q + BI - 1) * W, W, acc,
                            std::make_index_sequence<BI - 1>{});
      }
      for (; q < std::min(qhi, H); ++q) {
        wgt_row<J, BI, 0, BI>(xq + (base + q) * rs, dyp + (q + BI - 1) * W, W, 1, L, W, acc);
      }
      for (; q < qhi; ++q) {
        wgt_tail_row<J, BI>(q - H, xq + (base + q) * rs, dyp + (q + BI - 1) * W, W, acc,
                            std::make_index_sequence<BI - 1>{});
      }
    } else {  // dy rows outside the map read the zero rows of dyp
      for (; q < qhi; ++q) {
        wgt_row<J, BI, 0, BI>(xq + (base + q) * rs, dyp + (q + D * (BI - 1)) * W, W, D, L, D * W, acc);
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
  const int64_t D = g.D, L = g.L;
  const float* dy = dyp + D * (g.BI - 1) * g.W;
  for (int64_t i = 0; i < g.K; ++i) {
    for (int64_t j = 0; j < g.K; ++j) {
      float s = 0.f;
      for (int64_t y = 0; y < g.H; ++y) {
        const float* xr = xq + (y + D * i) * D * L;
        const float* dr = dy + y * g.W;
        for (int64_t x = 0; x < g.W; ++x) s += dr[x] * xr[(x % D) * L + x / D + j];
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

// ---------------------------------------------------------------------------------------------
// Small maps (the kernel covers most of the map, e.g. a 13x13 kernel on RepLKNet's 7x7 stage-4
// maps): the conv of one channel is a dense [HW x HW] matrix M applied to all N images at once,
// y[n] = M x[n], and the weight grad is the diagonal sums of G = sum_n dy[n] x[n]^T. Direct
// convolution wastes most of its work there (rows of 1 vector are load-bound, most taps meet the
// border, and per-plane overhead dominates); the matrix form is FMA-bound with aligned loads, and
// M is built once per channel and shared by the N images.
// ---------------------------------------------------------------------------------------------
// With dilation D the matrix is that of the zero-stuffed E x E kernel, E = D*(K-1)+1: its cost does not
// depend on the kernel at all.
struct SmallGeom {
  int64_t H, W, K, D, E, p, HW, HWr, ov;
  int64_t kph, kpw;  // kernel buffer padded by H-1 rows / W-1 columns on each side (+8 slack)
  SmallGeom(int64_t h, int64_t w, int64_t k, int64_t d) : H(h), W(w), K(k), D(d), E(d * (k - 1) + 1), p(d * (k / 2)) {
    HW = H * W;
    HWr = round_up(HW, 8);
    ov = HWr / 8;
    kph = E + 2 * (H - 1);
    kpw = E + 2 * (W - 1) + 8;
  }
};

// Taps of a "same" conv that meet the map: sum over outputs of the in-map kernel taps.
double valid_taps(int64_t H, int64_t W, int64_t K, int64_t D) {
  const int64_t h = K / 2;
  auto line = [h, D](int64_t n) {
    int64_t s = 0;
    for (int64_t i = 0; i < n; ++i) {  // taps k in [-h, h] with 0 <= i + D*k < n
      const int64_t lo = std::max(-h, ceil_div(-i, D)), hi = std::min(h, (n - 1 - i) / D);
      s += std::max<int64_t>(0, hi - lo + 1);
    }
    return static_cast<double>(s);
  };
  return line(H) * line(W);
}

// Small-map path (AVX2/FMA only) when the map has at most 64 pixels and the dense matrix does at most 25% more
// multiply-adds than the taps that meet the map (measured: direct conv is faster otherwise).
bool use_small_map(int64_t H, int64_t W, int64_t K, int64_t D) {
  const int64_t HW = H * W;
  return cpu_has_avx2_fma() && HW <= 64 &&
         static_cast<double>(round_up(HW, 8) * HW) <= 1.25 * valid_taps(H, W, K, D);
}

// Aligned scratch: 32-byte alignment so the matrix rows load without cache-line splits.
class AlignedBuf {
 public:
  AlignedBuf() = default;
  AlignedBuf(const AlignedBuf&) = delete;
  AlignedBuf& operator=(const AlignedBuf&) = delete;
  ~AlignedBuf() { std::free(ptr_); }
  float* data(size_t n) {
    if (n > size_) {
      std::free(ptr_);
      size_ = (n + 7) / 8 * 8;
      ptr_ = static_cast<float*>(std::aligned_alloc(32, sizeof(float) * size_));
      if (!ptr_) throw std::bad_alloc();
    }
    return ptr_;
  }

 private:
  float* ptr_ = nullptr;
  size_t size_ = 0;
};

// Copies n floats in whole vectors: may read and write up to 7 floats past n (callers leave slack,
// and write slices in increasing order so an overrun is overwritten by the next slice). A memcpy
// call per 7-float slice costs more than the matrix product it feeds.
LK_AVX2 LK_INLINE void copy_overrun(const float* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
}

// mt[q][o] = weight linking input pixel q to output pixel o, rows of HWr floats. For the forward
// that is k[qh-oh+p][qw-ow+p] = rot180(k)[oh-qh+p][ow-qw+p]: for each (q, oh) a contiguous slice of
// a row of the rotated kernel, copied from a zero-padded copy so out-of-kernel taps read zeros.
// The input grad is the same with the kernel itself in place of its rotation (flip=true).
LK_AVX2 void build_small_matrix(const SmallGeom& g, const float* w, bool flip, float* kp, float* mt) {
  const int64_t K = g.K, D = g.D, H = g.H, W = g.W;
  std::fill(kp, kp + g.kph * g.kpw, 0.f);
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) {
      kp[(D * i + H - 1) * g.kpw + (D * j + W - 1)] = flip ? w[i * K + j] : w[(K - 1 - i) * K + (K - 1 - j)];
    }
  }
  for (int64_t qh = 0; qh < H; ++qh) {
    for (int64_t qw = 0; qw < W; ++qw) {
      float* row = mt + (qh * W + qw) * g.HWr;
      for (int64_t oh = 0; oh < H; ++oh) {
        const float* src = kp + (oh - qh + g.p + H - 1) * g.kpw + (g.p - qw + W - 1);
        copy_overrun(src, row + oh * W, W);
      }
      std::fill(row + g.HW, row + g.HWr, 0.f);
    }
  }
}

// y[n0+b][o0 .. o0+8*OB) for NB images: OB aligned matrix loads and NB broadcasts per input pixel.
template <int OB, int NB>
LK_AVX2 void small_fwd_block(const SmallGeom& g, const float* mt, const float* xt, int64_t N,
                             int64_t o0, int64_t n0, float bias, float* out, int64_t img_stride) {
  __m256 acc[NB][OB];
  LK_UNROLL
  for (int b = 0; b < NB; ++b)
    LK_UNROLL
    for (int r = 0; r < OB; ++r) acc[b][r] = _mm256_set1_ps(bias);
  for (int64_t q = 0; q < g.HW; ++q) {
    const float* m = mt + q * g.HWr + o0;
    const float* xq = xt + q * N + n0;
    __m256 xb[NB];
    LK_UNROLL
    for (int b = 0; b < NB; ++b) xb[b] = _mm256_broadcast_ss(xq + b);
    LK_UNROLL
    for (int r = 0; r < OB; ++r) {
      const __m256 mv = _mm256_load_ps(m + 8 * r);
      LK_UNROLL
      for (int b = 0; b < NB; ++b) acc[b][r] = _mm256_fmadd_ps(xb[b], mv, acc[b][r]);
    }
  }
  LK_UNROLL
  for (int b = 0; b < NB; ++b)
    LK_UNROLL
    for (int r = 0; r < OB; ++r) {
      const int64_t o = o0 + 8 * r;
      store_lanes(out + (n0 + b) * img_stride + o, acc[b][r], g.HW - o);
    }
}

// Images per block for a block of OB output vectors: OB*NB <= 12 accumulators, NB + OB*NB + 1 <= 16
// registers.
constexpr int small_nb(int OB) { return OB <= 2 ? 4 : 3; }

using SmallFwdFn = void (*)(const SmallGeom&, const float*, const float*, int64_t, int64_t, int64_t,
                            float, float*, int64_t);
template <int OB, size_t... B>
SmallFwdFn small_fwd_pick_nb(int64_t nb, std::index_sequence<B...>) {
  SmallFwdFn fn = nullptr;
  ((nb == static_cast<int64_t>(B) + 1 ? (fn = small_fwd_block<OB, static_cast<int>(B) + 1>, 0) : 0), ...);
  return fn;
}
SmallFwdFn small_fwd_pick(int64_t ob, int64_t nb) {
  switch (ob) {
    case 1: return small_fwd_pick_nb<1>(nb, std::make_index_sequence<small_nb(1)>{});
    case 2: return small_fwd_pick_nb<2>(nb, std::make_index_sequence<small_nb(2)>{});
    case 3: return small_fwd_pick_nb<3>(nb, std::make_index_sequence<small_nb(3)>{});
    default: return small_fwd_pick_nb<4>(nb, std::make_index_sequence<small_nb(4)>{});
  }
}

// Splits n items into blocks of at most `most`, as even as possible (7 -> 4+3, not 4+... +1).
template <class F>
void even_blocks(int64_t n, int64_t most, F&& fn) {
  const int64_t blocks = (n + most - 1) / most;
  int64_t start = 0;
  for (int64_t i = 0; i < blocks; ++i) {
    const int64_t size = n / blocks + (i < n % blocks ? 1 : 0);
    fn(start, size);
    start += size;
  }
}

// Forward (flip=false, optional bias) and input grad (flip=true) of whole channels, small maps.
void conv_small_channels(const float* in, const float* w, const float* b, float* out, int64_t N,
                         int64_t C, int64_t H, int64_t W, int64_t K, int64_t D, bool flip) {
  const SmallGeom g(H, W, K, D);
  const int nt = pick_threads(C, 2.0 * N * C * g.HW * g.HWr);
#pragma omp parallel num_threads(nt)
  {
    AlignedBuf mbuf, kbuf, xbuf;
    float* mt = mbuf.data(static_cast<size_t>(g.HW * g.HWr + 8));  // +8: copy_overrun slack
    float* kp = kbuf.data(static_cast<size_t>(g.kph * g.kpw));
    float* xt = xbuf.data(static_cast<size_t>(g.HW * N));
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < C; ++c) {
      build_small_matrix(g, w + c * K * K, flip, kp, mt);
      for (int64_t n = 0; n < N; ++n) {  // xt[q][n]: the N images of this channel, pixel-major
        const float* src = in + (n * C + c) * g.HW;
        for (int64_t q = 0; q < g.HW; ++q) xt[q * N + n] = src[q];
      }
      const float bias = b ? b[c] : 0.f;
      even_blocks(g.ov, 4, [&](int64_t v0, int64_t ob) {
        const int64_t nb_max = ob <= 2 ? 4 : 3;
        for (int64_t n0 = 0; n0 < N; n0 += nb_max) {
          const int64_t nb = std::min(nb_max, N - n0);
          small_fwd_pick(ob, nb)(g, mt, xt, N, 8 * v0, n0, bias, out + c * g.HW, C * g.HW);
        }
      });
    }
  }
}

// G[o][q-vector] = sum_n dy[n][o] * x[n][q-vector] for 4 output pixels x 3 vectors of input pixels.
template <int OA, int QV>
LK_AVX2 void small_gram_block(const float* dys, const float* xs, int64_t N, int64_t HWr, int64_t o0,
                              int64_t q0, float* gm) {
  __m256 acc[OA][QV];
  LK_UNROLL
  for (int a = 0; a < OA; ++a)
    LK_UNROLL
    for (int v = 0; v < QV; ++v) acc[a][v] = _mm256_setzero_ps();
  for (int64_t n = 0; n < N; ++n) {
    const float* dn = dys + n * HWr + o0;
    const float* xn = xs + n * HWr + q0;
    __m256 xv[QV];
    LK_UNROLL
    for (int v = 0; v < QV; ++v) xv[v] = _mm256_load_ps(xn + 8 * v);
    LK_UNROLL
    for (int a = 0; a < OA; ++a) {
      const __m256 d = _mm256_broadcast_ss(dn + a);
      LK_UNROLL
      for (int v = 0; v < QV; ++v) acc[a][v] = _mm256_fmadd_ps(d, xv[v], acc[a][v]);
    }
  }
  LK_UNROLL
  for (int a = 0; a < OA; ++a)
    LK_UNROLL
    for (int v = 0; v < QV; ++v) _mm256_store_ps(gm + (o0 + a) * HWr + q0 + 8 * v, acc[a][v]);
}

using SmallGramFn = void (*)(const float*, const float*, int64_t, int64_t, int64_t, int64_t, float*);
template <size_t... V>
SmallGramFn small_gram_pick(int64_t qv, std::index_sequence<V...>) {
  SmallGramFn fn = nullptr;
  ((qv == static_cast<int64_t>(V) + 1 ? (fn = small_gram_block<4, static_cast<int>(V) + 1>, 0) : 0), ...);
  return fn;
}

// Weight grad (and bias grad) of whole channels, small maps: G over the batch, then each G row
// segment G[(oh,ow)][(qh, 0..W)] adds to kernel row qh-oh+p, columns qw-ow+p.
LK_AVX2 void wgrad_small_channels(const float* x, const float* dy, float* dw, float* db, int64_t N,
                                  int64_t C, int64_t H, int64_t W, int64_t K, int64_t D) {
  const SmallGeom g(H, W, K, D);
  const int64_t E = g.E;
  const int64_t HWo = round_up(g.HW, 4);  // output pixels, in blocks of 4
  const int64_t dwld = E + 2 * (W - 1) + 8;
  const int nt = pick_threads(C, 2.0 * N * C * g.HW * g.HWr);
#pragma omp parallel num_threads(nt)
  {
    AlignedBuf xbuf, dbuf, gbuf;
    std::vector<float> dwp(static_cast<size_t>(E * dwld));  // gradient of the stuffed E x E kernel
    float* xs = xbuf.data(static_cast<size_t>(N * g.HWr));
    float* dys = dbuf.data(static_cast<size_t>(N * g.HWr + 8));
    float* gm = gbuf.data(static_cast<size_t>(HWo * g.HWr));
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < C; ++c) {
      double bsum = 0.0;
      for (int64_t n = 0; n < N; ++n) {  // zero-padded copies: pixel HW..HWr of each image is 0
        const float* xsrc = x + (n * C + c) * g.HW;
        const float* dsrc = dy + (n * C + c) * g.HW;
        std::memcpy(xs + n * g.HWr, xsrc, sizeof(float) * g.HW);
        std::memcpy(dys + n * g.HWr, dsrc, sizeof(float) * g.HW);
        std::fill(xs + n * g.HWr + g.HW, xs + (n + 1) * g.HWr, 0.f);
        std::fill(dys + n * g.HWr + g.HW, dys + (n + 1) * g.HWr, 0.f);
        if (db) {
          for (int64_t i = 0; i < g.HW; ++i) bsum += dsrc[i];
        }
      }
      for (int64_t o0 = 0; o0 < HWo; o0 += 4) {
        even_blocks(g.ov, 3, [&](int64_t v0, int64_t qv) {
          small_gram_pick(qv, std::make_index_sequence<3>{})(dys, xs, N, g.HWr, o0, 8 * v0, gm);
        });
      }
      std::fill(dwp.begin(), dwp.end(), 0.f);
      // ow outermost: consecutive updates then hit different kernel rows (the same row at the
      // next ow overlaps the previous store one float off, which stalls store forwarding).
      for (int64_t ow = 0; ow < W; ++ow) {
        for (int64_t oh = 0; oh < H; ++oh) {
          for (int64_t qh = 0; qh < H; ++qh) {
            const int64_t i = qh - oh + g.p;
            if (i < 0 || i >= E || i % D != 0) continue;  // rows between dilated taps are not weights
            const float* src = gm + (oh * W + ow) * g.HWr + qh * W;
            float* dst = dwp.data() + i * dwld + (g.p - ow + W - 1);
            for (int64_t q = 0; q < W; q += 8) {
              const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(W - q)), lane);
              const __m256 v = _mm256_maskload_ps(src + q, mask);
              _mm256_storeu_ps(dst + q, _mm256_add_ps(_mm256_loadu_ps(dst + q), v));
            }
          }
        }
      }
      for (int64_t i = 0; i < K; ++i) {
        const float* src = dwp.data() + D * i * dwld + W - 1;
        for (int64_t j = 0; j < K; ++j) dw[(c * K + i) * K + j] = src[D * j];
      }
      if (db) db[c] = static_cast<float>(bsum);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Flat path (forward / input grad, small kernels on narrow maps): the plane is zero-padded with row
// stride Wp = W + 2P and treated as one long row, so 8 consecutive outputs of a vector may span the
// end of one map row and the start of the next (the 2P padding columns between rows are computed and
// dropped). Every tap (i, j) is then one contiguous load at offset D*(i*Wp + j): no per-row tails,
// no transposes, lanes busy W/Wp of the time (7/9 for a 3x3 kernel on a 7-wide map, where the
// plane path fills 7 of 8 lanes but pays its per-row and per-block set-up for a handful of taps).
// ---------------------------------------------------------------------------------------------
struct FlatGeom {
  int64_t H, W, K, D, P, Wp, lanes, nv, len;
  FlatGeom(int64_t h, int64_t w, int64_t k, int64_t d, int64_t vl)
      : H(h), W(w), K(k), D(d), P(d * (k / 2)), lanes(vl) {
    Wp = W + 2 * P;
    nv = (H * Wp + lanes - 1) / lanes;             // output vectors over rows [0, H) of the flat plane
    len = nv * lanes + 2 * P * Wp + 2 * P + lanes;  // padded input read by the last vector's last tap
  }
};

// R output vectors from v0; KT > 0 fixes the kernel size at compile time (fully unrolled taps).
template <int R, int KT>
LK_AVX2 LK_INLINE void flat_block(const FlatGeom& g, const float* xb, const float* wk, float bias, float* ob,
                                  int64_t v0) {
  __m256 acc[R];
  LK_UNROLL
  for (int r = 0; r < R; ++r) acc[r] = _mm256_set1_ps(bias);
  const int64_t K = KT > 0 ? KT : g.K, D = g.D;
  LK_UNROLL
  for (int64_t i = 0; i < K; ++i) {
    const float* row = xb + v0 * 8 + D * i * g.Wp;
    LK_UNROLL
    for (int64_t j = 0; j < K; ++j) {
      const __m256 wb = _mm256_broadcast_ss(wk + i * K + j);
      const float* in = row + D * j;
      LK_UNROLL
      for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(wb, _mm256_loadu_ps(in + 8 * r), acc[r]);
    }
  }
  LK_UNROLL
  for (int r = 0; r < R; ++r) _mm256_storeu_ps(ob + (v0 + r) * 8, acc[r]);
}

template <int KT>
LK_AVX2 void flat_plane(const FlatGeom& g, const float* xb, const float* wk, float bias, float* ob) {
  int64_t v = 0;
  for (; v + 4 <= g.nv; v += 4) flat_block<4, KT>(g, xb, wk, bias, ob, v);
  switch (g.nv - v) {
    case 3: flat_block<3, KT>(g, xb, wk, bias, ob, v); break;
    case 2: flat_block<2, KT>(g, xb, wk, bias, ob, v); break;
    case 1: flat_block<1, KT>(g, xb, wk, bias, ob, v); break;
    default: break;
  }
}

// The same with 16-float AVX-512 vectors, on CPUs that have them: twice the work per FMA (oneDNN, and
// so torch and Paddle Inference, use AVX-512 there too).
template <int R, int KT>
LK_AVX512 LK_INLINE void flat_block512(const FlatGeom& g, const float* xb, const float* wk, float bias,
                                       float* ob, int64_t v0) {
  __m512 acc[R];
  LK_UNROLL
  for (int r = 0; r < R; ++r) acc[r] = _mm512_set1_ps(bias);
  const int64_t K = KT > 0 ? KT : g.K, D = g.D;
  LK_UNROLL
  for (int64_t i = 0; i < K; ++i) {
    const float* row = xb + v0 * 16 + D * i * g.Wp;
    LK_UNROLL
    for (int64_t j = 0; j < K; ++j) {
      const __m512 wb = _mm512_set1_ps(wk[i * K + j]);
      const float* in = row + D * j;
      LK_UNROLL
      for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(wb, _mm512_loadu_ps(in + 16 * r), acc[r]);
    }
  }
  LK_UNROLL
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(ob + (v0 + r) * 16, acc[r]);
}

template <int KT>
LK_AVX512 void flat_plane512(const FlatGeom& g, const float* xb, const float* wk, float bias, float* ob) {
  int64_t v = 0;
  for (; v + 4 <= g.nv; v += 4) flat_block512<4, KT>(g, xb, wk, bias, ob, v);
  switch (g.nv - v) {
    case 3: flat_block512<3, KT>(g, xb, wk, bias, ob, v); break;
    case 2: flat_block512<2, KT>(g, xb, wk, bias, ob, v); break;
    case 1: flat_block512<1, KT>(g, xb, wk, bias, ob, v); break;
    default: break;
  }
}

using FlatFn = void (*)(const FlatGeom&, const float*, const float*, float, float*);
FlatFn flat_pick(int64_t K, bool avx512) {
  switch (K) {
    case 3: return avx512 ? flat_plane512<3> : flat_plane<3>;
    case 5: return avx512 ? flat_plane512<5> : flat_plane<5>;
    default: return avx512 ? flat_plane512<0> : flat_plane<0>;
  }
}

// AVX-512F on top of AVX2/FMA, unless PADDLE_LK_OP_NO_AVX512=1 (tests run both widths on such CPUs).
bool cpu_has_avx512() {
#if defined(__GNUC__) || defined(__clang__)
  static const bool hw = __builtin_cpu_supports("avx512f");
  const char* off = std::getenv("PADDLE_LK_OP_NO_AVX512");
  return hw && cpu_has_avx2_fma() && !(off && off[0] == '1');
#else
  return false;
#endif
}

void conv_flat_planes(const float* in, const float* w, const float* b, float* out, int64_t N, int64_t C,
                      int64_t H, int64_t W, int64_t K, int64_t D, bool flip) {
  const bool avx512 = cpu_has_avx512();
  const FlatGeom g(H, W, K, D, avx512 ? 16 : 8);
  const FlatFn fn = flat_pick(K, avx512);
  const int64_t planes = N * C, HW = H * W;
  const int nt = pick_threads(planes, 2.0 * planes * HW * K * K);
  const int64_t chunk = channel_chunk(N, C, nt);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> xb(static_cast<size_t>(g.len), 0.f), ob(static_cast<size_t>(g.nv * g.lanes)),
        wk(static_cast<size_t>(K * K));
    int64_t prepared = -1;
#pragma omp for schedule(dynamic, chunk)
    for (int64_t item = 0; item < planes; ++item) {
      const int64_t c = item / N, pl = (item % N) * C + c;
      if (c != prepared) {
        for (int64_t t = 0; t < K * K; ++t) wk[t] = w[c * K * K + (flip ? K * K - 1 - t : t)];
        prepared = c;
      }
      pad_plane(in + pl * HW, H, W, xb.data(), g.Wp, g.P, g.P, true);
      fn(g, xb.data(), wk.data(), b ? b[c] : 0.f, ob.data());
      copy_rows_avx2(out + pl * HW, W, ob.data(), g.Wp, H, W);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Channel-packed path (small kernels, small maps, dilation): 8 channels of one image are interleaved
// into a zero-padded [Hp][Wp][8] buffer, so one vector holds one pixel of 8 channels and every tap is
// a full-width FMA with a per-channel weight vector, whatever the map width. The plane-wise path
// vectorizes along W instead, which leaves lanes idle and pays per-plane overhead on 7- and 14-wide
// maps, and a 3x3 kernel gives it too few taps per load. The packing is an 8x8 AVX2 transpose per
// 8 pixels of a row, each way.
// ---------------------------------------------------------------------------------------------
LK_AVX2 LK_INLINE void transpose8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

LK_AVX2 LK_INLINE __m256i lane_mask(int64_t left) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(left, 8))),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// dst[(h+P)*Wp + w+P][l] = src plane l (of nch, the rest zero), row h, column w. `src` points at the
// first plane; planes are `pstride` floats apart.
LK_AVX2 void pack8(const float* src, int64_t pstride, int nch, int64_t H, int64_t W, float* dst,
                   int64_t Wp, int64_t P) {
  for (int64_t h = 0; h < H; ++h) {
    float* drow = dst + ((h + P) * Wp + P) * 8;
    for (int64_t w0 = 0; w0 < W; w0 += 8) {
      const int64_t left = W - w0;
      const __m256i m = lane_mask(left);
      __m256 r[8];
      LK_UNROLL
      for (int l = 0; l < 8; ++l) {
        r[l] = l < nch ? _mm256_maskload_ps(src + l * pstride + h * W + w0, m) : _mm256_setzero_ps();
      }
      transpose8(r);
      const int64_t n = std::min<int64_t>(left, 8);
      for (int64_t k = 0; k < n; ++k) _mm256_store_ps(drow + (w0 + k) * 8, r[k]);
    }
  }
}

// Inverse of pack8 without padding: plane l row h column w = src[h*Ws + w][l], for l < nch.
LK_AVX2 void unpack8(const float* src, int64_t Ws, int nch, int64_t H, int64_t W, float* dst,
                     int64_t pstride) {
  for (int64_t h = 0; h < H; ++h) {
    const float* srow = src + h * Ws * 8;
    for (int64_t w0 = 0; w0 < W; w0 += 8) {
      const int64_t left = W - w0;
      const __m256i m = lane_mask(left);
      __m256 r[8];
      LK_UNROLL
      for (int k = 0; k < 8; ++k) r[k] = k < left ? _mm256_load_ps(srow + (w0 + k) * 8) : _mm256_setzero_ps();
      transpose8(r);
      for (int l = 0; l < nch; ++l) _mm256_maskstore_ps(dst + l * pstride + h * W + w0, m, r[l]);
    }
  }
}

struct PackGeom {
  int64_t H, W, K, D, P;
  int64_t B, Wo;   // outputs per register block along W, and the output width rounded to blocks
  int64_t Hp, Wp;  // padded packed input extent (pixels)
  PackGeom(int64_t h, int64_t w, int64_t k, int64_t d) : H(h), W(w), K(k), D(d), P(d * (k / 2)) {
    const int64_t blocks = (W + 7) / 8;
    B = (W + blocks - 1) / blocks;  // e.g. 7 -> one block of 7, 14 -> two of 7, 56 -> seven of 8
    Wo = blocks * B;
    Hp = H + 2 * P;
    Wp = Wo + 2 * P;
  }
};

// One image, one group of 8 channels: out[h][w] = bias + sum_ij wv[i][j] * xp[h+D*i][w+D*j] (vectors).
template <int B>
LK_AVX2 void packed_conv(const PackGeom& g, const float* xp, const float* wv, __m256 bias, float* out) {
  const int64_t K = g.K, D = g.D, Wp = g.Wp;
  for (int64_t h = 0; h < g.H; ++h) {
    for (int64_t w0 = 0; w0 < g.Wo; w0 += B) {
      __m256 acc[B];
      LK_UNROLL
      for (int b = 0; b < B; ++b) acc[b] = bias;
      for (int64_t i = 0; i < K; ++i) {
        const float* row = xp + ((h + D * i) * Wp + w0) * 8;
        const float* wr = wv + i * K * 8;
        for (int64_t j = 0; j < K; ++j) {
          const __m256 wj = _mm256_load_ps(wr + j * 8);
          const float* in = row + D * j * 8;
          LK_UNROLL
          for (int b = 0; b < B; ++b) acc[b] = _mm256_fmadd_ps(wj, _mm256_load_ps(in + b * 8), acc[b]);
        }
      }
      float* o = out + (h * g.Wo + w0) * 8;
      LK_UNROLL
      for (int b = 0; b < B; ++b) _mm256_store_ps(o + b * 8, acc[b]);
    }
  }
}

using PackedConvFn = void (*)(const PackGeom&, const float*, const float*, __m256, float*);
template <size_t... B>
PackedConvFn packed_conv_pick(int64_t b, std::index_sequence<B...>) {
  PackedConvFn fn = nullptr;
  ((b == static_cast<int64_t>(B) + 1 ? (fn = packed_conv<static_cast<int>(B) + 1>, 0) : 0), ...);
  return fn;
}

// Forward (flip=false, optional bias) and input grad (flip=true) on the channel-packed path.
LK_AVX2 void conv_packed(const float* in, const float* w, const float* b, float* out, int64_t N,
                         int64_t C, int64_t H, int64_t W, int64_t K, int64_t D, bool flip) {
  const PackGeom g(H, W, K, D);
  const int64_t G = (C + 7) / 8, HW = H * W;
  const PackedConvFn fn = packed_conv_pick(g.B, std::make_index_sequence<8>{});
  const int64_t items = G * N;
  const int nt = pick_threads(items, 2.0 * N * C * HW * K * K);
  const int64_t chunk = channel_chunk(N, G, nt);
#pragma omp parallel num_threads(nt)
  {
    AlignedBuf xbuf, obuf, wbuf;
    float* xp = xbuf.data(static_cast<size_t>(g.Hp * g.Wp * 8));
    float* op = obuf.data(static_cast<size_t>(H * g.Wo * 8));
    float* wv = wbuf.data(static_cast<size_t>(K * K * 8));
    std::fill(xp, xp + g.Hp * g.Wp * 8, 0.f);  // the border stays zero: pack8 writes the interior
    int64_t prepared = -1;
    // Items group-major (all images of a group in a row), handed out a group at a time when there are
    // enough groups, so a thread prepares a group's weights once.
#pragma omp for schedule(dynamic, chunk)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t grp = item / N, n = item % N, c0 = grp * 8;
      const int nch = static_cast<int>(std::min<int64_t>(8, C - c0));
      if (grp != prepared) {
        for (int64_t t = 0; t < K * K; ++t) {
          for (int l = 0; l < 8; ++l) {
            wv[t * 8 + l] = l < nch ? w[(c0 + l) * K * K + (flip ? K * K - 1 - t : t)] : 0.f;
          }
        }
        prepared = grp;
      }
      alignas(32) float bias[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      if (b) {
        for (int l = 0; l < nch; ++l) bias[l] = b[c0 + l];
      }
      pack8(in + (n * C + c0) * HW, HW, nch, H, W, xp, g.Wp, g.P);
      fn(g, xp, wv, _mm256_load_ps(bias), op);
      unpack8(op, g.Wo, nch, H, W, out + (n * C + c0) * HW, HW);
    }
  }
}

// Weight-grad block: acc[jb] += dy[h][w] * xp[h+D*i][w+D*(j0+jb)] over the whole map, JB kernel columns.
template <int JB>
LK_AVX2 void packed_wgrad_row(const PackGeom& g, const float* xp, const float* dyp, int64_t i, int64_t j0,
                              float* wacc) {
  const int64_t D = g.D, Wp = g.Wp, W = g.W;
  __m256 acc[JB];
  LK_UNROLL
  for (int jb = 0; jb < JB; ++jb) acc[jb] = _mm256_setzero_ps();
  for (int64_t h = 0; h < g.H; ++h) {
    const float* xrow = xp + ((h + D * i) * Wp + D * j0) * 8;
    const float* drow = dyp + h * W * 8;
    for (int64_t w = 0; w < W; ++w) {
      const __m256 d = _mm256_load_ps(drow + w * 8);
      LK_UNROLL
      for (int jb = 0; jb < JB; ++jb) {
        acc[jb] = _mm256_fmadd_ps(d, _mm256_load_ps(xrow + (w + D * jb) * 8), acc[jb]);
      }
    }
  }
  LK_UNROLL
  for (int jb = 0; jb < JB; ++jb) {
    float* dst = wacc + (i * g.K + j0 + jb) * 8;
    _mm256_store_ps(dst, _mm256_add_ps(_mm256_load_ps(dst), acc[jb]));
  }
}

using PackedWgradFn = void (*)(const PackGeom&, const float*, const float*, int64_t, int64_t, float*);
template <size_t... J>
PackedWgradFn packed_wgrad_pick(int64_t jb, std::index_sequence<J...>) {
  PackedWgradFn fn = nullptr;
  ((jb == static_cast<int64_t>(J) + 1 ? (fn = packed_wgrad_row<static_cast<int>(J) + 1>, 0) : 0), ...);
  return fn;
}

LK_AVX2 void wgrad_packed(const float* x, const float* dy, float* dw, float* db, int64_t N, int64_t C,
                          int64_t H, int64_t W, int64_t K, int64_t D) {
  const PackGeom g(H, W, K, D);
  const int64_t G = (C + 7) / 8, HW = H * W;
  const int nt = pick_threads(G, 2.0 * N * C * HW * K * K);
#pragma omp parallel num_threads(nt)
  {
    AlignedBuf xbuf, dbuf, abuf;
    float* xp = xbuf.data(static_cast<size_t>(g.Hp * g.Wp * 8));
    float* dyp = dbuf.data(static_cast<size_t>(HW * 8));
    float* wacc = abuf.data(static_cast<size_t>(K * K * 8));
    std::fill(xp, xp + g.Hp * g.Wp * 8, 0.f);
#pragma omp for schedule(dynamic, 1)
    for (int64_t grp = 0; grp < G; ++grp) {
      const int64_t c0 = grp * 8;
      const int nch = static_cast<int>(std::min<int64_t>(8, C - c0));
      std::fill(wacc, wacc + K * K * 8, 0.f);
      __m256 bsum = _mm256_setzero_ps();
      for (int64_t n = 0; n < N; ++n) {
        pack8(x + (n * C + c0) * HW, HW, nch, H, W, xp, g.Wp, g.P);
        pack8(dy + (n * C + c0) * HW, HW, nch, H, W, dyp, W, 0);
        for (int64_t i = 0; i < K; ++i) {
          for (int64_t j0 = 0; j0 < K; j0 += 8) {
            const int64_t jb = std::min<int64_t>(8, K - j0);
            packed_wgrad_pick(jb, std::make_index_sequence<8>{})(g, xp, dyp, i, j0, wacc);
          }
        }
        if (db) {
          for (int64_t q = 0; q < HW; ++q) bsum = _mm256_add_ps(bsum, _mm256_load_ps(dyp + q * 8));
        }
      }
      for (int l = 0; l < nch; ++l) {
        for (int64_t t = 0; t < K * K; ++t) dw[(c0 + l) * K * K + t] = wacc[t * 8 + l];
      }
      if (db) {
        alignas(32) float s[8];
        _mm256_store_ps(s, bsum);
        for (int l = 0; l < nch; ++l) db[c0 + l] = s[l];
      }
    }
  }
}

// Channel-packed weight grad: AVX2, at least 8 channels, and a kernel small enough that the taps it
// would skip at the border do not matter (it computes every tap, the plane path skips the border);
// measured faster than the plane path for k <= 7 on every map size of the models.
// PADDLE_LK_OP_PACKED=0/1 forces it off/on (tests, benchmarks).
bool use_packed(int64_t C, int64_t K) {
  if (!cpu_has_avx2_fma() || C < 8) return false;
  const char* env = std::getenv("PADDLE_LK_OP_PACKED");
  if (env && (env[0] == '0' || env[0] == '1')) return env[0] == '1';
  return K <= 7;
}

// Forward / input-grad path for small kernels, from single-thread timings of the models' shapes (7-,
// 14-, 28- and 56-wide maps, k 3..7, dilations 1..5): channel-packed on 7-wide maps except a plain
// 3x3 (the transposes then cost more than the 9 taps), flat for 3x3 up to 64 wide and undilated 5x5 up
// to 32 wide, else the plane path (whose border skipping wins for wide padding). PADDLE_LK_OP_FLAT=1
// or PADDLE_LK_OP_PACKED=1 forces that path (tests), =0 rules it out.
enum class SmallPath { kNone, kFlat, kPacked };

SmallPath small_kernel_path(int64_t C, int64_t W, int64_t K, int64_t D) {
  if (!cpu_has_avx2_fma()) return SmallPath::kNone;
  const char* flat = std::getenv("PADDLE_LK_OP_FLAT");
  const char* packed = std::getenv("PADDLE_LK_OP_PACKED");
  if (packed && packed[0] == '1' && C >= 8) return SmallPath::kPacked;
  if (flat && flat[0] == '1') return SmallPath::kFlat;
  const bool no_flat = flat && flat[0] == '0', no_packed = packed && packed[0] == '0';
  if (!no_packed && C >= 8 && W <= 8 && K <= 7 && (K > 3 || D > 1)) return SmallPath::kPacked;
  if (!no_flat && ((K == 3 && W <= 64) || (K == 5 && D == 1 && W <= 32))) return SmallPath::kFlat;
  return SmallPath::kNone;
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
                          int64_t C, int64_t H, int64_t W, int64_t K, int64_t D) {
  switch (small_kernel_path(C, W, K, D)) {
    case SmallPath::kFlat: conv_flat_planes(x, w, b, y, N, C, H, W, K, D, /*flip=*/false); return;
    case SmallPath::kPacked: conv_packed(x, w, b, y, N, C, H, W, K, D, /*flip=*/false); return;
    default: break;
  }
  if (use_small_map(H, W, K, D)) {
    conv_small_channels(x, w, b, y, N, C, H, W, K, D, /*flip=*/false);
    return;
  }
  conv_same_planes(x, w, b, y, N, C, H, W, K, D, /*flip=*/false);
}

void dwconv2d_input_grad_cpu(const float* dy, const float* w, float* dx, int64_t N, int64_t C,
                             int64_t H, int64_t W, int64_t K, int64_t D) {
  switch (small_kernel_path(C, W, K, D)) {
    case SmallPath::kFlat: conv_flat_planes(dy, w, nullptr, dx, N, C, H, W, K, D, /*flip=*/true); return;
    case SmallPath::kPacked: conv_packed(dy, w, nullptr, dx, N, C, H, W, K, D, /*flip=*/true); return;
    default: break;
  }
  if (use_small_map(H, W, K, D)) {
    conv_small_channels(dy, w, nullptr, dx, N, C, H, W, K, D, /*flip=*/true);
    return;
  }
  conv_same_planes(dy, w, nullptr, dx, N, C, H, W, K, D, /*flip=*/true);
}

void dwconv2d_weight_grad_cpu(const float* x, const float* dy, float* dw, float* db, int64_t N,
                              int64_t C, int64_t H, int64_t W, int64_t K, int64_t D) {
  if (use_packed(C, K)) {
    wgrad_packed(x, dy, dw, db, N, C, H, W, K, D);
    return;
  }
  if (use_small_map(H, W, K, D)) {
    wgrad_small_channels(x, dy, dw, db, N, C, H, W, K, D);
    return;
  }
  const WgtGeom g(H, W, K, D);
  const bool avx2 = cpu_has_avx2_fma();
  const WgtFn fn = pick_wgt_fn(g.J, avx2);
  const int nt = pick_threads(C, 2.0 * N * C * H * W * K * K);
#pragma omp parallel num_threads(nt)
  {
    std::vector<float> xq(static_cast<size_t>(g.Hq * D * g.L), 0.f);
    std::vector<float> dyp(static_cast<size_t>(g.Hd * g.W), 0.f);
    std::vector<float> acc(static_cast<size_t>(g.Kr * 8 * g.J), 0.f);
#pragma omp for schedule(dynamic, 1)
    for (int64_t c = 0; c < C; ++c) {
      std::fill(acc.begin(), acc.end(), 0.f);
      double bsum = 0.0;
      for (int64_t n = 0; n < N; ++n) {
        const int64_t off = (n * C + c) * H * W;
        pad_plane_phased(x + off, H, W, xq.data(), g.L, D, g.p, avx2);
        std::memcpy(dyp.data() + D * (g.BI - 1) * W, dy + off, sizeof(float) * H * W);
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
