// One chunk of rows of the shared-negative InfoNCE (model/contrastive.py), its loss and its
// gradient in one pass per row, instead of the dozen full passes over the (rows x N) logits
// that the PyTorch path makes. Same maths, same order of operations per row; see
// _chunk_torch in model/contrastive.py, the reference this must agree with.
//
// z (c, N): the products 2 a . b of a chunk's anchors with the negatives (tanh(x) = 2
// sigmoid(2x) - 1; the 2 is folded into the product), bf16 or fp32, row-major. Per row i:
// left-out negatives left_col[left_ptr[i] .. left_ptr[i + 1]), pairs pair_ptr[i] ..
// pair_ptr[i + 1] of positive logits pos. Writes gz (c, N) in z's dtype: (sig - sig^2)
// dL/ds, to be scaled by 4 / tau by the caller; and per row lse, loss (the sum over its
// pairs of softplus(lse - pos)), dot (sum dL/ds * sig) and coef (dL/dlse); per pair grad_pos.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

inline float load(const uint16_t* p, int64_t j) {  // bf16 -> fp32 is exact
  uint32_t u = uint32_t(p[j]) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float load(const float* p, int64_t j) { return p[j]; }
inline void store(uint16_t* p, int64_t j, float f) {  // fp32 -> bf16, round to nearest even (as torch)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  p[j] = uint16_t(u >> 16);
}
inline void store(float* p, int64_t j, float f) { p[j] = f; }

template <typename T>
void chunk(const T* z, int64_t c, int64_t n, const int64_t* left_ptr, const int64_t* left_col,
           const int64_t* pair_ptr, const float* pos, float inv_tau, float inv_pairs, T* gz, float* lse,
           float* grad_pos, float* loss, float* dot, float* coef) {
  const float k2 = 2.f * inv_tau, tiny = 1.17549435e-38f;  // FLT_MIN, as torch.finfo(float32).tiny
#pragma omp parallel
  {
    std::vector<float> sig_buf(n), e_buf(n);
    float* sig = sig_buf.data();
    float* e = e_buf.data();
#pragma omp for schedule(static)
    for (int64_t i = 0; i < c; ++i) {
      const T* zi = z + i * n;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) {
        float x = load(zi, j);
        x = x < -80.f ? -80.f : (x > 80.f ? 80.f : x);  // sigmoid is 0 or 1 there; exp stays finite
        sig[j] = 1.f / (1.f + std::exp(-x));
      }
      // a left-out entry reads as tanh -1 so it cannot set the row's maximum
      for (int64_t k = left_ptr[i]; k < left_ptr[i + 1]; ++k) sig[left_col[k]] = 0.f;
      float top = 0.f;
#pragma omp simd reduction(max : top)
      for (int64_t j = 0; j < n; ++j) top = sig[j] > top ? sig[j] : top;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) e[j] = std::exp((sig[j] - top) * k2);  // exp((tanh - max tanh) / tau)
      for (int64_t k = left_ptr[i]; k < left_ptr[i + 1]; ++k) e[left_col[k]] = 0.f;
      float total = 0.f;
#pragma omp simd reduction(+ : total)
      for (int64_t j = 0; j < n; ++j) total += e[j];
      total = total > tiny ? total : tiny;
      const float l = (2.f * top - 1.f) * inv_tau + std::log(total);
      float cf = 0.f, ls = 0.f;
      for (int64_t p = pair_ptr[i]; p < pair_ptr[i + 1]; ++p) {
        const float gap = l - pos[p];
        const float g = gap < -80.f ? -80.f : (gap > 80.f ? 80.f : gap);  // exp stays finite
        const float sg = 1.f / (1.f + std::exp(-g));
        ls += gap > 0.f ? gap + std::log1p(std::exp(-gap)) : std::log1p(std::exp(gap));  // softplus(gap)
        grad_pos[p] = -sg * inv_pairs;
        cf += sg * inv_pairs;
      }
      const float scale = cf / total;  // dL/d(tanh / tau) = softmax * coef
      float d = 0.f;
      T* gzi = gz + i * n;
#pragma omp simd reduction(+ : d)
      for (int64_t j = 0; j < n; ++j) {
        const float gs = e[j] * scale, s = sig[j];
        d += gs * s;
        store(gzi, j, (s - s * s) * gs);
      }
      lse[i] = l;
      loss[i] = ls;
      dot[i] = d;
      coef[i] = cf;
    }
  }
}

}  // namespace

extern "C" {
void infonce_chunk_bf16(const uint16_t* z, int64_t c, int64_t n, const int64_t* left_ptr, const int64_t* left_col,
                        const int64_t* pair_ptr, const float* pos, float inv_tau, float inv_pairs, uint16_t* gz,
                        float* lse, float* grad_pos, float* loss, float* dot, float* coef) {
  chunk(z, c, n, left_ptr, left_col, pair_ptr, pos, inv_tau, inv_pairs, gz, lse, grad_pos, loss, dot, coef);
}
void infonce_chunk_fp32(const float* z, int64_t c, int64_t n, const int64_t* left_ptr, const int64_t* left_col,
                        const int64_t* pair_ptr, const float* pos, float inv_tau, float inv_pairs, float* gz,
                        float* lse, float* grad_pos, float* loss, float* dot, float* coef) {
  chunk(z, c, n, left_ptr, left_col, pair_ptr, pos, inv_tau, inv_pairs, gz, lse, grad_pos, loss, dot, coef);
}
}
