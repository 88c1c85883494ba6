// Dropout's keep multipliers (0 or 1 / (1 - p)), written straight in the tensor's dtype from
// a counter-based generator: element i keeps iff 16 bits of splitmix64(seed + (i / 4 + 1)
// * gamma), bits 16 (i % 4) .. 16 (i % 4) + 15, are at least `threshold` (p rounded to
// 1/65536). model/layers.py computes the same stream with numpy where this cannot be built:
// the masks are the same bits on every machine, and any thread count.
#include <cstdint>

namespace {

inline uint64_t mix(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

inline bool kept(uint64_t h, int lane, uint32_t threshold) { return ((h >> (16 * lane)) & 0xFFFFu) >= threshold; }

template <typename T>
void keep(T* out, int64_t n, uint64_t seed, uint32_t threshold, T scale) {
  const int64_t whole = n / 4;  // words whose four lanes are all elements
#pragma omp parallel for simd schedule(static)
  for (int64_t w = 0; w < whole; ++w) {
    const uint64_t h = mix(seed + uint64_t(w + 1) * kGamma);
    for (int lane = 0; lane < 4; ++lane) out[w * 4 + lane] = kept(h, lane, threshold) ? scale : T(0);
  }
  const uint64_t h = mix(seed + uint64_t(whole + 1) * kGamma);
  for (int64_t i = whole * 4; i < n; ++i) out[i] = kept(h, int(i - whole * 4), threshold) ? scale : T(0);
}

}  // namespace

extern "C" {
void dropout_keep_16(uint16_t* out, int64_t n, uint64_t seed, uint32_t threshold, uint16_t scale_bits) {
  keep(out, n, seed, threshold, scale_bits);  // bf16 (or fp16) as bits: 0 is +0.0
}
void dropout_keep_fp32(float* out, int64_t n, uint64_t seed, uint32_t threshold, float scale) {
  keep(out, n, seed, threshold, scale);
}
}
