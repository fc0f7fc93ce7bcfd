//go:build cgo && !gaia_nolibtorch

// heads.cpp: the computations some detectors make after the forward, on
// the device, from a tap's value and buffers put there once (the
// classifier's weight, fitted statistics): so that a feature vector never
// comes back to the host to be scored. Each head is described in shim.h.
#include <cmath>

#include "shim_internal.h"

namespace gaia {
namespace {

at::Tensor buffer(gaia_module* m, const gaia_head& h, int i, const char* what) {
  auto it = m->buffers.find(h.buf[i]);
  if (it == m->buffers.end()) {
    throw ShimError(GAIA_ERR_INVALID, std::string("head: no buffer ") + std::to_string(h.buf[i]) + " for " + what);
  }
  return it->second;
}

// rows is x as N x D.
at::Tensor rows(const at::Tensor& x) { return x.dim() == 2 ? x : x.reshape({x.size(0), -1}); }

void checkCols(const at::Tensor& x, const at::Tensor& b, int64_t dim, const char* what) {
  if (x.size(1) != b.size(dim)) {
    throw ShimError(GAIA_ERR_INVALID, std::string(what) + ": the value has " + std::to_string(x.size(1)) +
                                          " features, the buffer " + std::to_string(b.size(dim)));
  }
}

at::Tensor linear(gaia_module* m, const gaia_head& h, at::Tensor x) {
  at::Tensor w = buffer(m, h, 0, "the weight"), b = buffer(m, h, 1, "the bias");
  x = rows(x).to(at::kFloat);
  checkCols(x, w, 1, "linear head");
  if (h.arg[0] != 0) {
    x = at::clamp_max(x, h.arg[1]);
  }
  return at::addmm(b, x, w.t());
}

at::Tensor mahalanobis(gaia_module* m, const gaia_head& h, const at::Tensor& x0) {
  at::Tensor mu = buffer(m, h, 0, "the means"), prec = buffer(m, h, 1, "the precision");
  at::Tensor x = rows(x0).to(at::kDouble);
  checkCols(x, mu, 1, "mahalanobis head");
  // (x - mu)^T P (x - mu) for every class at once: x P x - 2 x P mu + mu P mu.
  at::Tensor xp = at::mm(x, prec);
  at::Tensor a = (xp * x).sum(1, true);
  at::Tensor cross = at::mm(xp, mu.t());
  at::Tensor c = (at::mm(mu, prec) * mu).sum(1).unsqueeze(0);
  return std::get<0>((a - 2 * cross + c).min(1));
}

at::Tensor knn(gaia_module* m, const gaia_head& h, const at::Tensor& x0) {
  at::Tensor bank = buffer(m, h, 0, "the bank");
  at::Tensor x = rows(x0).to(at::kFloat);
  checkCols(x, bank, 1, "knn head");
  int64_t k = static_cast<int64_t>(h.arg[0]);
  if (k < 1 || k > bank.size(0)) {
    throw ShimError(GAIA_ERR_INVALID, "knn head: k = " + std::to_string(k) + " with " + std::to_string(bank.size(0)) +
                                          " bank vectors");
  }
  at::Tensor u64 = x.to(at::kDouble);
  at::Tensor u = (u64 / u64.norm(2, 1, true).clamp_min(1e-12)).to(at::kFloat);
  // For unit vectors ||u - b||^2 = 2 - 2 u.b, so the nearest are the largest
  // products: one product picks k + 8 candidates, whose distances are then
  // summed from their differences, without that formula's cancellation
  // (close neighbours: 2 - 2 u.b loses most of float32's digits).
  int64_t cands = std::min<int64_t>(k + 8, bank.size(0));
  at::Tensor idx = std::get<1>(at::mm(u, bank.t()).topk(cands, 1, true, true));
  at::Tensor cand = bank.index_select(0, idx.reshape({-1})).reshape({x.size(0), cands, x.size(1)});
  at::Tensor dist = (cand - u.unsqueeze(1)).pow_(2).sum(2).to(at::kDouble).sqrt();
  return std::get<0>(dist.sort(1)).select(1, k - 1);
}

at::Tensor residual(gaia_module* m, const gaia_head& h, const at::Tensor& x0) {
  at::Tensor o = buffer(m, h, 0, "the origin"), ns = buffer(m, h, 1, "the residual basis");
  at::Tensor x = rows(x0).to(at::kDouble);
  checkCols(x, ns, 0, "residual head");
  return at::mm(x - o.unsqueeze(0), ns).norm(2, 1);
}

at::Tensor ash(gaia_module* m, const gaia_head& h, const at::Tensor& x0) {
  at::Tensor w = buffer(m, h, 0, "the weight"), b = buffer(m, h, 1, "the bias");
  if (x0.dim() != 4) {
    throw ShimError(GAIA_ERR_INVALID, "ash head: the value is not a feature map N x C x H x W");
  }
  at::Tensor x = x0.to(at::kFloat);
  const int64_t n = x.size(1) * x.size(2) * x.size(3);
  const int64_t k = n - static_cast<int64_t>(std::nearbyint(static_cast<double>(n) * h.arg[1] / 100.0));
  if (k < 1) {
    throw ShimError(GAIA_ERR_INVALID, "ash head: percentile " + std::to_string(h.arg[1]) + " keeps nothing");
  }
  at::Tensor t = x.reshape({x.size(0), n});
  at::Tensor s1 = t.sum(1);
  auto top = t.topk(k, 1);
  at::Tensor kept = std::get<0>(top), idx = std::get<1>(top);
  int variant = static_cast<int>(h.arg[0]);
  at::Tensor pruned = at::zeros_like(t);
  if (variant == 2) {  // b: every kept entry set to sum / k
    pruned.scatter_(1, idx, (s1 / static_cast<double>(k)).unsqueeze(1).expand({t.size(0), k}).contiguous());
  } else {
    pruned.scatter_(1, idx, kept);
    if (variant == 0) {  // s: scaled by exp(sum / sum kept)
      at::Tensor s2 = pruned.sum(1);
      pruned = pruned * at::exp(s1 / s2).unsqueeze(1);
    }
  }
  at::Tensor pooled = pruned.reshape(x.sizes()).mean({2, 3});
  checkCols(pooled, w, 1, "ash head");
  return at::addmm(b, pooled, w.t());
}

at::Tensor kl(gaia_module* m, const gaia_head& h, const at::Tensor& z) {
  at::Tensor logd = buffer(m, h, 0, "the class means");
  at::Tensor lp = at::log_softmax(z.to(at::kDouble), 1);
  checkCols(lp, logd, 1, "kl head");
  // KL(p || d_c) = sum_j p_j log p_j - sum_j p_j log d_cj.
  at::Tensor p = lp.exp();
  at::Tensor negent = (p * lp).sum(1, true);
  return std::get<0>((negent - at::mm(p, logd.t())).min(1));
}

at::Tensor gram(gaia_module* m, const gaia_head& h, const at::Tensor& x0) {
  at::Tensor acc = buffer(m, h, 0, "the accumulator");
  at::Tensor x = rows(x0).to(at::kDouble);
  if (acc.scalar_type() != at::kDouble || acc.dim() != 2 || acc.size(0) != x.size(1) || acc.size(1) != x.size(1)) {
    throw ShimError(GAIA_ERR_INVALID, "gram head: the accumulator is not a " + std::to_string(x.size(1)) + " x " +
                                          std::to_string(x.size(1)) + " float64 buffer");
  }
  acc.addmm_(x.t(), x);
  return at::empty({0}, at::kFloat);
}

}  // namespace

at::Tensor runHead(gaia_module* m, const gaia_head& h, const at::Tensor& x) {
  switch (h.kind) {
    case GAIA_HEAD_LINEAR:
      return linear(m, h, x);
    case GAIA_HEAD_MAHALANOBIS:
      return mahalanobis(m, h, x);
    case GAIA_HEAD_KNN:
      return knn(m, h, x);
    case GAIA_HEAD_RESIDUAL:
      return residual(m, h, x);
    case GAIA_HEAD_ASH:
      return ash(m, h, x);
    case GAIA_HEAD_KL:
      return kl(m, h, x);
    case GAIA_HEAD_GRAM:
      return gram(m, h, x);
  }
  throw ShimError(GAIA_ERR_INVALID, "unknown head " + std::to_string(h.kind));
}

}  // namespace gaia
