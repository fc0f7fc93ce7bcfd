//go:build cgo && !gaia_nolibtorch

// run.cpp: one batch through the tapped forward and its backward passes.
//
// A pass (a loss and the taps it reads) asks autograd for gradients only at
// its earliest taps, those no other tap of the pass is computed from; every
// other tap carries a tensor hook that reduces its gradient the moment the
// engine produces it, so the full gradients are never all alive at once. A
// tap whose hook did not fire is taken by a second autograd::grad, so the
// numbers never depend on the shortcut.
#include <torch/csrc/autograd/autograd.h>
#include <c10/core/DeviceGuard.h>

#include <unordered_map>

#include "shim_internal.h"

namespace gaia {
namespace {

void appendTensors(const c10::IValue& v, std::vector<at::Tensor>& out) {
  if (v.isTensor()) {
    out.push_back(v.toTensor());
  } else if (v.isTuple()) {
    for (const auto& e : v.toTupleRef().elements()) {
      appendTensors(e, out);
    }
  } else if (v.isTensorList()) {
    for (const at::Tensor& t : v.toTensorList().vec()) {
      out.push_back(t);
    }
  } else if (v.isList()) {
    for (const auto& e : v.toListRef()) {
      appendTensors(e, out);
    }
  }
}

// Forward is what the tapped forward returned for one batch.
struct Forward {
  std::vector<at::Tensor> outputs;  // the module's own outputs, flattened
  std::vector<at::Tensor> taps;     // one per module tap
  std::vector<at::Tensor> gates;    // one per gated tap (Tap::gateOutput)
  at::Tensor input;
};

Forward runForward(gaia_module* m, const at::Tensor& x) {
  std::vector<c10::IValue> stack{m->module._ivalue(), x};
  (*m->fn).run(stack);
  if (stack.size() != 1 || !stack[0].isTuple()) {
    throw ShimError(GAIA_ERR_GRAPH, "tapped forward did not return a tuple");
  }
  const auto& elems = stack[0].toTupleRef().elements();
  if (elems.size() != m->numOutputs) {
    throw ShimError(GAIA_ERR_GRAPH, "tapped forward returned the wrong number of values");
  }
  Forward f;
  f.input = x;
  appendTensors(elems[0], f.outputs);
  if (f.outputs.empty()) {
    throw ShimError(GAIA_ERR_GRAPH, "forward returned no tensor");
  }
  for (size_t i = 1; i < elems.size(); i++) {
    if (i <= m->taps.size()) {
      f.taps.push_back(elems[i].toTensor());
    } else {
      f.gates.push_back(elems[i].toTensor());
    }
  }
  return f;
}

at::Tensor tapValue(const Forward& f, int32_t idx) {
  if (idx == GAIA_TAP_INPUT) {
    return f.input;
  }
  if (idx < 0 || static_cast<size_t>(idx) >= f.taps.size()) {
    throw ShimError(GAIA_ERR_INVALID, "tap index " + std::to_string(idx) + " out of range");
  }
  return f.taps[idx];
}

at::Tensor lossOf(const Forward& f, const gaia_pass& p) {
  const at::Tensor& z = f.outputs[0];
  switch (p.loss) {
    case GAIA_LOSS_MAX_LOGIT:
      return std::get<0>(z.max(1)).sum();
    case GAIA_LOSS_SUM_LOG_SOFTMAX:
      return at::log_softmax(z, 1).sum();
    case GAIA_LOSS_SUM_TAP:
      if (p.loss_tap < 0) {
        throw ShimError(GAIA_ERR_INVALID, "loss tap " + std::to_string(p.loss_tap) + " out of range");
      }
      return tapValue(f, p.loss_tap).sum();
    case GAIA_LOSS_ODIN: {
      if (!(p.loss_param > 0)) {
        throw ShimError(GAIA_ERR_INVALID, "ODIN temperature must be positive");
      }
      at::Tensor ls = at::log_softmax(z / p.loss_param, 1);
      at::Tensor pred = std::get<1>(z.max(1)).unsqueeze(1);
      return -ls.gather(1, pred).sum();
    }
    case GAIA_LOSS_UNIFORM_CE:
      return -at::log_softmax(z, 1).mean(1).sum();
    default:
      throw ShimError(GAIA_ERR_INVALID, "unknown loss " + std::to_string(p.loss));
  }
}

void checkShape(const int64_t* shape) {
  for (int i = 0; i < 4; i++) {
    if (shape[i] <= 0) {
      throw ShimError(GAIA_ERR_INVALID, "input shape " + std::to_string(shape[0]) + "x" + std::to_string(shape[1]) +
                                            "x" + std::to_string(shape[2]) + "x" + std::to_string(shape[3]) +
                                            " has an empty axis");
    }
  }
}

// HookState collects reduced gradients from tensor hooks during one pass:
// begin names the pass's reduction and taps, capture is what a hook calls,
// take hands a tap's reduction over.
struct HookState {
  bool active = false;
  int reduce = 0;
  std::unordered_map<int32_t, at::Tensor> got;
  std::unordered_map<int32_t, bool> want;

  void begin(int r, const std::vector<int32_t>& taps) {
    active = true;
    reduce = r;
    got.clear();
    want.clear();
    for (int32_t t : taps) {
      want[t] = true;
    }
  }
  void capture(int32_t tap, const at::Tensor& g) {
    if (active && want.count(tap) != 0) {
      got[tap] = reduceGrad(g, reduce);
    }
  }
  at::Tensor take(int32_t tap) {
    auto it = got.find(tap);
    return it == got.end() ? at::Tensor() : it->second;
  }
  void end() {
    active = false;
    got.clear();
  }
};

at::Tensor makeInput(gaia_module* m, const float* input, const int64_t* shape, bool needGrad) {
  checkShape(shape);
  if (m->inputChannels > 0 && shape[1] != m->inputChannels) {
    throw ShimError(GAIA_ERR_INVALID, "input has " + std::to_string(shape[1]) + " channels; the model expects " +
                                          std::to_string(m->inputChannels));
  }
  at::Tensor x = torch::from_blob(const_cast<float*>(input), {shape[0], shape[1], shape[2], shape[3]},
                                  torch::TensorOptions().dtype(at::kFloat))
                     .to(m->device, at::kFloat, /*non_blocking=*/false, /*copy=*/true);
  if (needGrad) {
    x.requires_grad_(true);
  }
  return x;
}

// Batch is one call's forward and the state its passes share.
struct Batch {
  gaia_module* m;
  const RunRequest& req;
  Forward f;
  bool early;  // reduce in hooks
  std::shared_ptr<HookState> state = std::make_shared<HookState>();

  std::vector<int32_t> tapsOf(const gaia_pass& ps) const {
    return std::vector<int32_t>(req.tapList + ps.taps_offset, req.tapList + ps.taps_offset + ps.n_taps);
  }

  // Hooks on every tap a gradient pass reads: each reduces its gradient as
  // autograd produces it, for the pass that state->begin named.
  void hookTaps() {
    std::vector<bool> hooked(f.taps.size(), false);
    auto state = this->state;
    for (int32_t p = 0; p < req.nPasses; p++) {
      const gaia_pass& ps = req.passes[p];
      if (ps.loss == GAIA_LOSS_GATE) {
        continue;
      }
      for (int32_t t : tapsOf(ps)) {
        if (t >= 0 && static_cast<size_t>(t) < f.taps.size() && !hooked[t]) {
          hooked[t] = true;
          f.taps[t].register_hook([state, t](const at::Tensor& g) { state->capture(t, g); });
        }
      }
    }
  }

  // gatePass reduces each tap's ReLU mask, with no backward.
  void gatePass(const gaia_pass& ps, std::vector<at::Tensor>& out) {
    for (int32_t t : tapsOf(ps)) {
      tapValue(f, t);  // range check
      if (t < 0 || m->taps[t].gateOutput < 0) {
        throw ShimError(GAIA_ERR_INVALID, "tap " + (t < 0 ? std::to_string(t) : m->taps[t].name) +
                                              " has no ReLU gate (see the taps' gated column)");
      }
      out.push_back(reduceGrad(f.gates[m->taps[t].gateOutput].gt(0).to(at::kFloat), ps.reduce));
    }
  }

  // paramsPass: one vector, the L1 norm of each parameter's gradient.
  void paramsPass(const gaia_pass& ps, std::vector<at::Tensor>& out) {
    std::vector<at::Tensor> params;
    for (const at::Tensor& p : m->module.parameters()) {
      if (p.requires_grad()) {
        params.push_back(p);
      }
    }
    if (params.empty()) {
      throw ShimError(GAIA_ERR_INVALID, "the module has no parameter that requires a gradient");
    }
    auto grads = torch::autograd::grad({lossOf(f, ps)}, params, {}, true, false, true);
    at::Tensor norms = at::zeros({static_cast<int64_t>(grads.size())}, at::kFloat);
    for (size_t i = 0; i < grads.size(); i++) {
      if (grads[i].defined()) {
        norms[static_cast<int64_t>(i)] = grads[i].abs().sum().item<float>();
      }
    }
    out.push_back(norms);
  }

  // perturbForward: ODIN's step against the sign of the input gradient,
  // then a second forward without gradients; hands back its logits.
  void perturbForward(const gaia_pass& ps, std::vector<at::Tensor>& out) {
    std::vector<int32_t> taps = tapsOf(ps);
    if (taps.size() != 1 || taps[0] != GAIA_TAP_INPUT) {
      throw ShimError(GAIA_ERR_INVALID, "a perturb-and-forward pass reads the input tap alone");
    }
    const int64_t c = f.input.size(1);
    if (ps.n_params != c || ps.params_offset < 0 || ps.params_offset + ps.n_params > req.nParams) {
      throw ShimError(GAIA_ERR_INVALID, "a perturb-and-forward pass needs one step per input channel (" +
                                            std::to_string(c) + "), has " + std::to_string(ps.n_params));
    }
    at::Tensor loss = lossOf(f, ps);
    auto grads = torch::autograd::grad({loss}, {f.input}, {}, /*retain_graph=*/true, false, /*allow_unused=*/true);
    at::Tensor x0 = f.input.detach();
    at::Tensor g = grads[0].defined() ? grads[0] : at::zeros_like(x0);
    std::vector<float> steps(req.params + ps.params_offset, req.params + ps.params_offset + ps.n_params);
    at::Tensor step = torch::tensor(steps, torch::TensorOptions().dtype(at::kFloat)).to(x0.device()).view({1, c, 1, 1});
    at::Tensor xp = at::where(g.ge(0), x0 - step, x0 + step);
    torch::NoGradGuard noGrad;
    out.push_back(runForward(m, xp).outputs[0]);
  }

  // gradientPass: the pass's loss differentiated at its earliest taps, the
  // later ones read from their hooks (or taken again when a hook did not
  // fire), each reduced.
  void gradientPass(const gaia_pass& ps, std::vector<at::Tensor>& out) {
    std::vector<int32_t> taps = tapsOf(ps);
    for (int32_t t : taps) {
      tapValue(f, t);  // range check
    }
    std::vector<bool> root(taps.size(), true);
    if (early) {
      for (size_t i = 0; i < taps.size(); i++) {
        for (size_t j = 0; j < taps.size() && root[i]; j++) {
          if (i != j && taps[i] >= 0 && taps[j] >= 0 && taps[i] != taps[j] && m->upstream[taps[i]][taps[j]]) {
            root[i] = false;
          }
        }
      }
    }
    std::vector<at::Tensor> inputs;
    std::vector<size_t> rootAt;
    for (size_t i = 0; i < taps.size(); i++) {
      if (root[i]) {
        inputs.push_back(tapValue(f, taps[i]));
        rootAt.push_back(i);
      }
    }
    state->begin(ps.reduce, taps);
    at::Tensor loss = lossOf(f, ps);
    // The graph is kept until the call ends (a tap whose hook did not fire
    // is taken again below); it is freed with the forward.
    auto grads = torch::autograd::grad({loss}, inputs, /*grad_outputs=*/{}, /*retain_graph=*/true,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    std::vector<at::Tensor> reduced(taps.size());
    for (size_t k = 0; k < rootAt.size(); k++) {
      at::Tensor g = grads[k].defined() ? grads[k] : at::zeros_like(inputs[k]);
      reduced[rootAt[k]] = reduceGrad(g, ps.reduce);
    }
    std::vector<int32_t> missing;
    for (size_t i = 0; i < taps.size(); i++) {
      if (!root[i]) {
        reduced[i] = state->take(taps[i]);
        if (!reduced[i].defined()) {
          missing.push_back(static_cast<int32_t>(i));
        }
      }
    }
    state->end();
    if (!missing.empty()) {
      std::vector<at::Tensor> more;
      for (int32_t i : missing) {
        more.push_back(tapValue(f, taps[i]));
      }
      auto g2 = torch::autograd::grad({loss}, more, {}, true, false, true);
      for (size_t k = 0; k < missing.size(); k++) {
        at::Tensor g = g2[k].defined() ? g2[k] : at::zeros_like(more[k]);
        reduced[missing[k]] = reduceGrad(g, ps.reduce);
      }
    }
    out.insert(out.end(), reduced.begin(), reduced.end());
  }
};

}  // namespace

RunResult runBatch(gaia_module* m, const RunRequest& req) {
  c10::DeviceGuard deviceGuard(m->device);
  bool needGrad = false;
  for (int32_t p = 0; p < req.nPasses; p++) {
    const gaia_pass& ps = req.passes[p];
    needGrad = needGrad || ps.loss != GAIA_LOSS_GATE;
    if (ps.n_taps < 0 || ps.taps_offset < 0 || ps.taps_offset + ps.n_taps > req.nTapList) {
      throw ShimError(GAIA_ERR_INVALID, "pass " + std::to_string(p) + ": tap list out of range");
    }
    if (ps.n_params < 0 || ps.params_offset < 0 || ps.params_offset + ps.n_params > req.nParams) {
      throw ShimError(GAIA_ERR_INVALID, "pass " + std::to_string(p) + ": parameter list out of range");
    }
  }
  torch::AutoGradMode gradMode(needGrad);
  Batch b{m, req, runForward(m, makeInput(m, req.input, req.shape, needGrad)), (req.flags & GAIA_RUN_REDUCE_AFTER) == 0};
  Forward& f = b.f;
  if (f.outputs[0].dim() != 2) {
    throw ShimError(GAIA_ERR_GRAPH, "the first output has " + std::to_string(f.outputs[0].dim()) +
                                        " dimensions; expected logits N x K");
  }
  RunResult r;
  r.tensors.assign(f.outputs.begin(), f.outputs.end());
  r.nOutputs = static_cast<int32_t>(f.outputs.size());
  for (int32_t i = 0; i < req.nValues; i++) {
    at::Tensor v = tapValue(f, req.values[i]);
    // A 1x1 convolution head's input is N x C x 1 x 1: hand it back as N x C.
    if (req.values[i] >= 0 && m->taps[req.values[i]].kind == GAIA_TAP_CLASSIFIER_INPUT && v.dim() > 2) {
      v = v.flatten(1);
    }
    r.tensors.push_back(v);
  }
  r.nValues = req.nValues;
  if (b.early && needGrad) {
    b.hookTaps();
  }
  for (int32_t p = 0; p < req.nPasses; p++) {
    const gaia_pass& ps = req.passes[p];
    size_t before = r.tensors.size();
    if (ps.loss == GAIA_LOSS_GATE) {
      b.gatePass(ps, r.tensors);
    } else if (ps.n_taps == 1 && req.tapList[ps.taps_offset] == GAIA_TAP_PARAMS) {
      b.paramsPass(ps, r.tensors);
    } else if (ps.reduce == GAIA_REDUCE_PERTURB_FORWARD) {
      b.perturbForward(ps, r.tensors);
    } else {
      b.gradientPass(ps, r.tensors);
    }
    r.passCounts.push_back(static_cast<int32_t>(r.tensors.size() - before));
  }
  if (req.nHeads > 0) {
    torch::NoGradGuard noGrad;
    for (int32_t i = 0; i < req.nHeads; i++) {
      const gaia_head& h = req.heads[i];
      at::Tensor x = h.tap == GAIA_TAP_LOGITS ? f.outputs[0] : tapValue(f, h.tap);
      r.tensors.push_back(runHead(m, h, x.detach()));
    }
    r.nHeads = req.nHeads;
  }
  return r;
}

std::vector<std::vector<int64_t>> tapShapes(gaia_module* m, const int64_t* shape) {
  c10::DeviceGuard deviceGuard(m->device);
  torch::NoGradGuard noGrad;
  checkShape(shape);
  std::vector<float> zeros(static_cast<size_t>(shape[0] * shape[1] * shape[2] * shape[3]), 0.0f);
  Forward f = runForward(m, makeInput(m, zeros.data(), shape, false));
  std::vector<std::vector<int64_t>> out;
  for (const at::Tensor& t : f.taps) {
    out.emplace_back(t.sizes().begin(), t.sizes().end());
  }
  return out;
}

}  // namespace gaia
