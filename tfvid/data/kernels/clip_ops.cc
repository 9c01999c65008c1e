// Two fused uint8 kernels for the training input pipeline (tfvid/data/kernels/__init__.py).
//
// TfvidFlipResizeU8(images uint8 (N, H, W, C), size int32 [S_h, S_w], flip bool)
//     -> uint8 (N, S_h, S_w, C): optional horizontal flip, then a bilinear resize with
//     tf.image.resize's sampling (half-pixel centres, no antialiasing, edge clamping), in fixed
//     point (11-bit weights, as OpenCV's INTER_LINEAR), rounded: within 1 of
//     round(tf.image.resize(reverse(images))). One pass over the output. Attribute
//     scalar=true forces the portable path (tests: both paths give identical bytes).
// TfvidNormalizeU8(x uint8 (..., C), source int32 [C], scale float [C], offset float [C])
//     -> float32 (..., C): out[..., o] = x[..., source[o]] * scale[o] + offset[o]
//     (channel reordering, e.g. RGB -> BGR, and the per-channel affine map in one pass).
//
// Portability: the library is compiled for the x86-64 baseline (plus SSE4.2), never with
// -march=native, so TensorFlow's Eigen headers see no CPU-specific intrinsics (with
// -march=native on an AVX512-FP16 CPU they do not compile). The AVX-512 code is in functions
// with a per-function target attribute, chosen at run time by the CPU check UseAvx512(); every
// path does the same integer arithmetic, so their results are identical bit for bit.
// tfvid_kernels_avx512() (extern "C") tells Python which path runs (kernels.status()).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TFVID_X86 1
#include <immintrin.h>   // intrinsics usable in functions with a target attribute
#define TFVID_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#else
#define TFVID_X86 0
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tfvid {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// Whether this CPU (and OS: the zmm state is enabled) runs the AVX-512 path; checked once.
bool UseAvx512() {
#if TFVID_X86
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }();
  return yes;
#else
  return false;
#endif
}

constexpr int kBits = 11;
constexpr int32_t kOne = 1 << kBits;
constexpr int32_t kHalf = 1 << (2 * kBits - 1);

// One axis of the resize: output i reads inputs lo[i] and hi[i], weight w[i] / kOne on hi[i].
// With flip the same taps read the mirrored input columns.
struct Axis {
  std::vector<int32_t> lo, hi, w;
  bool identity = false;
};

Axis MakeAxis(int64_t in, int64_t out, bool flip) {
  Axis a;
  a.lo.resize(out);
  a.hi.resize(out);
  a.w.resize(out);
  a.identity = in == out && !flip;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t i = 0; i < out; ++i) {
    const float src = (static_cast<float>(i) + 0.5f) * scale - 0.5f;
    const float fl = std::floor(src);
    const int32_t lo = static_cast<int32_t>(std::max(fl, 0.0f));
    const int32_t hi = static_cast<int32_t>(std::min(std::ceil(src), static_cast<float>(in - 1)));
    const int32_t w = static_cast<int32_t>(std::lround((src - fl) * kOne));
    // flipped input: column x of the reversed image is column in - 1 - x of the image
    a.lo[i] = flip ? in - 1 - lo : lo;
    a.hi[i] = flip ? in - 1 - hi : hi;
    a.w[i] = w;
  }
  return a;
}

// The horizontal taps in 16-value blocks of the flattened output row (x * C + k), for AVX-512:
// block b reads the 32 row values from base[b] on, picking lo/hi by permutation. Built when
// every block's taps fit in 32 values (any scale up to about 1.5, e.g. 256 -> 224), else empty.
struct Blocks {
  std::vector<int32_t> base, lo, hi, w;   // base per block; lo, hi, w per output value
};

Blocks MakeBlocks(const Axis& ax, int64_t c) {
  Blocks b;
  const int64_t n = static_cast<int64_t>(ax.lo.size()) * c;
  if (n % 16) return b;
  for (int64_t start = 0; start < n; start += 16) {
    int32_t base = INT32_MAX;
    for (int64_t j = start; j < start + 16; ++j)
      base = std::min(base, static_cast<int32_t>(std::min(ax.lo[j / c], ax.hi[j / c]) * c + j % c));
    b.base.push_back(base);
    for (int64_t j = start; j < start + 16; ++j) {
      const int32_t lo = ax.lo[j / c] * c + j % c - base, hi = ax.hi[j / c] * c + j % c - base;
      if (lo >= 32 || hi >= 32) return Blocks();
      b.lo.push_back(lo);
      b.hi.push_back(hi);
      b.w.push_back(ax.w[j / c]);
    }
  }
  return b;
}

// Horizontal pass of one row of vertically blended values (scaled by kOne) into uint8
// (inlined, so compiled for the caller's target).
inline __attribute__((always_inline)) void HorizontalScalar(const int32_t* __restrict__ row,
                                                            const Axis& ax, int64_t c,
                                                            uint8_t* __restrict__ o) {
  for (int64_t x = 0; x < static_cast<int64_t>(ax.lo.size()); ++x) {
    const int32_t* a = row + ax.lo[x] * c;
    const int32_t* b = row + ax.hi[x] * c;
    const int32_t wx = ax.w[x], wx0 = kOne - wx;
    for (int64_t k = 0; k < c; ++k)
      o[x * c + k] = static_cast<uint8_t>((a[k] * wx0 + b[k] * wx + kHalf) >> (2 * kBits));
  }
}

#if TFVID_X86
TFVID_AVX512 void HorizontalBlocks(const int32_t* __restrict__ row, const Blocks& bl,
                                   uint8_t* __restrict__ o) {
  const __m512i one = _mm512_set1_epi32(kOne), half = _mm512_set1_epi32(kHalf);
  for (size_t b = 0; b < bl.base.size(); ++b) {
    const int32_t* src = row + bl.base[b];
    const __m512i v0 = _mm512_loadu_si512(src), v1 = _mm512_loadu_si512(src + 16);
    const __m512i lo = _mm512_permutex2var_epi32(v0, _mm512_loadu_si512(&bl.lo[16 * b]), v1);
    const __m512i hi = _mm512_permutex2var_epi32(v0, _mm512_loadu_si512(&bl.hi[16 * b]), v1);
    const __m512i w = _mm512_loadu_si512(&bl.w[16 * b]);
    __m512i v = _mm512_add_epi32(_mm512_mullo_epi32(lo, _mm512_sub_epi32(one, w)),
                                 _mm512_mullo_epi32(hi, w));
    v = _mm512_srai_epi32(_mm512_add_epi32(v, half), 2 * kBits);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16 * b), _mm512_cvtepi32_epi8(v));
  }
}
#endif

// One (h, w, C) image: a vertical pass blending the two source rows into `row` (w * C values
// scaled by kOne, vectorised by the compiler for the caller's target), then the horizontal
// pass, which rounds to uint8 (AVX-512 permutations on the AVX-512 path when the taps fit,
// else scalar). `row` has 32 values of slack. Inlined into ResizeImageScalar/Avx512 below.
template <bool kAvx512>
inline __attribute__((always_inline)) void ResizeImageT(
    const uint8_t* __restrict__ img, int64_t w, int64_t c, const Axis& ay, const Axis& ax,
    const Blocks& blocks, uint8_t* __restrict__ out, int32_t* __restrict__ row) {
  const int64_t in_row = w * c, oh = ay.lo.size(), out_row = ax.lo.size() * c;
  for (int64_t y = 0; y < oh; ++y) {
    const uint8_t* __restrict__ r0 = img + ay.lo[y] * in_row;
    const uint8_t* __restrict__ r1 = img + ay.hi[y] * in_row;
    uint8_t* __restrict__ o = out + y * out_row;
    if (ay.identity && ax.identity) {
      std::copy(r0, r0 + in_row, o);
      continue;
    }
    const int32_t wy = ay.w[y], wy0 = kOne - wy;
    for (int64_t k = 0; k < in_row; ++k) row[k] = r0[k] * wy0 + r1[k] * wy;
    if (ax.identity) {
      for (int64_t k = 0; k < out_row; ++k)
        o[k] = static_cast<uint8_t>((row[k] * kOne + kHalf) >> (2 * kBits));
      continue;
    }
#if TFVID_X86
    if constexpr (kAvx512) {
      if (!blocks.base.empty()) {
        HorizontalBlocks(row, blocks, o);
        continue;
      }
    }
#endif
    HorizontalScalar(row, ax, c, o);
  }
}

void ResizeImageScalar(const uint8_t* __restrict__ img, int64_t w, int64_t c, const Axis& ay,
                       const Axis& ax, const Blocks& blocks, uint8_t* __restrict__ out,
                       int32_t* __restrict__ row) {
  ResizeImageT<false>(img, w, c, ay, ax, blocks, out, row);
}

#if TFVID_X86
TFVID_AVX512 void ResizeImageAvx512(const uint8_t* __restrict__ img, int64_t w, int64_t c,
                                    const Axis& ay, const Axis& ax, const Blocks& blocks,
                                    uint8_t* __restrict__ out, int32_t* __restrict__ row) {
  ResizeImageT<true>(img, w, c, ay, ax, blocks, out, row);
}
#endif

class FlipResizeU8Op : public OpKernel {
 public:
  explicit FlipResizeU8Op(OpKernelConstruction* ctx) : OpKernel(ctx) {
    bool scalar = false;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("scalar", &scalar));
    avx512_ = !scalar && UseAvx512();
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& images = ctx->input(0);
    const Tensor& size = ctx->input(1);
    const Tensor& flip = ctx->input(2);
    OP_REQUIRES(ctx, images.dims() == 4,
                InvalidArgument("images must be (N, H, W, C), got ",
                                images.shape().DebugString()));
    OP_REQUIRES(ctx, size.NumElements() == 2, InvalidArgument("size must hold 2 values"));
    OP_REQUIRES(ctx, flip.NumElements() == 1, InvalidArgument("flip must be a scalar"));
    const int64_t n = images.dim_size(0), h = images.dim_size(1), w = images.dim_size(2),
                  c = images.dim_size(3);
    const int64_t oh = size.flat<int32_t>()(0), ow = size.flat<int32_t>()(1);
    OP_REQUIRES(ctx, oh > 0 && ow > 0, InvalidArgument("size must be positive, got ", oh, "x", ow));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({n, oh, ow, c}), &out));
    if (out->NumElements() == 0) return;
    OP_REQUIRES(ctx, h > 0 && w > 0, InvalidArgument("empty images ", images.shape().DebugString()));
    const Axis ay = MakeAxis(h, oh, false), ax = MakeAxis(w, ow, flip.flat<bool>()(0));
    const Blocks blocks = avx512_ ? MakeBlocks(ax, c) : Blocks();
    std::vector<int32_t> row(w * c + 32, 0);
    const uint8_t* src = images.flat<uint8_t>().data();
    uint8_t* dst = out->flat<uint8_t>().data();
    for (int64_t b = 0; b < n; ++b) {
      const uint8_t* img = src + b * h * w * c;
      uint8_t* o = dst + b * oh * ow * c;
#if TFVID_X86
      if (avx512_) {
        ResizeImageAvx512(img, w, c, ay, ax, blocks, o, row.data());
        continue;
      }
#endif
      ResizeImageScalar(img, w, c, ay, ax, blocks, o, row.data());
    }
  }

 private:
  bool avx512_ = false;
};

class NormalizeU8Op : public OpKernel {
 public:
  explicit NormalizeU8Op(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& source = ctx->input(1);
    const Tensor& scale = ctx->input(2);
    const Tensor& offset = ctx->input(3);
    OP_REQUIRES(ctx, x.dims() >= 1, InvalidArgument("x must have a channel axis"));
    const int64_t c = x.dim_size(x.dims() - 1);
    OP_REQUIRES(ctx, source.NumElements() == c && scale.NumElements() == c &&
                         offset.NumElements() == c,
                InvalidArgument("source, scale and offset need one value per channel (", c, ")"));
    std::vector<int32_t> src(source.flat<int32_t>().data(), source.flat<int32_t>().data() + c);
    for (int32_t s : src)
      OP_REQUIRES(ctx, s >= 0 && s < c, InvalidArgument("source channel ", s, " out of range"));
    const float* mul = scale.flat<float>().data();
    const float* add = offset.flat<float>().data();
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &out));
    const uint8_t* in = x.flat<uint8_t>().data();
    float* o = out->flat<float>().data();
    const int64_t pixels = c ? x.NumElements() / c : 0;
    if (c == 3) {
      const int32_t s0 = src[0], s1 = src[1], s2 = src[2];
      for (int64_t p = 0; p < pixels; ++p, in += 3, o += 3) {
        o[0] = in[s0] * mul[0] + add[0];
        o[1] = in[s1] * mul[1] + add[1];
        o[2] = in[s2] * mul[2] + add[2];
      }
      return;
    }
    for (int64_t p = 0; p < pixels; ++p, in += c, o += c)
      for (int64_t k = 0; k < c; ++k) o[k] = in[src[k]] * mul[k] + add[k];
  }
};

}  // namespace
}  // namespace tfvid

REGISTER_OP("TfvidFlipResizeU8")
    .Input("images: uint8")
    .Input("size: int32")
    .Input("flip: bool")
    .Attr("scalar: bool = false")
    .Output("resized: uint8")
    .SetShapeFn([](tfvid::InferenceContext* c) {
      tfvid::ShapeHandle in, size;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &in));
      TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(1, &size));
      TF_RETURN_IF_ERROR(c->WithRank(size, 2, &size));
      c->set_output(0, c->MakeShape({c->Dim(in, 0), c->Dim(size, 0), c->Dim(size, 1),
                                     c->Dim(in, 3)}));
      return absl::OkStatus();
    });

REGISTER_OP("TfvidNormalizeU8")
    .Input("x: uint8")
    .Input("source: int32")
    .Input("scale: float")
    .Input("offset: float")
    .Output("y: float")
    .SetShapeFn([](tfvid::InferenceContext* c) {
      c->set_output(0, c->input(0));
      return absl::OkStatus();
    });

// 1 when the resize runs its AVX-512 path on this CPU (unless forced scalar), else 0.
extern "C" __attribute__((visibility("default"))) int tfvid_kernels_avx512() {
  return tfvid::UseAvx512() ? 1 : 0;
}

REGISTER_KERNEL_BUILDER(Name("TfvidFlipResizeU8").Device(tensorflow::DEVICE_CPU),
                        tfvid::FlipResizeU8Op);
REGISTER_KERNEL_BUILDER(Name("TfvidNormalizeU8").Device(tensorflow::DEVICE_CPU),
                        tfvid::NormalizeU8Op);
