// Framework-free check of the CPU kernels in paddle_lk/ops/csrc/lk_dwconv_cpu.cc against a
// double-precision direct convolution, over a grid of kernel sizes, map sizes and batch sizes that
// crosses every path boundary (border skipping, column-block splits, the small-map matrix path and
// its image-block tails, the weight-grad register blocks), then dilations 2..7 ("same" padding
// D*(K/2)), including maps smaller than the dilated kernel, then the channel-packed path's grid.
// Built and run by tests/test_cpu_kernels.py.
//
//   check_cpu_kernels            exit 0 when every case is within tolerance, 1 otherwise
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "lk_dwconv_cpu.h"

namespace {

struct Errors {
  double y = 0, dx = 0, dw = 0, db = 0;
};

Errors check_case(int N, int C, int H, int W, int K, int D, std::mt19937& rng) {
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  const int p = D * (K / 2);
  const size_t n = static_cast<size_t>(N) * C * H * W, nw = static_cast<size_t>(C) * K * K;
  std::vector<float> x(n), dy(n), w(nw), b(C), y(n), dx(n), dw(nw), db(C);
  for (auto* v : {&x, &dy, &w, &b}) {
    for (float& e : *v) e = U(rng);
  }
  lk::dwconv2d_forward_cpu(x.data(), w.data(), b.data(), y.data(), N, C, H, W, K, D);
  lk::dwconv2d_input_grad_cpu(dy.data(), w.data(), dx.data(), N, C, H, W, K, D);
  lk::dwconv2d_weight_grad_cpu(x.data(), dy.data(), dw.data(), db.data(), N, C, H, W, K, D);

  std::vector<double> ry(n), rdx(n, 0.0), rdw(nw, 0.0), rdb(C, 0.0);
  for (int in = 0; in < N; ++in) {
    for (int c = 0; c < C; ++c) {
      const size_t plane = (static_cast<size_t>(in) * C + c) * H * W;
      for (int h = 0; h < H; ++h) {
        for (int q = 0; q < W; ++q) {
          const size_t o = plane + static_cast<size_t>(h) * W + q;
          double acc = b[c];
          rdb[c] += dy[o];
          for (int i = 0; i < K; ++i) {
            const int hh = h + D * i - p;
            if (hh < 0 || hh >= H) continue;
            for (int j = 0; j < K; ++j) {
              const int qq = q + D * j - p;
              if (qq < 0 || qq >= W) continue;
              const size_t src = plane + static_cast<size_t>(hh) * W + qq;
              const double wt = w[(static_cast<size_t>(c) * K + i) * K + j];
              acc += wt * x[src];
              rdx[src] += wt * dy[o];
              rdw[(static_cast<size_t>(c) * K + i) * K + j] += static_cast<double>(dy[o]) * x[src];
            }
          }
          ry[o] = acc;
        }
      }
    }
  }
  // Errors relative to the size of the sums (taps x |values| ~ K), so large kernels get no slack.
  Errors e;
  const double scale = std::max(1.0, static_cast<double>(K));
  for (size_t i = 0; i < n; ++i) {
    e.y = std::max(e.y, std::fabs(ry[i] - y[i]) / scale);
    e.dx = std::max(e.dx, std::fabs(rdx[i] - dx[i]) / scale);
  }
  const double wscale = std::max(1.0, std::sqrt(static_cast<double>(N) * H * W));
  for (size_t i = 0; i < nw; ++i) e.dw = std::max(e.dw, std::fabs(rdw[i] - dw[i]) / wscale);
  for (int c = 0; c < C; ++c) e.db = std::max(e.db, std::fabs(rdb[c] - db[c]) / wscale);
  return e;
}

int report(const Errors& e, int N, int C, int H, int W, int K, int D) {
  constexpr double kTol = 1e-5;
  if (e.y > kTol || e.dx > kTol || e.dw > kTol || e.db > kTol) {
    std::printf("MISMATCH N=%d C=%d H=%d W=%d K=%d D=%d: y %.3g dx %.3g dw %.3g db %.3g\n", N, C, H, W,
                K, D, e.y, e.dx, e.dw, e.db);
    return 1;
  }
  return 0;
}

}  // namespace

int main() {
  std::mt19937 rng(2024);
  int cases = 0, bad = 0;
  for (int K : {1, 3, 5, 7, 9, 13, 17, 27, 31, 63}) {
    for (int H : {1, 3, 5, 7, 8, 14, 17, 33}) {
      for (int W : {1, 3, 7, 8, 9, 16, 17, 25, 40, 56}) {
        for (int N : {1, 2, 5, 9}) {
          const bool small = H * W <= 64;
          if (!small && N != 2) continue;           // batch tails matter for the small-map path
          if (H * W * K > 40000 && N != 2) continue;  // keep the double reference quick
          const int C = (K + H + W) % 2 ? 3 : 2;
          bad += report(check_case(N, C, H, W, K, 1, rng), N, C, H, W, K, 1);
          ++cases;
        }
      }
    }
  }
  // Dilation: kernels 3..13 (VAN's 7x7 d3, UniRepLKNet's branches), maps below, around and above the
  // dilated extent D*(K-1)+1, odd/even, small-map sizes and direct-path sizes.
  for (int D : {2, 3, 4, 5, 7}) {
    for (int K : {3, 5, 7, 9, 13}) {
      for (int H : {1, 2, 5, 7, 8, 14, 19}) {
        for (int W : {1, 3, 7, 8, 9, 17, 28}) {
          const int N = (H * W <= 64) ? (K + D) % 3 + 1 : 2;  // batch tails of the small-map path
          const int C = (K + H + W + D) % 2 ? 3 : 2;
          if (H * W * K * K > 200000) continue;
          bad += report(check_case(N, C, H, W, K, D, rng), N, C, H, W, K, D);
          ++cases;
        }
      }
    }
  }
  // Channel-packed path (8 channels per vector): channel counts with and without a partial group of 8,
  // widths that split into register blocks of 1..8, dilations, kernels up to 9 (the harness is also
  // run with PADDLE_LK_OP_PACKED=1, which sends every case with C >= 8 there).
  for (int C : {8, 13, 16}) {
    for (int K : {1, 3, 5, 7, 9}) {
      for (int D : {1, 2, 3, 5}) {
        for (int H : {1, 4, 7, 14}) {
          for (int W : {1, 5, 7, 9, 14, 17, 28, 33}) {
            if ((C + K + D + H + W) % 3 != 0) continue;  // a third of the grid keeps it quick
            const int N = (H + W) % 2 ? 3 : 1;
            bad += report(check_case(N, C, H, W, K, D, rng), N, C, H, W, K, D);
            ++cases;
          }
        }
      }
    }
  }
  std::printf("%d cases, %d mismatches (%s path)\n", cases, bad,
              lk::cpu_has_avx2_fma() ? "AVX2/FMA" : "scalar");
  return bad ? 1 : 0;
}
