// Paddle binding of the large-kernel depthwise conv kernels: two custom operators,
//   lk_dwconv2d(X, W; dilation)            -> Out   (+ grad: X@GRAD, W@GRAD)
//   lk_dwconv2d_bias(X, W, Bias; dilation) -> Out   (+ grad: X@GRAD, W@GRAD, Bias@GRAD)
// Two ops instead of one with an optional input: an optional *gradient output* is not supported by
// every Paddle 3.x custom-op path (dygraph, static, PIR), two fixed signatures are.
// The kernels live in lk_dwconv_cpu.cc (float32) and lk_dwconv_cuda.cu (float32/float16/bfloat16);
// this file only validates, allocates and dispatches. PADDLE_WITH_CUDA is defined by
// paddle.utils.cpp_extension when the .cu file is compiled into the same extension.
#include <string>
#include <vector>

#include "paddle/extension.h"
#include "paddle/phi/backends/context_pool.h"
#include "paddle/phi/backends/cpu/cpu_context.h"
#include "paddle/phi/core/dense_tensor.h"
#include "paddle/phi/kernels/transfer_layout_kernel.h"

#include "lk_dwconv_cpu.h"
#ifdef PADDLE_WITH_CUDA
#include "lk_dwconv_cuda.h"
#endif

namespace {

constexpr int64_t kMaxKernel = 63;
constexpr int64_t kMaxDilation = 64;

struct Dims {
  int64_t N, C, H, W, K, D;
};

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// A CPU tensor produced by a oneDNN kernel (Paddle Inference with oneDNN on) carries
// DataLayout::ONEDNN: its memory is in a blocked format such as nChw16c, described by a oneDNN memory
// descriptor, not NCHW. Paddle inserts a conversion in front of its own non-oneDNN kernels but not in
// front of custom ops, so the op converts here: a oneDNN reorder to plain NCHW (one pass over the
// tensor; the neighbouring oneDNN kernels accept a plain NCHW input as it is).
paddle::Tensor plain_nchw(const paddle::Tensor& t, const char* name) {
  if (!t.defined() || t.layout() != phi::DataLayout::ONEDNN) return t;
  PD_CHECK(t.is_cpu() && t.is_dense_tensor(), "lk_dwconv2d: ", name,
           " is in oneDNN's layout but is not a dense CPU tensor");
  const auto& dense = *static_cast<const phi::DenseTensor*>(t.impl().get());
  auto* ctx = static_cast<phi::CPUContext*>(phi::DeviceContextPool::Instance().Get(t.place()));
  phi::DenseTensor out = phi::TransferLayout<phi::CPUContext>(*ctx, dense, phi::DataLayout::NCHW);
  PD_CHECK(out.layout() != phi::DataLayout::ONEDNN, "lk_dwconv2d: converting ", name,
           " from oneDNN's layout to NCHW failed");
  return paddle::Tensor(std::make_shared<phi::DenseTensor>(std::move(out)));
}

// Any layout other than plain row-major (NCHW-ordered dims) is refused rather than misread.
void check_layout(const paddle::Tensor& t, const char* name) {
  const auto layout = t.layout();
  PD_CHECK(layout != phi::DataLayout::ONEDNN && layout != phi::DataLayout::SPARSE_COO &&
               layout != phi::DataLayout::SPARSE_CSR,
           "lk_dwconv2d: ", name, " has memory layout ", common::DataLayoutToString(layout),
           ", which the op cannot read (it needs a dense NCHW tensor)");
}

// Validation mirrors paddle_lk.ops._check_call; repeated here so a direct call of the raw op
// also gets an error instead of an out-of-bounds read.
Dims check_call(const paddle::Tensor& x, const paddle::Tensor& w, const paddle::Tensor* b,
                int64_t dilation) {
  PD_CHECK(x.shape().size() == 4, "lk_dwconv2d: x must be 4-D NCHW, got shape ",
           shape_str(x.shape()));
  PD_CHECK(w.shape().size() == 4, "lk_dwconv2d: weight must be 4-D [C, 1, K, K], got shape ",
           shape_str(w.shape()));
  const Dims d{x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3], w.shape()[2], dilation};
  PD_CHECK(w.shape()[0] == d.C && w.shape()[1] == 1,
           "lk_dwconv2d: weight shape ", shape_str(w.shape()), " does not fit x with ", d.C,
           " channels (expected [", d.C, ", 1, K, K])");
  PD_CHECK(w.shape()[2] == w.shape()[3], "lk_dwconv2d: kernel must be square, got ",
           shape_str(w.shape()));
  PD_CHECK(d.K % 2 == 1 && d.K >= 1 && d.K <= kMaxKernel,
           "lk_dwconv2d: kernel size must be odd and in 1..", kMaxKernel, ", got ", d.K);
  PD_CHECK(d.D >= 1 && d.D <= kMaxDilation, "lk_dwconv2d: dilation must be in 1..", kMaxDilation,
           ", got ", d.D);
  PD_CHECK(x.dtype() == w.dtype(), "lk_dwconv2d: x and weight dtypes differ");
  PD_CHECK(x.place() == w.place(), "lk_dwconv2d: x and weight are on different devices");
  if (b) {
    PD_CHECK(b->shape().size() == 1 && b->shape()[0] == d.C, "lk_dwconv2d: bias must have shape [",
             d.C, "], got ", shape_str(b->shape()));
    PD_CHECK(b->dtype() == x.dtype(), "lk_dwconv2d: bias dtype differs from x");
    PD_CHECK(b->place() == x.place(), "lk_dwconv2d: bias and x are on different devices");
  }
  PD_CHECK(x.is_contiguous() && w.is_contiguous() && (!b || b->is_contiguous()),
           "lk_dwconv2d: tensors must be contiguous");
  check_layout(x, "x");
  check_layout(w, "weight");
  if (b) check_layout(*b, "bias");
  if (x.is_cpu()) {
    PD_CHECK(x.dtype() == paddle::DataType::FLOAT32, "lk_dwconv2d: CPU kernel supports float32 only, got ",
             phi::DataTypeToString(x.dtype()));
  } else {
    PD_CHECK(x.is_gpu(), "lk_dwconv2d: only CPU and CUDA tensors are supported");
    PD_CHECK(x.dtype() == paddle::DataType::FLOAT32 || x.dtype() == paddle::DataType::FLOAT16 ||
                 x.dtype() == paddle::DataType::BFLOAT16,
             "lk_dwconv2d: CUDA kernel supports float32, float16 and bfloat16 only");
  }
  return d;
}

#ifdef PADDLE_WITH_CUDA
int cuda_dtype(const paddle::Tensor& t) {
  switch (t.dtype()) {
    case paddle::DataType::FLOAT16: return LK_DTYPE_FLOAT16;
    case paddle::DataType::BFLOAT16: return LK_DTYPE_BFLOAT16;
    default: return LK_DTYPE_FLOAT32;
  }
}

void check_cuda(cudaError_t err, const char* what) {
  PD_CHECK(err == cudaSuccess, "lk_dwconv2d: CUDA ", what, " failed: ", cudaGetErrorString(err));
}
#endif

[[noreturn]] void no_cuda() {
  PD_THROW("lk_dwconv2d: this build of the op has no CUDA kernels (Paddle without CUDA at build time)");
}

paddle::Tensor forward_impl(const paddle::Tensor& x_in, const paddle::Tensor& w_in,
                            const paddle::Tensor* b_in, int64_t dilation) {
  const paddle::Tensor x = plain_nchw(x_in, "x"), w = plain_nchw(w_in, "weight");
  const paddle::Tensor b = b_in ? plain_nchw(*b_in, "bias") : paddle::Tensor();
  const paddle::Tensor* bp = b_in ? &b : nullptr;
  const Dims d = check_call(x, w, bp, dilation);
  auto y = paddle::empty(x.shape(), x.dtype(), x.place());
  if (x.is_cpu()) {
    lk::dwconv2d_forward_cpu(x.data<float>(), w.data<float>(), bp ? bp->data<float>() : nullptr,
                             y.data<float>(), d.N, d.C, d.H, d.W, d.K, d.D);
    return y;
  }
#ifdef PADDLE_WITH_CUDA
  check_cuda(lk_dwconv2d_forward_cuda(cuda_dtype(x), x.data(), w.data(), bp ? bp->data() : nullptr,
                                      y.data(), d.N, d.C, d.H, d.W, d.K, d.D, x.stream()),
             "forward");
  return y;
#else
  no_cuda();
#endif
}

std::vector<paddle::Tensor> backward_impl(const paddle::Tensor& x_in, const paddle::Tensor& w_in,
                                          const paddle::Tensor* b_in, const paddle::Tensor& dy_in,
                                          int64_t dilation) {
  const paddle::Tensor x = plain_nchw(x_in, "x"), w = plain_nchw(w_in, "weight");
  const paddle::Tensor b = b_in ? plain_nchw(*b_in, "bias") : paddle::Tensor();
  const paddle::Tensor* bp = b_in ? &b : nullptr;
  const paddle::Tensor dy = plain_nchw(dy_in, "output gradient");
  const Dims d = check_call(x, w, bp, dilation);
  PD_CHECK(dy.shape() == x.shape(), "lk_dwconv2d: output gradient shape ", shape_str(dy.shape()),
           " differs from x ", shape_str(x.shape()));
  PD_CHECK(dy.dtype() == x.dtype() && dy.place() == x.place(),
           "lk_dwconv2d: output gradient dtype/device differ from x");
  // A gradient can arrive as a strided view (e.g. after a transpose in the graph).
  const paddle::Tensor g = dy.is_contiguous() ? dy : dy.contiguous();
  auto dx = paddle::empty(x.shape(), x.dtype(), x.place());
  auto dw = paddle::empty(w.shape(), w.dtype(), w.place());
  paddle::Tensor db;
  if (bp) db = paddle::empty(bp->shape(), bp->dtype(), bp->place());
  if (x.is_cpu()) {
    lk::dwconv2d_input_grad_cpu(g.data<float>(), w.data<float>(), dx.data<float>(), d.N, d.C, d.H,
                                d.W, d.K, d.D);
    lk::dwconv2d_weight_grad_cpu(x.data<float>(), g.data<float>(), dw.data<float>(),
                                 bp ? db.data<float>() : nullptr, d.N, d.C, d.H, d.W, d.K, d.D);
  } else {
#ifdef PADDLE_WITH_CUDA
    const int dt = cuda_dtype(x);
    check_cuda(lk_dwconv2d_input_grad_cuda(dt, g.data(), w.data(), dx.data(), d.N, d.C, d.H, d.W,
                                           d.K, d.D, x.stream()),
               "input grad");
    // float32 accumulates in place; float16 / bfloat16 need a float32 workspace.
    paddle::Tensor ws;
    float* ws_ptr = nullptr;
    if (x.dtype() == paddle::DataType::FLOAT32) {
      ws_ptr = dw.data<float>();
    } else {
      ws = paddle::empty({d.C * d.K * d.K}, paddle::DataType::FLOAT32, x.place());
      ws_ptr = ws.data<float>();
    }
    check_cuda(lk_dwconv2d_weight_grad_cuda(dt, x.data(), g.data(), dw.data(), ws_ptr, d.N, d.C,
                                            d.H, d.W, d.K, d.D, x.stream()),
               "weight grad");
    if (bp) {
      check_cuda(lk_dwconv2d_bias_grad_cuda(dt, g.data(), db.data(), d.N, d.C, d.H, d.W,
                                            x.stream()),
                 "bias grad");
    }
#else
    no_cuda();
#endif
  }
  if (bp) return {dx, dw, db};
  return {dx, dw};
}

// ---- operator functions -------------------------------------------------------------------
std::vector<paddle::Tensor> LkForward(const paddle::Tensor& x, const paddle::Tensor& w, int dilation) {
  return {forward_impl(x, w, nullptr, dilation)};
}

std::vector<paddle::Tensor> LkBackward(const paddle::Tensor& x, const paddle::Tensor& w,
                                       const paddle::Tensor& dy, int dilation) {
  return backward_impl(x, w, nullptr, dy, dilation);
}

std::vector<paddle::Tensor> LkBiasForward(const paddle::Tensor& x, const paddle::Tensor& w,
                                          const paddle::Tensor& b, int dilation) {
  return {forward_impl(x, w, &b, dilation)};
}

std::vector<paddle::Tensor> LkBiasBackward(const paddle::Tensor& x, const paddle::Tensor& w,
                                           const paddle::Tensor& b, const paddle::Tensor& dy,
                                           int dilation) {
  return backward_impl(x, w, &b, dy, dilation);
}

std::vector<std::vector<int64_t>> LkInferShape(const std::vector<int64_t>& x,
                                               const std::vector<int64_t>& w, int dilation) {
  return {x};
}

std::vector<std::vector<int64_t>> LkBiasInferShape(const std::vector<int64_t>& x,
                                                   const std::vector<int64_t>& w,
                                                   const std::vector<int64_t>& b, int dilation) {
  return {x};
}

std::vector<paddle::DataType> LkInferDtype(const paddle::DataType& x, const paddle::DataType& w) {
  return {x};
}

std::vector<paddle::DataType> LkBiasInferDtype(const paddle::DataType& x,
                                               const paddle::DataType& w,
                                               const paddle::DataType& b) {
  return {x};
}

std::vector<std::vector<int64_t>> LkGradInferShape(const std::vector<int64_t>& x,
                                                   const std::vector<int64_t>& w,
                                                   const std::vector<int64_t>& dy, int dilation) {
  return {x, w};
}

std::vector<std::vector<int64_t>> LkBiasGradInferShape(const std::vector<int64_t>& x,
                                                       const std::vector<int64_t>& w,
                                                       const std::vector<int64_t>& b,
                                                       const std::vector<int64_t>& dy,
                                                       int dilation) {
  return {x, w, b};
}

}  // namespace

PD_BUILD_OP(lk_dwconv2d)
    .Inputs({"X", "W"})
    .Outputs({"Out"})
    .Attrs({"dilation: int"})
    .SetKernelFn(PD_KERNEL(LkForward))
    .SetInferShapeFn(PD_INFER_SHAPE(LkInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LkInferDtype));

PD_BUILD_GRAD_OP(lk_dwconv2d)
    .Inputs({"X", "W", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W")})
    .Attrs({"dilation: int"})
    .SetKernelFn(PD_KERNEL(LkBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(LkGradInferShape));

PD_BUILD_OP(lk_dwconv2d_bias)
    .Inputs({"X", "W", "Bias"})
    .Outputs({"Out"})
    .Attrs({"dilation: int"})
    .SetKernelFn(PD_KERNEL(LkBiasForward))
    .SetInferShapeFn(PD_INFER_SHAPE(LkBiasInferShape))
    .SetInferDtypeFn(PD_INFER_DTYPE(LkBiasInferDtype));

PD_BUILD_GRAD_OP(lk_dwconv2d_bias)
    .Inputs({"X", "W", "Bias", paddle::Grad("Out")})
    .Outputs({paddle::Grad("X"), paddle::Grad("W"), paddle::Grad("Bias")})
    .Attrs({"dilation: int"})
    .SetKernelFn(PD_KERNEL(LkBiasBackward))
    .SetInferShapeFn(PD_INFER_SHAPE(LkBiasGradInferShape));
