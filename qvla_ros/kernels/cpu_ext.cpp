// Copyright 2026 qvla_ros authors. Apache-2.0.
// Fused CPU kernels for the mixed-bit packed layout of qvla_ros/kernels/format.py.
//
// mixed_gemv: y (M, N) = x (M, K) @ W^T + bias for small M, reading the packed rows directly.
//   Per-row grids compute s * (q . x) - s * z * sum(x) straight from the int32 words (16 words
//   per vector); group-wise grids decode a row into a thread-local buffer first. The result
//   goes to output column perm[row]; pruned columns hold the bias. One at::parallel_for over
//   all kept rows (torch's thread count).
// dequant_rows: a float/bf16 (n, K) block of one bit group, for a GEMM when M is large.
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
typedef float v16f __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));

// xt has row stride Wp = W rounded up to 16 and is zero beyond K, so the last, partial vector
// of words is zero-padded and needs no scalar tail.
template <int BITS>
inline float qdot(const int32_t* words, int64_t W, int64_t Wp, const float* xt) {
  constexpr int VPW = 32 / BITS;
  constexpr uint32_t MASK = (1u << BITS) - 1u;
  v16f acc = {0};
  for (int64_t w0 = 0; w0 < W; w0 += 16) {
    v16u word = {0};
    if (w0 + 16 <= W)
      std::memcpy(&word, words + w0, sizeof(word));
    else
      std::memcpy(&word, words + w0, sizeof(uint32_t) * (W - w0));
    for (int j = 0; j < VPW; ++j) {
      v16f xv;
      std::memcpy(&xv, xt + j * Wp + w0, sizeof(xv));
      const v16u q = (word >> static_cast<uint32_t>(j * BITS)) & MASK;
      acc += __builtin_convertvector(q, v16f) * xv;
    }
  }
  float total = 0.f;
  for (int l = 0; l < 16; ++l) total += acc[l];
  return total;
}

inline float qdot_any(int bits, const int32_t* words, int64_t W, int64_t Wp, const float* xt) {
  switch (bits) {
    case 2: return qdot<2>(words, W, Wp, xt);
    case 3: return qdot<3>(words, W, Wp, xt);
    case 4: return qdot<4>(words, W, Wp, xt);
    case 8: return qdot<8>(words, W, Wp, xt);
    default: TORCH_CHECK(false, "unsupported bit-width ", bits);
  }
  return 0.f;
}
}  // namespace

struct GroupView {
  int bits;
  int64_t row0, rows, qrow0, word0, wpr, wp;
  std::vector<float> xt;  // (M, VPW, wp): x transposed by code position, zero padded
};

// x float32 (M, K) contiguous; counts int32 (5,) for bits (16, 8, 4, 3, 2). One parallel pass
// over every kept row of every group.
torch::Tensor mixed_gemv(torch::Tensor x, torch::Tensor counts, torch::Tensor perm,
                         torch::Tensor weight16, torch::Tensor qweight, torch::Tensor scales,
                         torch::Tensor zeros, c10::optional<torch::Tensor> bias,
                         int64_t out_features, int64_t group_size) {
  TORCH_CHECK(x.dtype() == torch::kFloat32 && x.is_contiguous() && x.dim() == 2,
              "x must be contiguous float32 (M, K)");
  const int64_t M = x.size(0), K = x.size(1);
  auto y = torch::zeros({M, out_features}, x.options());
  if (bias.has_value()) y.add_(bias->to(torch::kFloat32).unsqueeze(0));
  const int bits_of[5] = {16, 8, 4, 3, 2};
  auto cnt = counts.accessor<int32_t, 1>();
  auto w16 = weight16.to(torch::kFloat32).contiguous();
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int32_t* pp = perm.data_ptr<int32_t>();
  const int32_t* qp = qweight.data_ptr<int32_t>();
  const at::Half* sp = scales.data_ptr<at::Half>();
  const at::Half* zp = zeros.data_ptr<at::Half>();
  const float* w16p = w16.data_ptr<float>();
  const int64_t G = scales.size(1);
  const bool per_row = group_size >= K;
  std::vector<GroupView> groups;
  std::vector<float> xsum(M, 0.f);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) xsum[m] += xp[m * K + k];
  int64_t row0 = 0, qrow0 = 0, word0 = 0;
  for (int gi = 0; gi < 5; ++gi) {
    const int bits = bits_of[gi];
    const int64_t n = cnt[gi];
    const int vpw = bits == 16 ? 1 : 32 / bits;
    const int64_t wpr = bits == 16 ? 0 : (K + vpw - 1) / vpw;
    if (n > 0) {
      GroupView g{bits, row0, n, qrow0, word0, wpr, (wpr + 15) / 16 * 16, {}};
      if (bits != 16 && per_row) {
        g.xt.assign(M * vpw * g.wp, 0.f);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t w = 0; w < wpr; ++w)
            for (int j = 0; j < vpw && w * vpw + j < K; ++j)
              g.xt[(m * vpw + j) * g.wp + w] = xp[m * K + w * vpw + j];
      }
      groups.push_back(std::move(g));
    }
    row0 += n;
    if (bits != 16) { qrow0 += n; word0 += n * wpr; }
  }
  at::parallel_for(0, row0, 16, [&](int64_t begin, int64_t end) {
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
            yp[m * out_features + col] += sc * (qdot_any(g.bits, words, g.wpr, g.wp,
                                                         g.xt.data() + m * vpw * g.wp)
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
        for (int64_t m = 0; m < M; ++m) yp[m * out_features + col] += dot(w, xp + m * K, K);
      }
    }
  });
  return y;
}

// Rows [start, start + n) of one quantized group -> bf16 (n, K).
torch::Tensor dequant_rows(torch::Tensor words, int64_t bits, torch::Tensor scales,
                           torch::Tensor zeros, int64_t K, int64_t group_size) {
  const int64_t n = words.size(0), wpr = words.size(1), G = scales.size(1);
  auto out = torch::empty({n, K}, torch::dtype(torch::kBFloat16));
  const int32_t* qp = words.data_ptr<int32_t>();
  const at::Half* sp = scales.data_ptr<at::Half>();
  const at::Half* zp = zeros.data_ptr<at::Half>();
  at::BFloat16* op = out.data_ptr<at::BFloat16>();
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(K);
    for (int64_t r = begin; r < end; ++r) {
      decode_any(static_cast<int>(bits), qp + r * wpr, K, buf.data());
      scale_row(buf.data(), K, group_size, sp + r * G, zp + r * G);
      for (int64_t k = 0; k < K; ++k) op[r * K + k] = static_cast<at::BFloat16>(buf[k]);
    }
  });
  return out;
}

// Every kept row of a layer, in packed order, as bf16 (R, K): one GEMM then serves all groups.
torch::Tensor dequant_all(torch::Tensor counts, torch::Tensor weight16, torch::Tensor qweight,
                          torch::Tensor scales, torch::Tensor zeros, int64_t K,
                          int64_t group_size) {
  const int bits_of[5] = {16, 8, 4, 3, 2};
  auto cnt = counts.accessor<int32_t, 1>();
  int64_t total = 0;
  for (int gi = 0; gi < 5; ++gi) total += cnt[gi];
  auto out = torch::empty({total, K}, torch::dtype(torch::kBFloat16));
  const int64_t n16 = cnt[0];
  if (n16 > 0) out.narrow(0, 0, n16).copy_(weight16);
  const int32_t* qp = qweight.data_ptr<int32_t>();
  const at::Half* sp = scales.data_ptr<at::Half>();
  const at::Half* zp = zeros.data_ptr<at::Half>();
  at::BFloat16* op = out.data_ptr<at::BFloat16>();
  const int64_t G = scales.size(1);
  int64_t row0 = n16, qrow0 = 0, word0 = 0;
  for (int gi = 1; gi < 5; ++gi) {
    const int bits = bits_of[gi];
    const int64_t n = cnt[gi], wpr = (K + 32 / bits - 1) / (32 / bits);
    at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
      std::vector<float> buf(K);
      for (int64_t r = begin; r < end; ++r) {
        decode_any(bits, qp + word0 + r * wpr, K, buf.data());
        scale_row(buf.data(), K, group_size, sp + (qrow0 + r) * G, zp + (qrow0 + r) * G);
        at::BFloat16* o = op + (row0 + r) * K;
        for (int64_t k = 0; k < K; ++k) o[k] = static_cast<at::BFloat16>(buf[k]);
      }
    });
    row0 += n; qrow0 += n; word0 += n * wpr;
  }
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("mixed_gemv", &mixed_gemv, "fused mixed-bit GEMV/GEMM for small M");
  m.def("dequant_rows", &dequant_rows, "decode one bit group's rows to bf16");
  m.def("dequant_all", &dequant_all, "decode every kept row of a layer to bf16, packed order");
}
