// shim.cpp: LibTorch behind the C ABI of shim.h.
//
// The tap machinery: the module's forward graph is copied and inlined, the
// module's non-tensor attributes (training flags, options) are folded in as
// constants so that control flow on them disappears, and then every
// normalization output (or, without any, every ReLU input), the final feature
// map before global pooling and the classifier input are found and added to
// the graph's outputs. Where a tap value is later mutated in place (relu_,
// add_), a copy is inserted right after it and every later use reads the
// copy, so the tap keeps its own value and its gradient is the gradient with
// respect to that value (before the ReLU), as eager forward hooks see it.
#include "shim.h"

#include <torch/script.h>
#include <torch/version.h>
#include <torch/cuda.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/alias_analysis.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>

#ifdef GAIA_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include "gaia_cuda.h"
#endif

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <unordered_map>
#include <sstream>
#include <string>
#include <vector>

namespace jit = torch::jit;

namespace {

char* dup_string(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p != nullptr) {
    std::memcpy(p, s.c_str(), s.size() + 1);
  }
  return p;
}

int fail(gaia_status* st, int code, const std::string& msg) {
  if (st != nullptr) {
    st->code = code;
    st->msg = dup_string(msg);
  }
  return code;
}

// An error the shim raises itself, carrying its status code.
struct ShimError : std::runtime_error {
  int code;
  ShimError(int c, const std::string& m) : std::runtime_error(m), code(c) {}
};

// guarded runs f and turns every exception into a status.
template <typename F>
int guarded(gaia_status* st, F&& f) {
  try {
    f();
    return GAIA_OK;
  } catch (const ShimError& e) {
    return fail(st, e.code, e.what());
  } catch (const c10::Error& e) {
    return fail(st, GAIA_ERR_TORCH, e.what_without_backtrace());
  } catch (const std::exception& e) {
    return fail(st, GAIA_ERR_STD, e.what());
  } catch (...) {
    return fail(st, GAIA_ERR_UNKNOWN, "unknown C++ exception");
  }
}

struct Tap {
  std::string name;
  std::string kind;  // batch_norm, group_norm, relu_input, feature_map, classifier_input
  int64_t channels = -1;
  jit::Value* value = nullptr;  // during graph rewriting only
  jit::Value* gate = nullptr;   // the input of the ReLU that gates it (rewriting only)
  int gateOutput = -1;          // its index among the gate outputs, -1 without one
};

// attrPath names a value reached from the module by prim::GetAttr chains
// ("layer1.0.bn1.weight"); nullopt for anything else.
std::optional<std::string> attrPath(const jit::Value* v, const jit::Value* self) {
  if (v == self) {
    return std::string();
  }
  const jit::Node* n = v->node();
  if (n->kind() != c10::prim::GetAttr) {
    return std::nullopt;
  }
  auto parent = attrPath(n->input(0), self);
  if (!parent) {
    return std::nullopt;
  }
  const std::string& name = n->s(c10::attr::name);
  return parent->empty() ? name : *parent + "." + name;
}

// attrValue resolves such a chain on the module object itself.
std::optional<c10::IValue> attrValue(const jit::Value* v, const jit::Value* self,
                                     const c10::IValue& selfValue) {
  if (v == self) {
    return selfValue;
  }
  const jit::Node* n = v->node();
  if (n->kind() != c10::prim::GetAttr) {
    return std::nullopt;
  }
  auto parent = attrValue(n->input(0), self, selfValue);
  if (!parent || !parent->isObject()) {
    return std::nullopt;
  }
  auto obj = parent->toObject();
  const std::string& name = n->s(c10::attr::name);
  if (!obj->type()->hasAttribute(name)) {
    return std::nullopt;
  }
  return obj->getAttr(name);
}

std::string stripSuffix(const std::string& s, const std::string& suffix) {
  if (s.size() > suffix.size() &&
      s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return s.substr(0, s.size() - suffix.size() - 1);  // also the dot
  }
  return s;
}

// specializeAttributes folds every non-tensor attribute read (booleans such
// as `training`, numbers, strings, None) into a constant, so that control
// flow on them can be removed by constant propagation. The module is used in
// eval mode only, and the shim never changes its attributes.
void specializeAttributes(jit::Block* b, jit::Graph& g, const jit::Value* self,
                          const c10::IValue& selfValue) {
  for (auto it = b->nodes().begin(); it != b->nodes().end(); ++it) {
    jit::Node* n = *it;
    for (jit::Block* sub : n->blocks()) {
      specializeAttributes(sub, g, self, selfValue);
    }
    if (n->kind() != c10::prim::GetAttr) {
      continue;
    }
    auto v = attrValue(n->output(), self, selfValue);
    if (!v) {
      continue;
    }
    if (v->isBool() || v->isInt() || v->isDouble() || v->isNone() || v->isString()) {
      jit::WithInsertPoint guard(n);
      jit::Value* c = g.insertConstant(*v);
      n->output()->replaceAllUsesWith(c);
    }
  }
}

bool isNormKind(c10::Symbol k) {
  return k == c10::aten::batch_norm || k == c10::aten::group_norm ||
         k == c10::aten::instance_norm;
}

bool isReluKind(c10::Symbol k) { return k == c10::aten::relu || k == c10::aten::relu_; }

// countNested counts normalization nodes inside control-flow blocks.
int countNested(jit::Block* b, bool top) {
  int n = 0;
  for (jit::Node* node : b->nodes()) {
    if (!top && isNormKind(node->kind())) {
      n++;
    }
    for (jit::Block* sub : node->blocks()) {
      n += countNested(sub, false);
    }
  }
  return n;
}

}  // namespace

struct gaia_module {
  jit::Module module;
  c10::Device device{c10::kCPU};
  std::shared_ptr<jit::Graph> graph;
  std::unique_ptr<jit::GraphFunction> fn;
  std::vector<Tap> taps;
  std::vector<std::string> warnings;
  int64_t inputChannels = -1;
  size_t numOutputs = 1;  // 1 plus the number of taps, in the returned tuple
  // upstream[i][j]: tap j is computed before tap i and tap i is computed from it.
  std::vector<std::vector<bool>> upstream;
};

namespace {

c10::Device parseDevice(const std::string& s) {
  if (s.empty() || s == "auto") {
    return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  }
  c10::Device d(s);  // throws c10::Error on a malformed name
  if (d.is_cuda()) {
    int64_t count = static_cast<int64_t>(torch::cuda::device_count());
    if (count == 0) {
      throw ShimError(GAIA_ERR_INVALID, "device " + s + ": CUDA is not available in this LibTorch build or on this machine");
    }
    if (!d.has_index()) {
      d = c10::Device(c10::kCUDA, 0);
    }
    if (d.index() >= count) {
      throw ShimError(GAIA_ERR_INVALID, "device " + s + ": only " + std::to_string(count) + " CUDA device(s)");
    }
  } else if (!d.is_cpu()) {
    throw ShimError(GAIA_ERR_INVALID, "device " + s + ": only cpu and cuda are supported");
  }
  return d;
}

using Bits = std::vector<bool>;

void orInto(Bits& dst, const Bits& src) {
  for (size_t i = 0; i < src.size(); i++) {
    if (src[i]) {
      dst[i] = true;
    }
  }
}

// collectInputs unions the bits of every value a node reads, inside its blocks too.
void collectInputs(const jit::Node* n, const std::unordered_map<const jit::Value*, Bits>& bits, Bits& acc) {
  for (const jit::Value* v : n->inputs()) {
    auto it = bits.find(v);
    if (it != bits.end()) {
      orInto(acc, it->second);
    }
  }
  for (const jit::Block* b : n->blocks()) {
    for (const jit::Node* inner : b->nodes()) {
      collectInputs(inner, bits, acc);
    }
    for (const jit::Value* v : b->outputs()) {
      auto it = bits.find(v);
      if (it != bits.end()) {
        orInto(acc, it->second);
      }
    }
  }
}

// computeUpstream finds, by data flow over the graph, which taps each tap is
// computed from. A pass then takes gradients only at its earliest taps and
// reads the later ones from hooks as autograd reaches them.
void computeUpstream(jit::Graph& g, const std::vector<Tap>& taps, std::vector<Bits>& upstream) {
  size_t n = taps.size();
  std::unordered_map<const jit::Value*, Bits> bits;
  std::unordered_map<const jit::Value*, std::vector<size_t>> tapOf;
  for (size_t i = 0; i < n; i++) {
    tapOf[taps[i].value].push_back(i);
  }
  upstream.assign(n, Bits(n, false));
  for (jit::Node* node : g.block()->nodes()) {
    Bits acc(n, false);
    collectInputs(node, bits, acc);
    for (const jit::Value* out : node->outputs()) {
      Bits b = acc;
      auto it = tapOf.find(out);
      if (it != tapOf.end()) {
        for (size_t i : it->second) {
          upstream[i] = acc;
          b[i] = true;
        }
      }
      bits[out] = std::move(b);
    }
  }
}

bool isMaxPool(c10::Symbol k) {
  return k == c10::aten::max_pool2d || k == c10::aten::max_pool2d_with_indices;
}

// gateOf finds the ReLU that gates a tap: the tap's only use is a ReLU, or an
// addition whose only use is a ReLU. It returns that ReLU's input, or null,
// also when the ReLU's output feeds max-pooling (which zeroes gradients of
// its own).
jit::Value* gateOf(jit::Value* v) {
  if (v->uses().size() != 1) {
    return nullptr;
  }
  jit::Node* u = v->uses()[0].user;
  jit::Value* g = v;
  if (u->kind() == c10::aten::add || u->kind() == c10::aten::add_) {
    g = u->output();
    if (g->uses().size() != 1) {
      return nullptr;
    }
    u = g->uses()[0].user;
  }
  if (!isReluKind(u->kind())) {
    return nullptr;
  }
  for (const auto& use : u->output()->uses()) {
    if (isMaxPool(use.user->kind())) {
      return nullptr;
    }
  }
  return g;
}

// buildTappedGraph rewrites the module's forward as described at the top.
void buildTappedGraph(gaia_module* m) {
  jit::Method method = m->module.get_method("forward");
  std::shared_ptr<jit::Graph> g = jit::toGraphFunction(method.function()).graph()->copy();
  jit::Inline(*g);
  if (g->inputs().size() != 2) {
    throw ShimError(GAIA_ERR_GRAPH,
                    "forward takes " + std::to_string(g->inputs().size() - 1) +
                        " inputs; expected exactly one image batch");
  }
  jit::Value* self = g->inputs()[0];
  c10::IValue selfValue = m->module._ivalue();
  specializeAttributes(g->block(), *g, self, selfValue);
  jit::ConstantPropagation(g);
  jit::EliminateDeadCode(g);

  std::vector<Tap> taps;
  // Normalization outputs at the top level of the graph.
  int counter = 0;
  jit::Node* firstConv = nullptr;
  jit::Node* lastConv = nullptr;
  jit::Node* classifier = nullptr;
  for (jit::Node* n : g->block()->nodes()) {
    c10::Symbol k = n->kind();
    if (k == c10::aten::_convolution || k == c10::aten::conv2d || k == c10::aten::convolution) {
      if (firstConv == nullptr) {
        firstConv = n;
      }
      lastConv = n;
    }
    if (k == c10::aten::linear || k == c10::aten::addmm || k == c10::aten::matmul) {
      classifier = n;
    }
    if (!isNormKind(k)) {
      continue;
    }
    Tap t;
    t.kind = k.toUnqualString();
    // The affine weight, else the running mean, names the layer.
    int weightIdx = (k == c10::aten::group_norm) ? 2 : 1;
    std::vector<int> candidates = {weightIdx};
    if (k == c10::aten::batch_norm || k == c10::aten::instance_norm) {
      candidates.push_back(3);
    }
    for (int idx : candidates) {
      if (idx >= static_cast<int>(n->inputs().size())) {
        continue;
      }
      auto path = attrPath(n->input(idx), self);
      auto val = attrValue(n->input(idx), self, selfValue);
      if (path && val && val->isTensor()) {
        std::string suffix = n->input(idx)->node()->s(c10::attr::name);
        t.name = stripSuffix(*path, suffix);
        t.channels = val->toTensor().size(0);
        break;
      }
    }
    if (t.name.empty()) {
      t.name = t.kind + "#" + std::to_string(counter);
    }
    if (k == c10::aten::group_norm && t.channels < 0) {
      m->warnings.push_back("group_norm " + t.name + " has no affine weight; channels unknown until a forward");
    }
    t.value = n->output();
    taps.push_back(t);
    counter++;
  }
  int nested = countNested(g->block(), true);
  if (nested > 0) {
    m->warnings.push_back(std::to_string(nested) +
                          " normalization layer(s) inside control flow (prim::If/prim::Loop) cannot be tapped and were left out");
  }
  if (firstConv != nullptr) {
    auto val = attrValue(firstConv->input(1), self, selfValue);
    if (val && val->isTensor() && val->toTensor().dim() >= 2) {
      m->inputChannels = val->toTensor().size(1);
    }
  }
  // Without normalization layers, the inputs of the ReLUs are the taps.
  if (taps.empty()) {
    int r = 0;
    for (jit::Node* n : g->block()->nodes()) {
      if (!isReluKind(n->kind())) {
        continue;
      }
      Tap t;
      t.kind = "relu_input";
      jit::Node* p = n->input(0)->node();
      if (p->inputs().size() > 1) {
        auto path = attrPath(p->input(1), self);
        auto val = attrValue(p->input(1), self, selfValue);
        if (path && val && val->isTensor()) {
          t.name = stripSuffix(*path, p->input(1)->node()->s(c10::attr::name)) + ":relu_input";
          t.channels = val->toTensor().size(0);
        }
      }
      if (t.name.empty()) {
        t.name = "relu#" + std::to_string(r);
      }
      t.value = n->input(0);
      taps.push_back(t);
      r++;
    }
  }
  if (taps.empty()) {
    throw ShimError(GAIA_ERR_GRAPH,
                    "no taps: the forward graph has no aten::batch_norm, aten::group_norm or aten::relu at its top level");
  }
  // A 1x1 convolution on a globally pooled map is a classifier too (BiT's
  // head): the last convolution, when its input comes from global pooling.
  bool convHead = false;
  if (classifier == nullptr && lastConv != nullptr) {
    jit::Value* v = lastConv->input(0);
    while (v->node()->kind() == c10::aten::contiguous || v->node()->kind() == c10::aten::dropout ||
           v->node()->kind() == c10::aten::feature_dropout) {
      v = v->node()->input(0);
    }
    c10::Symbol pk = v->node()->kind();
    auto w = attrValue(lastConv->input(1), self, selfValue);
    bool oneByOne = w && w->isTensor() && w->toTensor().dim() == 4 && w->toTensor().size(2) == 1 &&
                    w->toTensor().size(3) == 1;
    if (oneByOne &&
        (pk == c10::aten::adaptive_avg_pool2d || pk == c10::aten::mean || pk == c10::aten::adaptive_max_pool2d)) {
      classifier = lastConv;
      convHead = true;
    }
  }
  // The classifier input h and the final feature map F before global pooling.
  if (classifier == nullptr) {
    m->warnings.push_back("no classifier found (expected aten::linear, aten::addmm, aten::matmul, or a 1x1 convolution on a globally pooled map): no feature_map or classifier_input taps");
  } else {
    jit::Value* h = classifier->kind() == c10::aten::addmm ? classifier->input(1) : classifier->input(0);
    jit::Value* weight = classifier->kind() == c10::aten::addmm ? nullptr : classifier->input(1);
    Tap th;
    th.kind = "classifier_input";
    th.value = h;
    std::string clsName = "classifier";
    if (weight != nullptr) {
      auto path = attrPath(weight, self);
      auto val = attrValue(weight, self, selfValue);
      if (path && val && val->isTensor() && val->toTensor().dim() == 2) {
        clsName = stripSuffix(*path, weight->node()->s(c10::attr::name));
        th.channels = val->toTensor().size(1);
      } else if (convHead && path && val && val->isTensor()) {
        clsName = stripSuffix(*path, weight->node()->s(c10::attr::name));
        th.channels = val->toTensor().size(1);
      }
    }
    th.name = clsName + ":input";
    // Walk back through reshapes to the global pooling.
    jit::Value* v = h;
    for (;;) {
      c10::Symbol k = v->node()->kind();
      if (k == c10::aten::flatten || k == c10::aten::view || k == c10::aten::reshape ||
          k == c10::aten::squeeze || k == c10::aten::dropout || k == c10::aten::feature_dropout ||
          k == c10::aten::contiguous) {
        v = v->node()->input(0);
        continue;
      }
      break;
    }
    c10::Symbol pk = v->node()->kind();
    if (pk == c10::aten::adaptive_avg_pool2d || pk == c10::aten::avg_pool2d ||
        pk == c10::aten::mean || pk == c10::aten::adaptive_max_pool2d ||
        pk == c10::aten::max_pool2d) {
      Tap tf;
      tf.kind = "feature_map";
      tf.name = "feature_map";
      tf.channels = th.channels;
      tf.value = v->node()->input(0);
      taps.push_back(tf);
    } else {
      m->warnings.push_back(std::string("no global pooling before the classifier (found ") +
                            pk.toQualString() + "): no feature_map tap");
    }
    taps.push_back(th);
  }

  // Gates, found before copies change the uses.
  for (auto& t : taps) {
    if (t.kind == "batch_norm" || t.kind == "group_norm" || t.kind == "instance_norm") {
      t.gate = gateOf(t.value);
    }
  }
  // A tap must keep its own value. Where its only use is an in-place ReLU or
  // addition, that op becomes its out-of-place form (no extra pass over the
  // data); any other tap that is still written to later gets a copy, and
  // every later use reads the copy.
  {
    auto remap = [&](jit::Value* from, jit::Value* to) {
      for (auto& t : taps) {
        if (t.value == from) {
          t.value = to;
        }
        if (t.gate == from) {
          t.gate = to;
        }
      }
    };
    for (auto& t : taps) {
      jit::Value* v = t.value;
      if (v->uses().size() != 1) {
        continue;
      }
      jit::Node* u = v->uses()[0].user;
      c10::Symbol functional;
      if (u->kind() == c10::aten::relu_) {
        functional = c10::aten::relu;
      } else if (u->kind() == c10::aten::add_) {
        functional = c10::aten::add;
      } else {
        continue;
      }
      if (u->input(0) != v || u->outputs().size() != 1) {
        continue;
      }
      jit::Node* f = g->create(functional, u->inputs(), 1);
      f->insertAfter(u);
      f->output()->setType(u->output()->type());
      u->output()->replaceAllUsesWith(f->output());
      remap(u->output(), f->output());
      u->destroy();
    }
    jit::AliasDb aliasDb(g);
    std::vector<bool> mutated;
    for (auto& t : taps) {
      mutated.push_back(aliasDb.hasWriters(t.value));
    }
    for (size_t i = 0; i < taps.size(); i++) {
      if (!mutated[i]) {
        continue;
      }
      jit::Value* v = taps[i].value;
      jit::Node* after = v->node();
      jit::WithInsertPoint guard(after->next());
      jit::Value* copy = g->insert(c10::aten::clone, {v});
      v->replaceAllUsesAfterNodeWith(copy->node(), copy);
    }
  }
  // Return (original output, tap values...).
  {
    jit::WithInsertPoint guard(g->return_node());
    std::vector<jit::Value*> outs;
    outs.push_back(g->outputs()[0]);
    for (auto& t : taps) {
      outs.push_back(t.value);
    }
    int gates = 0;
    for (auto& t : taps) {
      if (t.gate != nullptr) {
        t.gateOutput = gates++;
        outs.push_back(t.gate);
      }
    }
    jit::Value* tuple = g->insertNode(g->createTuple(outs))->output();
    while (!g->outputs().empty()) {
      g->eraseOutput(0);
    }
    g->registerOutput(tuple);
  }
  computeUpstream(*g, taps, m->upstream);
  size_t gates = 0;
  for (auto& t : taps) {
    t.value = nullptr;
    t.gate = nullptr;
    gates += t.gateOutput >= 0 ? 1 : 0;
  }
  m->numOutputs = 1 + taps.size() + gates;
  m->taps = std::move(taps);
  m->graph = g;
  m->fn = std::make_unique<jit::GraphFunction>("gaia_tapped_forward", g, nullptr,
                                               jit::ExecutorExecutionMode::SIMPLE);
}

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

void toResult(const at::Tensor& t0, gaia_tensor* out) {
  at::Tensor t = t0.detach().to(at::kCPU, at::kFloat).contiguous();
  if (t.dim() > 8) {
    throw ShimError(GAIA_ERR_INVALID, "tensor of more than 8 dimensions");
  }
  out->ndim = static_cast<int32_t>(t.dim());
  for (int64_t i = 0; i < t.dim(); i++) {
    out->shape[i] = t.size(i);
  }
  size_t bytes = static_cast<size_t>(t.numel()) * sizeof(float);
  out->data = static_cast<float*>(std::malloc(bytes > 0 ? bytes : 1));
  if (out->data == nullptr) {
    throw ShimError(GAIA_ERR_STD, "out of memory copying a result");
  }
  if (bytes > 0) {
    std::memcpy(out->data, t.data_ptr<float>(), bytes);
  }
}

at::Tensor as4d(const at::Tensor& g) {
  if (g.dim() == 4) {
    return g;
  }
  if (g.dim() == 2) {
    return g.unsqueeze(2).unsqueeze(3);
  }
  if (g.dim() == 3) {
    return g.unsqueeze(3);
  }
  throw ShimError(GAIA_ERR_INVALID, "cannot reduce a gradient of " + std::to_string(g.dim()) + " dimensions per channel");
}

#ifdef GAIA_WITH_CUDA
void checkCuda(int rc, const char* msg) {
  if (rc != 0) {
    throw ShimError(GAIA_ERR_TORCH, msg);
  }
}

// reduceGradCUDA runs the fused kernels of cuda/ on LibTorch's current stream.
at::Tensor reduceGradCUDA(const at::Tensor& g0, int reduce) {
  at::Tensor g = as4d(g0);
  int64_t n = g.size(0), c = g.size(1), h = g.size(2), w = g.size(3);
  int64_t strides[4] = {g.stride(0), g.stride(1), g.stride(2), g.stride(3)};
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream(g.device().index()).stream();
  char err[256] = {0};
  at::Tensor mean = at::empty({n, c}, g.options());
  at::Tensor nonzero = at::empty({n, c}, g.options());
  checkCuda(gaia_cuda_channel_stats(g.data_ptr<float>(), n, c, h, w, strides, mean.data_ptr<float>(),
                                    nonzero.data_ptr<float>(), stream, err, sizeof err),
            err);
  if (reduce == GAIA_REDUCE_CHANNEL_MEAN) {
    return mean;
  }
  if (reduce == GAIA_REDUCE_CHANNEL_NONZERO) {
    return nonzero;
  }
  at::Tensor out = at::empty({3, n}, g.options());
  checkCuda(gaia_cuda_per_sample(mean.data_ptr<float>(), nonzero.data_ptr<float>(), n, c, out.data_ptr<float>(),
                                 stream, err, sizeof err),
            err);
  switch (reduce) {
    case GAIA_REDUCE_SUMSQ_NONZERO:
      return out[0];
    case GAIA_REDUCE_SUMSQ_MEAN:
      return out[1];
    default:
      return out[2];
  }
}
#endif

// reduceGradCPU is the CPU twin of the CUDA kernels: one pass over each
// (n, c) plane, in parallel over planes.
at::Tensor reduceGradCPU(const at::Tensor& g0, int reduce) {
  at::Tensor g = as4d(g0).contiguous();
  const int64_t n = g.size(0), c = g.size(1), hw = g.size(2) * g.size(3);
  at::Tensor mean = at::empty({n, c}, at::kFloat);
  at::Tensor nonzero = at::empty({n, c}, at::kFloat);
  const float* src = g.data_ptr<float>();
  float* pm = mean.data_ptr<float>();
  float* pz = nonzero.data_ptr<float>();
  at::parallel_for(0, n * c, std::max<int64_t>(1, 32768 / std::max<int64_t>(hw, 1)), [&](int64_t begin, int64_t end) {
    for (int64_t nc = begin; nc < end; nc++) {
      const float* p = src + nc * hw;
      // Eight independent lanes (instruction-level parallelism, and the
      // compiler may use SIMD), each summing at most hw/8 floats, then
      // combined in double.
      float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int32_t z[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 8 <= hw; i += 8) {
        for (int k = 0; k < 8; k++) {
          s[k] += p[i + k];
          z[k] += p[i + k] != 0.0f;
        }
      }
      double sum = 0;
      int64_t count = 0;
      for (int k = 0; k < 8; k++) {
        sum += s[k];
        count += z[k];
      }
      for (; i < hw; i++) {
        sum += p[i];
        count += p[i] != 0.0f;
      }
      pm[nc] = static_cast<float>(sum / static_cast<double>(hw));
      pz[nc] = static_cast<float>(static_cast<double>(count) / static_cast<double>(hw));
    }
  });
  if (reduce == GAIA_REDUCE_CHANNEL_MEAN) {
    return mean;
  }
  if (reduce == GAIA_REDUCE_CHANNEL_NONZERO) {
    return nonzero;
  }
  at::Tensor out = at::empty({n}, at::kFloat);
  float* po = out.data_ptr<float>();
  for (int64_t i = 0; i < n; i++) {
    double acc = 0;
    for (int64_t k = 0; k < c; k++) {
      double m = pm[i * c + k], z = pz[i * c + k];
      switch (reduce) {
        case GAIA_REDUCE_SUMSQ_NONZERO:
          acc += z * z;
          break;
        case GAIA_REDUCE_SUMSQ_MEAN:
          acc += m * m;
          break;
        default:
          acc += std::abs(m);
      }
    }
    po[i] = static_cast<float>(reduce == GAIA_REDUCE_MEANABS_MEAN ? acc / static_cast<double>(c) : acc);
  }
  return out;
}

at::Tensor reduceGrad(const at::Tensor& g, int reduce) {
  if (g.device().is_cpu() && g.scalar_type() == at::kFloat && g.dim() >= 2 && g.dim() <= 4 &&
      reduce >= GAIA_REDUCE_CHANNEL_MEAN && reduce <= GAIA_REDUCE_MEANABS_MEAN) {
    return reduceGradCPU(g, reduce);
  }
#ifdef GAIA_WITH_CUDA
  if (g.is_cuda() && g.scalar_type() == at::kFloat && g.dim() >= 2 && g.dim() <= 4 &&
      reduce >= GAIA_REDUCE_CHANNEL_MEAN && reduce <= GAIA_REDUCE_MEANABS_MEAN) {
    return reduceGradCUDA(g, reduce);
  }
#endif
  switch (reduce) {
    case GAIA_REDUCE_NONE:
      return g;
    case GAIA_REDUCE_CHANNEL_MEAN:
      return as4d(g).mean({2, 3});
    case GAIA_REDUCE_CHANNEL_NONZERO:
      return as4d(g).ne(0).to(at::kFloat).mean({2, 3});
    case GAIA_REDUCE_SUMSQ_NONZERO:
      return as4d(g).ne(0).to(at::kFloat).mean({2, 3}).pow(2).sum(1);
    case GAIA_REDUCE_SUMSQ_MEAN:
      return as4d(g).mean({2, 3}).pow(2).sum(1);
    case GAIA_REDUCE_MEANABS_MEAN:
      return as4d(g).mean({2, 3}).abs().mean(1);
    case GAIA_REDUCE_L1:
      return g.abs().reshape({g.size(0), -1}).sum(1);
    default:
      throw ShimError(GAIA_ERR_INVALID, "unknown reduction " + std::to_string(reduce));
  }
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
      throw ShimError(GAIA_ERR_INVALID, "input shape " + std::to_string(shape[0]) + "x" +
                                            std::to_string(shape[1]) + "x" + std::to_string(shape[2]) +
                                            "x" + std::to_string(shape[3]) + " has an empty axis");
    }
  }
}

// HookState collects reduced gradients from tensor hooks during one pass.
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
    throw ShimError(GAIA_ERR_INVALID, "input has " + std::to_string(shape[1]) +
                                          " channels; the model expects " + std::to_string(m->inputChannels));
  }
  at::Tensor x = torch::from_blob(const_cast<float*>(input), {shape[0], shape[1], shape[2], shape[3]},
                                  torch::TensorOptions().dtype(at::kFloat))
                     .to(m->device, at::kFloat, /*non_blocking=*/false, /*copy=*/true);
  if (needGrad) {
    x.requires_grad_(true);
  }
  return x;
}

}  // namespace

extern "C" {

void gaia_free(void* p) { std::free(p); }

void gaia_result_free(gaia_result* r) {
  if (r == nullptr) {
    return;
  }
  for (int32_t i = 0; i < r->n; i++) {
    std::free(r->tensors[i].data);
  }
  std::free(r->tensors);
  std::free(r);
}

const char* gaia_torch_version(void) { return TORCH_VERSION; }

int32_t gaia_cuda_device_count(void) {
  try {
    return static_cast<int32_t>(torch::cuda::device_count());
  } catch (...) {
    return 0;
  }
}

int32_t gaia_tune_malloc(int64_t mmap_threshold, int64_t trim_threshold) {
#ifdef __GLIBC__
  int ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold));
  ok = mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) && ok;
  return ok ? 1 : 0;
#else
  return 0;
#endif
}

void gaia_set_num_threads(int32_t n) {
  try {
    if (n > 0) {
      at::set_num_threads(n);
    }
  } catch (...) {
  }
}

int32_t gaia_get_num_threads(void) {
  try {
    return at::get_num_threads();
  } catch (...) {
    return 0;
  }
}

void gaia_set_allow_tf32(int32_t allow) {
  try {
    at::globalContext().setAllowTF32CuDNN(allow != 0);
    at::globalContext().setAllowTF32CuBLAS(allow != 0);
  } catch (...) {
  }
}

void gaia_manual_seed(uint64_t seed) {
  try {
    torch::manual_seed(seed);
  } catch (...) {
  }
}

int gaia_module_load(const char* path, const void* data, size_t len, const char* device,
                     gaia_module** out, gaia_status* st) {
  *out = nullptr;
  return guarded(st, [&] {
    auto m = std::make_unique<gaia_module>();
    m->device = parseDevice(device != nullptr ? device : "auto");
    if (path != nullptr) {
      m->module = jit::load(std::string(path), m->device);
    } else {
      std::string bytes(static_cast<const char*>(data), len);
      std::istringstream in(bytes);
      m->module = jit::load(in, m->device);
    }
    m->module.eval();
    buildTappedGraph(m.get());
    *out = m.release();
  });
}

void gaia_module_free(gaia_module* m) {
  try {
    delete m;
  } catch (...) {
  }
}

int gaia_module_describe(gaia_module* m, char** out, gaia_status* st) {
  *out = nullptr;
  return guarded(st, [&] {
    std::ostringstream s;
    s << "device\t" << m->device.str() << "\n";
    s << "input_channels\t" << m->inputChannels << "\n";
    for (size_t i = 0; i < m->taps.size(); i++) {
      const Tap& t = m->taps[i];
      s << "tap\t" << i << "\t" << t.name << "\t" << t.kind << "\t" << t.channels << "\t"
        << (t.gateOutput >= 0 ? 1 : 0) << "\n";
    }
    for (const auto& w : m->warnings) {
      s << "warning\t" << w << "\n";
    }
    *out = dup_string(s.str());
  });
}

int gaia_module_run(gaia_module* m, const float* input, const int64_t* shape, const int32_t* values,
                    int32_t n_values, const gaia_pass* passes, int32_t n_passes,
                    const int32_t* tap_list, int32_t n_tap_list, int32_t flags, gaia_result** out,
                    gaia_status* st) {
  *out = nullptr;
  return guarded(st, [&] {
    c10::DeviceGuard deviceGuard(m->device);
    bool needGrad = false;
    for (int32_t p = 0; p < n_passes; p++) {
      needGrad = needGrad || passes[p].loss != GAIA_LOSS_GATE;
    }
    torch::AutoGradMode gradMode(needGrad);
    for (int32_t p = 0; p < n_passes; p++) {
      const gaia_pass& ps = passes[p];
      if (ps.n_taps < 0 || ps.taps_offset < 0 || ps.taps_offset + ps.n_taps > n_tap_list) {
        throw ShimError(GAIA_ERR_INVALID, "pass " + std::to_string(p) + ": tap list out of range");
      }
    }
    at::Tensor x = makeInput(m, input, shape, needGrad);
    Forward f = runForward(m, x);
    if (f.outputs[0].dim() != 2) {
      throw ShimError(GAIA_ERR_GRAPH, "the first output has " + std::to_string(f.outputs[0].dim()) +
                                          " dimensions; expected logits N x K");
    }
    std::vector<at::Tensor> results(f.outputs.begin(), f.outputs.end());
    for (int32_t i = 0; i < n_values; i++) {
      at::Tensor v = tapValue(f, values[i]);
      // A 1x1 convolution head's input is N x C x 1 x 1: hand it back as N x C.
      if (values[i] >= 0 && m->taps[values[i]].kind == "classifier_input" && v.dim() > 2) {
        v = v.flatten(1);
      }
      results.push_back(v);
    }
    bool early = (flags & GAIA_RUN_REDUCE_AFTER) == 0;
    // Hooks on the taps a pass reads after its earliest ones: each reduces its
    // gradient as autograd produces it, so all the full gradients are never
    // held at once. state->pass says which pass is running.
    auto state = std::make_shared<HookState>();
    if (early && needGrad) {
      std::vector<bool> hooked(f.taps.size(), false);
      for (int32_t p = 0; p < n_passes; p++) {
        const gaia_pass& ps = passes[p];
        if (ps.loss == GAIA_LOSS_GATE) {
          continue;
        }
        for (int32_t i = 0; i < ps.n_taps; i++) {
          int32_t t = tap_list[ps.taps_offset + i];
          if (t >= 0 && static_cast<size_t>(t) < f.taps.size() && !hooked[t]) {
            hooked[t] = true;
            f.taps[t].register_hook([state, t](const at::Tensor& g) { state->capture(t, g); });
          }
        }
      }
    }
    for (int32_t p = 0; p < n_passes; p++) {
      const gaia_pass& ps = passes[p];
      std::vector<int32_t> taps(tap_list + ps.taps_offset, tap_list + ps.taps_offset + ps.n_taps);
      if (ps.loss == GAIA_LOSS_GATE) {
        for (int32_t t : taps) {
          tapValue(f, t);  // range check
          if (t < 0 || m->taps[t].gateOutput < 0) {
            throw ShimError(GAIA_ERR_INVALID, "tap " + (t < 0 ? std::to_string(t) : m->taps[t].name) +
                                                  " has no ReLU gate (see the taps' gated column)");
          }
          results.push_back(reduceGrad(f.gates[m->taps[t].gateOutput].gt(0).to(at::kFloat), ps.reduce));
        }
        continue;
      }
      if (taps.size() == 1 && taps[0] == GAIA_TAP_PARAMS) {
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
        results.push_back(norms);
        continue;
      }
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
        size_t i = rootAt[k];
        at::Tensor g = grads[k].defined() ? grads[k] : at::zeros_like(inputs[k]);
        reduced[i] = reduceGrad(g, ps.reduce);
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
      for (auto& r : reduced) {
        results.push_back(r);
      }
    }
    auto* r = static_cast<gaia_result*>(std::calloc(1, sizeof(gaia_result)));
    if (r == nullptr) {
      throw ShimError(GAIA_ERR_STD, "out of memory");
    }
    r->tensors = static_cast<gaia_tensor*>(std::calloc(results.size(), sizeof(gaia_tensor)));
    if (r->tensors == nullptr) {
      std::free(r);
      throw ShimError(GAIA_ERR_STD, "out of memory");
    }
    try {
      for (size_t i = 0; i < results.size(); i++) {
        toResult(results[i], &r->tensors[i]);
        r->n = static_cast<int32_t>(i + 1);
      }
    } catch (...) {
      gaia_result_free(r);
      throw;
    }
    *out = r;
  });
}

int gaia_module_tap_shapes(gaia_module* m, const int64_t* shape, char** out, gaia_status* st) {
  *out = nullptr;
  return guarded(st, [&] {
    c10::DeviceGuard deviceGuard(m->device);
    torch::NoGradGuard noGrad;
    checkShape(shape);
    std::vector<float> zeros(static_cast<size_t>(shape[0] * shape[1] * shape[2] * shape[3]), 0.0f);
    at::Tensor x = makeInput(m, zeros.data(), shape, false);
    Forward f = runForward(m, x);
    std::ostringstream s;
    for (size_t i = 0; i < f.taps.size(); i++) {
      s << i << "\t";
      for (int64_t d = 0; d < f.taps[i].dim(); d++) {
        s << (d > 0 ? "x" : "") << f.taps[i].size(d);
      }
      s << "\n";
    }
    *out = dup_string(s.str());
  });
}

}  // extern "C"

extern "C" int gaia_cuda_memory(int32_t device, int32_t reset, int64_t* current, int64_t* peak) {
#ifdef GAIA_WITH_CUDA
  try {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device));
    auto agg = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    *current = stats.allocated_bytes[agg].current;
    *peak = stats.allocated_bytes[agg].peak;
    if (reset != 0) {
      c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
    }
    return 0;
  } catch (...) {
    return -1;
  }
#else
  (void)device;
  (void)reset;
  *current = 0;
  *peak = 0;
  return -1;
#endif
}

extern "C" int32_t gaia_cuda_kernels_built(void) {
#ifdef GAIA_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}
