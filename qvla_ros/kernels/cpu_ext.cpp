// Copyright 2026 qvla_ros authors. Apache-2.0.
// Fused CPU kernels for the mixed-bit packed layout of qvla_ros/kernels/format.py.
//
// mixed_gemv: y (M, N) = x (M, K) @ W^T + bias for small M, reading the packed rows directly.
//   Per-row grids compute s * (q . x) - s * z * sum(x) straight from the int32 words (16 words
//   per vector); group-wise grids decode a row into a thread-local buffer first. The result
//   goes to output column perm[row]; pruned columns hold the bias. One at::parallel_for over
//   all kept rows, on one thread when the layer is too small to pay for a second.
// dequant_rows: a bf16 or float (n, K) block of one bit group, for a GEMM when M is large.
// dequant_dense: a small layer as a transient bf16 or float (N, K) weight in output order.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

template <int BITS>
inline void decode_row(const int32_t* words, int64_t K, float* out) {
  constexpr int VPW = 32 / BITS;
  constexpr uint32_t MASK = (1u << BITS) - 1u;
  const int64_t full = K / VPW;
  for (int64_t w = 0; w < full; ++w) {
    const uint32_t word = static_cast<uint32_t>(words[w]);
    float* o = out + w * VPW;
    for (int j = 0; j < VPW; ++j) o[j] = static_cast<float>((word >> (j * BITS)) & MASK);
  }
  if (full * VPW < K) {
    const uint32_t word = static_cast<uint32_t>(words[full]);
    for (int64_t k = full * VPW; k < K; ++k)
      out[k] = static_cast<float>((word >> ((k - full * VPW) * BITS)) & MASK);
  }
}

inline void decode_any(int bits, const int32_t* words, int64_t K, float* out) {
  switch (bits) {
    case 2: decode_row<2>(words, K, out); break;
    case 3: decode_row<3>(words, K, out); break;
    case 4: decode_row<4>(words, K, out); break;
    case 8: decode_row<8>(words, K, out); break;
    default: TORCH_CHECK(false, "unsupported bit-width ", bits);
  }
}

// buf[k] = (buf[k] - z[g]) * s[g], g = k / gs.
inline void scale_row(float* buf, int64_t K, int64_t gs, const at::Half* s, const at::Half* z) {
  for (int64_t g0 = 0, g = 0; g0 < K; g0 += gs, ++g) {
    const float sc = static_cast<float>(s[g]), ze = static_cast<float>(z[g]);
    const int64_t end = std::min(K, g0 + gs);
    for (int64_t k = g0; k < end; ++k) buf[k] = (buf[k] - ze) * sc;
  }
}

inline float dot(const float* a, const float* b, int64_t K) {
  float acc[16] = {0};
  int64_t k = 0;
  for (; k + 16 <= K; k += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[k + j] * b[k + j];
  float total = 0.f;
  for (int j = 0; j < 16; ++j) total += acc[j];
  for (; k < K; ++k) total += a[k] * b[k];
  return total;
}

// Per-row grid (one scale/zero per row): dot(q, x) without materialising the row. x is given
// transposed by code position, xt[j * W + w] = x[w * VPW + j] (zero past K), so 16 consecutive
// words are one vector: shift, mask, convert and fma on 16 lanes (GCC vector extensions).
// A remainder of 8+ words takes one 8-lane step and the last < 8 words go scalar, so no lane
// multiplies padding (2-bit rows of K = 384 are 24 words: 16 + 8).
typedef float v16f __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));

template <int BITS, typename VF, typename VU>
inline VF qdot_step(const int32_t* words, int64_t W, const float* xt, VF acc) {
  constexpr int VPW = 32 / BITS;
  constexpr uint32_t MASK = (1u << BITS) - 1u;
  VU word;
  std::memcpy(&word, words, sizeof(word));
  for (int j = 0; j < VPW; ++j) {
    VF xv;
    std::memcpy(&xv, xt + j * W, sizeof(xv));
    const VU q = (word >> static_cast<uint32_t>(j * BITS)) & MASK;
    acc += __builtin_convertvector(q, VF) * xv;
  }
  return acc;
}

template <int BITS>
inline float qdot(const int32_t* words, int64_t W, const float* xt) {
  constexpr int VPW = 32 / BITS;
  constexpr uint32_t MASK = (1u << BITS) - 1u;
  v16f acc = {0};
  int64_t w0 = 0;
  for (; w0 + 16 <= W; w0 += 16) acc = qdot_step<BITS, v16f, v16u>(words + w0, W, xt + w0, acc);
  float total = 0.f;
  for (int l = 0; l < 16; ++l) total += acc[l];
  if (w0 + 8 <= W) {
    const v8f a8 = qdot_step<BITS, v8f, v8u>(words + w0, W, xt + w0, v8f{0});
    for (int l = 0; l < 8; ++l) total += a8[l];
    w0 += 8;
  }
  for (; w0 < W; ++w0) {
    const uint32_t word = static_cast<uint32_t>(words[w0]);
    for (int j = 0; j < VPW; ++j)
      total += static_cast<float>((word >> (j * BITS)) & MASK) * xt[j * W + w0];
  }
  return total;
}

inline float qdot_any(int bits, const int32_t* words, int64_t W, const float* xt) {
  switch (bits) {
    case 2: return qdot<2>(words, W, xt);
    case 3: return qdot<3>(words, W, xt);
    case 4: return qdot<4>(words, W, xt);
    case 8: return qdot<8>(words, W, xt);
    default: TORCH_CHECK(false, "unsupported bit-width ", bits);
  }
  return 0.f;
}
}  // namespace

// One non-empty bit group of the packed layout (format.py): its rows start at row0 of perm,
// at qrow0 of scales/zeros and at word0 of qweight, wpr int32 words per row (0 for 16-bit).
struct GroupSpan {
  int bits;
  int64_t row0, rows, qrow0, word0, wpr;
};

// counts int32 (5,) on the host, rows per bit-width (16, 8, 4, 3, 2) in packed order.
std::vector<GroupSpan> group_spans(torch::Tensor counts, int64_t K) {
  const int bits_of[5] = {16, 8, 4, 3, 2};
  auto cnt = counts.accessor<int32_t, 1>();
  std::vector<GroupSpan> spans;
  int64_t row0 = 0, qrow0 = 0, word0 = 0;
  for (int gi = 0; gi < 5; ++gi) {
    const int bits = bits_of[gi];
    const int64_t n = cnt[gi], wpr = bits == 16 ? 0 : (K + 32 / bits - 1) / (32 / bits);
    if (n > 0) spans.push_back({bits, row0, n, qrow0, word0, wpr});
    row0 += n;
    if (bits != 16) { qrow0 += n; word0 += n * wpr; }
  }
  return spans;
}

struct GroupView : GroupSpan {
  std::vector<float> xt;  // (M, VPW, wpr): x transposed by code position, zero past K
};

// Fewer multiply-adds than this per thread do not pay for waking a second thread.
constexpr int64_t kMinWorkPerThread = 1 << 15;

// x float32 (M, K) contiguous; counts int32 (5,) on the host for bits (16, 8, 4, 3, 2); bias
// (N,) in any float dtype, or None. One pass over every kept row of every group, split across
// torch's threads when the layer is large enough.
torch::Tensor mixed_gemv(torch::Tensor x, torch::Tensor counts, torch::Tensor perm,
                         torch::Tensor weight16, torch::Tensor qweight, torch::Tensor scales,
                         torch::Tensor zeros, c10::optional<torch::Tensor> bias,
                         int64_t out_features, int64_t group_size) {
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.is_contiguous() && x.dim() == 2,
              "x must be contiguous float32 (M, K)");
  const int64_t M = x.size(0), K = x.size(1), N = out_features;
  auto y = torch::empty({M, N}, x.options());
  float* yp = y.data_ptr<float>();
  if (bias.has_value()) {  // every column starts at its bias: a pruned column stays there
    TORCH_CHECK(bias->is_contiguous() && bias->numel() == N, "bias must be contiguous (N,)");
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, bias->scalar_type(), "bias", [&] {
      const scalar_t* bp = bias->data_ptr<scalar_t>();
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) yp[m * N + n] = static_cast<float>(bp[n]);
    });
  } else {
    std::fill(yp, yp + M * N, 0.f);
  }
  const std::vector<GroupSpan> spans = group_spans(counts, K);
  torch::Tensor w16;  // only the (rare) 16-bit rows are widened, and only when present
  const float* w16p = nullptr;
  if (!spans.empty() && spans.front().bits == 16) {
    w16 = weight16.to(torch::kFloat32).contiguous();
    w16p = w16.data_ptr<float>();
  }
  const float* xp = x.data_ptr<float>();
  const int32_t* pp = perm.data_ptr<int32_t>();
  const int32_t* qp = qweight.data_ptr<int32_t>();
  const at::Half* sp = scales.data_ptr<at::Half>();
  const at::Half* zp = zeros.data_ptr<at::Half>();
  const int64_t G = scales.size(1);
  const bool per_row = group_size >= K;
  std::vector<GroupView> groups;
  std::vector<float> xsum(M, 0.f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) xsum[m] += xp[m * K + k];
  for (const GroupSpan& span : spans) {
    GroupView g{span, {}};
    if (g.bits != 16 && per_row) {
      const int vpw = 32 / g.bits;
      g.xt.assign(M * vpw * g.wpr, 0.f);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t w = 0; w < g.wpr; ++w)
          for (int j = 0; j < vpw && w * vpw + j < K; ++j)
            g.xt[(m * vpw + j) * g.wpr + w] = xp[m * K + w * vpw + j];
    }
    groups.push_back(std::move(g));
  }
  const int64_t row0 = spans.empty() ? 0 : spans.back().row0 + spans.back().rows;
  const int64_t grain = std::max<int64_t>(16, kMinWorkPerThread / std::max<int64_t>(1, M * K));
  at::parallel_for(0, row0, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(K);
    for (const GroupView& g : groups) {
      const int64_t lo = std::max(begin, g.row0), hi = std::min(end, g.row0 + g.rows);
      for (int64_t pr = lo; pr < hi; ++pr) {
        const int64_t r = pr - g.row0, col = pp[pr];
        if (g.bits != 16 && per_row) {
          // y = s * (q . x) - s * z * sum(x): the row is never materialised.
          const int32_t* words = qp + g.word0 + r * g.wpr;
          const float sc = static_cast<float>(sp[(g.qrow0 + r) * G]);
          const float ze = static_cast<float>(zp[(g.qrow0 + r) * G]);
          const int vpw = 32 / g.bits;
          for (int64_t m = 0; m < M; ++m)
            yp[m * N + col] += sc * (qdot_any(g.bits, words, g.wpr,
                                              g.xt.data() + m * vpw * g.wpr)
                                     - ze * xsum[m]);
          continue;
        }
        const float* w;
        if (g.bits == 16) {
          w = w16p + r * K;
        } else {  // group-wise grid: decode and scale the row, then dot
          decode_any(g.bits, qp + g.word0 + r * g.wpr, K, buf.data());
          scale_row(buf.data(), K, group_size, sp + (g.qrow0 + r) * G,
                    zp + (g.qrow0 + r) * G);
          w = buf.data();
        }
        for (int64_t m = 0; m < M; ++m) yp[m * N + col] += dot(w, xp + m * K, K);
      }
    }
  });
  return y;
}

// Rows [start, start + n) of one quantized group -> (n, K) in T (bf16 or float).
template <typename T>
void dequant_rows_into(const int32_t* qp, int64_t n, int64_t wpr, int bits, const at::Half* sp,
                       const at::Half* zp, int64_t G, int64_t K, int64_t group_size,
                       const int32_t* dest, T* op) {
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(K);
    for (int64_t r = begin; r < end; ++r) {
      decode_any(bits, qp + r * wpr, K, buf.data());
      scale_row(buf.data(), K, group_size, sp + r * G, zp + r * G);
      T* o = op + (dest ? dest[r] : r) * K;
      for (int64_t k = 0; k < K; ++k) o[k] = static_cast<T>(buf[k]);
    }
  });
}

torch::Tensor dequant_rows(torch::Tensor words, int64_t bits, torch::Tensor scales,
                           torch::Tensor zeros, int64_t K, int64_t group_size, bool fp32) {
  const int64_t n = words.size(0), wpr = words.size(1), G = scales.size(1);
  auto out = torch::empty({n, K}, torch::dtype(fp32 ? torch::kFloat32 : torch::kBFloat16));
  const int32_t* qp = words.data_ptr<int32_t>();
  const at::Half* sp = scales.data_ptr<at::Half>();
  const at::Half* zp = zeros.data_ptr<at::Half>();
  if (fp32)
    dequant_rows_into(qp, n, wpr, bits, sp, zp, G, K, group_size, nullptr, out.data_ptr<float>());
  else
    dequant_rows_into(qp, n, wpr, bits, sp, zp, G, K, group_size, nullptr,
                      out.data_ptr<at::BFloat16>());
  return out;
}

// The whole layer as a dense (N, K) weight in output order (bf16, or float when fp32): packed
// row r lands on row perm[r] and pruned rows are zero, so one GEMM gives every column (a
// pruned one gives 0) with no scatter afterwards, and N keeps the layer's own size.
template <typename T>
void dequant_dense_into(torch::Tensor counts, torch::Tensor perm, torch::Tensor weight16,
                        torch::Tensor qweight, torch::Tensor scales, torch::Tensor zeros,
                        int64_t N, int64_t K, int64_t group_size, T* op) {
  const int32_t* pp = perm.data_ptr<int32_t>();
  std::vector<char> kept(N, 0);
  for (int64_t r = 0; r < perm.numel(); ++r) kept[pp[r]] = 1;
  for (int64_t c = 0; c < N; ++c)
    if (!kept[c]) std::fill(op + c * K, op + (c + 1) * K, static_cast<T>(0.f));
  const int32_t* qp = qweight.data_ptr<int32_t>();
  const at::Half* sp = scales.data_ptr<at::Half>();
  const at::Half* zp = zeros.data_ptr<at::Half>();
  const int64_t G = scales.size(1);
  for (const GroupSpan& g : group_spans(counts, K)) {
    if (g.bits == 16) {  // 16-bit rows are stored in the layer's dense dtype
      const torch::Tensor w16 = weight16.to(c10::CppTypeToScalarType<T>::value).contiguous();
      const T* wp = w16.data_ptr<T>();
      for (int64_t r = 0; r < g.rows; ++r)
        std::memcpy(op + pp[g.row0 + r] * K, wp + r * K, sizeof(T) * K);
      continue;
    }
    dequant_rows_into(qp + g.word0, g.rows, g.wpr, g.bits, sp + g.qrow0 * G, zp + g.qrow0 * G,
                      G, K, group_size, pp + g.row0, op);
  }
}

torch::Tensor dequant_dense(torch::Tensor counts, torch::Tensor perm, torch::Tensor weight16,
                            torch::Tensor qweight, torch::Tensor scales, torch::Tensor zeros,
                            int64_t N, int64_t K, int64_t group_size, bool fp32) {
  auto out = torch::empty({N, K}, torch::dtype(fp32 ? torch::kFloat32 : torch::kBFloat16));
  if (fp32)
    dequant_dense_into(counts, perm, weight16, qweight, scales, zeros, N, K, group_size,
                       out.data_ptr<float>());
  else
    dequant_dense_into(counts, perm, weight16, qweight, scales, zeros, N, K, group_size,
                       out.data_ptr<at::BFloat16>());
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("mixed_gemv", &mixed_gemv, "fused mixed-bit GEMV/GEMM for small M");
  m.def("dequant_rows", &dequant_rows, "decode one bit group's rows to bf16 or float");
  m.def("dequant_dense", &dequant_dense, "decode a whole layer to (N, K), output order");
}
