// SparseAdam's update of the rows a step touched, with L2 on those rows' gradients, in one
// pass over each row (torch.optim.SparseAdam makes about a dozen passes: masks, sparse adds,
// and the L2 a separate gather and add). The same formula, in the same order per element;
// see model/optim.py, whose PyTorch path is the reference.
//
// w, m, v (rows x dim): the table, Adam's first and second moments; rows (n,) distinct,
// g (n, dim) their gradients. For each element: g += l2 * w; m += (g - m)(1 - beta1);
// v += (g^2 - v)(1 - beta2); w -= step_size * m / (sqrt(v) + eps).
#include <cmath>
#include <cstdint>

extern "C" void sparse_adam_rows(float* w, float* m, float* v, int64_t dim, const int64_t* rows, int64_t n,
                                 const float* g, float step_size, float beta1, float beta2, float eps, float l2) {
  const float a1 = 1.f - beta1, a2 = 1.f - beta2;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = rows[i] * dim;
    const float* gi = g + i * dim;
#pragma omp simd
    for (int64_t j = 0; j < dim; ++j) {
      const float grad = gi[j] + l2 * w[r + j];
      const float mj = m[r + j] + (grad - m[r + j]) * a1;
      const float vj = v[r + j] + (grad * grad - v[r + j]) * a2;
      m[r + j] = mj;
      v[r + j] = vj;
      w[r + j] += -step_size * (mj / (std::sqrt(vj) + eps));
    }
  }
}
