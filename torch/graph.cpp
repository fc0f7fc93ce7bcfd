//go:build cgo && !gaia_nolibtorch

// graph.cpp: tap discovery and graph rewriting.
//
// The module's forward graph is copied and inlined, the module's non-tensor
// attributes (training flags, options) are folded in as constants so that
// control flow on them disappears, and then every normalization output (or,
// without any, every ReLU input), the final feature map before global pooling
// and the classifier input are found and added to the graph's outputs. Where
// a tap value is later mutated in place (relu_, add_), the op is made
// out-of-place or a copy is inserted right after the tap, so the tap keeps
// its own value and its gradient is the gradient with respect to that value
// (before the ReLU), as eager forward hooks see it.
#include <torch/csrc/jit/ir/alias_analysis.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/csrc/jit/passes/constant_propagation.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <optional>
#include <unordered_map>

#include "shim_internal.h"

namespace jit = torch::jit;

namespace gaia {
namespace {

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
std::optional<c10::IValue> attrValue(const jit::Value* v, const jit::Value* self, const c10::IValue& selfValue) {
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
  if (s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return s.substr(0, s.size() - suffix.size() - 1);  // also the dot
  }
  return s;
}

bool isNormKind(c10::Symbol k) {
  return k == c10::aten::batch_norm || k == c10::aten::group_norm || k == c10::aten::instance_norm;
}

int32_t tapKindOf(c10::Symbol k) {
  if (k == c10::aten::batch_norm) {
    return GAIA_TAP_BATCH_NORM;
  }
  if (k == c10::aten::group_norm) {
    return GAIA_TAP_GROUP_NORM;
  }
  return GAIA_TAP_INSTANCE_NORM;
}

bool isReluKind(c10::Symbol k) { return k == c10::aten::relu || k == c10::aten::relu_; }

bool isConvKind(c10::Symbol k) {
  return k == c10::aten::_convolution || k == c10::aten::conv2d || k == c10::aten::convolution;
}

bool isMaxPool(c10::Symbol k) { return k == c10::aten::max_pool2d || k == c10::aten::max_pool2d_with_indices; }

bool isGlobalPool(c10::Symbol k) {
  return k == c10::aten::adaptive_avg_pool2d || k == c10::aten::avg_pool2d || k == c10::aten::mean ||
         k == c10::aten::adaptive_max_pool2d || k == c10::aten::max_pool2d;
}

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

// Rewriter holds one module's graph while its taps are found and kept.
struct Rewriter {
  gaia_module* m;
  std::shared_ptr<jit::Graph> g;
  jit::Value* self = nullptr;
  c10::IValue selfValue;
  std::vector<Tap> taps;
  jit::Node* firstConv = nullptr;
  jit::Node* lastConv = nullptr;
  jit::Node* classifier = nullptr;
  bool convHead = false;

  // The module attribute a node input reads, if it is a tensor.
  std::optional<at::Tensor> attrTensor(const jit::Value* v) const {
    auto val = attrValue(v, self, selfValue);
    if (val && val->isTensor()) {
      return val->toTensor();
    }
    return std::nullopt;
  }

  // The module path of the layer that owns a parameter input ("layer1.0.bn1"
  // for its ".weight"); nullopt when the input is not a module attribute.
  std::optional<std::string> layerOf(const jit::Value* param) const {
    auto path = param == self ? std::nullopt : attrPath(param, self);
    if (!path) {
      return std::nullopt;
    }
    return stripSuffix(*path, param->node()->s(c10::attr::name));
  }

  // Step 1: an inlined copy of forward with the module's non-tensor
  // attributes folded in, so every layer sits at the top level.
  void inlineAndSpecialize() {
    jit::Method method = m->module.get_method("forward");
    g = jit::toGraphFunction(method.function()).graph()->copy();
    jit::Inline(*g);
    if (g->inputs().size() != 2) {
      throw ShimError(GAIA_ERR_GRAPH, "forward takes " + std::to_string(g->inputs().size() - 1) +
                                          " inputs; expected exactly one image batch");
    }
    self = g->inputs()[0];
    selfValue = m->module._ivalue();
    specializeAttributes(g->block());
    jit::ConstantPropagation(g);
    jit::EliminateDeadCode(g);
  }

  // specializeAttributes folds every non-tensor attribute read (booleans
  // such as `training`, numbers, strings, None) into a constant, so that
  // control flow on them can be removed by constant propagation. The module
  // is used in eval mode only, and the shim never changes its attributes.
  void specializeAttributes(jit::Block* b) {
    for (auto it = b->nodes().begin(); it != b->nodes().end(); ++it) {
      jit::Node* n = *it;
      for (jit::Block* sub : n->blocks()) {
        specializeAttributes(sub);
      }
      if (n->kind() != c10::prim::GetAttr) {
        continue;
      }
      auto v = attrValue(n->output(), self, selfValue);
      if (v && (v->isBool() || v->isInt() || v->isDouble() || v->isNone() || v->isString())) {
        jit::WithInsertPoint guard(n);
        n->output()->replaceAllUsesWith(g->insertConstant(*v));
      }
    }
  }

  // Step 2: normalization outputs at the top level, named by the layer of
  // their affine weight (else running mean); the convolutions and the last
  // linear layer on the way.
  void findNormTaps() {
    int counter = 0;
    for (jit::Node* n : g->block()->nodes()) {
      c10::Symbol k = n->kind();
      if (isConvKind(k)) {
        firstConv = firstConv == nullptr ? n : firstConv;
        lastConv = n;
      }
      if (k == c10::aten::linear || k == c10::aten::addmm || k == c10::aten::matmul) {
        classifier = n;
      }
      if (!isNormKind(k)) {
        continue;
      }
      Tap t;
      t.kind = tapKindOf(k);
      std::vector<int> candidates = {k == c10::aten::group_norm ? 2 : 1};
      if (k != c10::aten::group_norm) {
        candidates.push_back(3);  // running_mean
      }
      for (int idx : candidates) {
        if (idx >= static_cast<int>(n->inputs().size())) {
          continue;
        }
        auto layer = layerOf(n->input(idx));
        auto w = attrTensor(n->input(idx));
        if (layer && w) {
          t.name = *layer;
          t.channels = w->size(0);
          break;
        }
      }
      if (t.name.empty()) {
        t.name = std::string(k.toUnqualString()) + "#" + std::to_string(counter);
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
      auto w = attrTensor(firstConv->input(1));
      if (w && w->dim() >= 2) {
        m->inputChannels = w->size(1);
      }
    }
  }

  // Step 3: without normalization layers, the inputs of the ReLUs.
  void findReluTaps() {
    int r = 0;
    for (jit::Node* n : g->block()->nodes()) {
      if (!isReluKind(n->kind())) {
        continue;
      }
      Tap t;
      t.kind = GAIA_TAP_RELU_INPUT;
      jit::Node* p = n->input(0)->node();
      if (p->inputs().size() > 1) {
        auto layer = layerOf(p->input(1));
        auto w = attrTensor(p->input(1));
        if (layer && w) {
          t.name = *layer + ":relu_input";
          t.channels = w->size(0);
        }
      }
      if (t.name.empty()) {
        t.name = "relu#" + std::to_string(r);
      }
      t.value = n->input(0);
      taps.push_back(t);
      r++;
    }
    if (taps.empty()) {
      throw ShimError(GAIA_ERR_GRAPH,
                      "no taps: the forward graph has no aten::batch_norm, aten::group_norm or aten::relu at its top level");
    }
  }

  // Step 4: without a linear classifier, a 1x1 convolution on a globally
  // pooled map is one (BiT's head): the last convolution, when its input
  // comes from global pooling.
  void findConvHead() {
    if (classifier != nullptr || lastConv == nullptr) {
      return;
    }
    jit::Value* v = lastConv->input(0);
    while (v->node()->kind() == c10::aten::contiguous || v->node()->kind() == c10::aten::dropout ||
           v->node()->kind() == c10::aten::feature_dropout) {
      v = v->node()->input(0);
    }
    c10::Symbol pk = v->node()->kind();
    auto w = attrTensor(lastConv->input(1));
    bool oneByOne = w && w->dim() == 4 && w->size(2) == 1 && w->size(3) == 1;
    if (oneByOne &&
        (pk == c10::aten::adaptive_avg_pool2d || pk == c10::aten::mean || pk == c10::aten::adaptive_max_pool2d)) {
      classifier = lastConv;
      convHead = true;
    }
  }

  // Step 5: the classifier input h and, walking back through reshapes to
  // the global pooling, the final feature map F.
  void findHeadTaps() {
    if (classifier == nullptr) {
      m->warnings.push_back("no classifier found (expected aten::linear, aten::addmm, aten::matmul, or a 1x1 convolution on a globally pooled map): no feature_map or classifier_input taps");
      return;
    }
    bool addmm = classifier->kind() == c10::aten::addmm;
    Tap th;
    th.kind = GAIA_TAP_CLASSIFIER_INPUT;
    th.value = addmm ? classifier->input(1) : classifier->input(0);
    std::string clsName = "classifier";
    if (!addmm) {
      auto layer = layerOf(classifier->input(1));
      auto w = attrTensor(classifier->input(1));
      if (layer && w && (w->dim() == 2 || convHead)) {
        clsName = *layer;
        th.channels = w->size(1);
      }
    }
    th.name = clsName + ":input";
    findClassifierParams(addmm);
    jit::Value* v = th.value;
    for (;;) {
      c10::Symbol k = v->node()->kind();
      if (k == c10::aten::flatten || k == c10::aten::view || k == c10::aten::reshape || k == c10::aten::squeeze ||
          k == c10::aten::dropout || k == c10::aten::feature_dropout || k == c10::aten::contiguous) {
        v = v->node()->input(0);
        continue;
      }
      break;
    }
    c10::Symbol pk = v->node()->kind();
    if (isGlobalPool(pk)) {
      Tap tf;
      tf.kind = GAIA_TAP_FEATURE_MAP;
      tf.name = "feature_map";
      tf.channels = th.channels;
      tf.value = v->node()->input(0);
      taps.push_back(tf);
    } else {
      m->warnings.push_back(std::string("no global pooling before the classifier (found ") + pk.toQualString() +
                            "): no feature_map tap");
    }
    taps.push_back(th);
  }

  // The classifier's weight (K x D) and bias (K): a Linear's (or an addmm's,
  // whose weight comes transposed), or a 1x1 convolution's.
  void findClassifierParams(bool addmm) {
    std::optional<at::Tensor> w, b;
    if (addmm) {
      jit::Value* wt = classifier->input(2);
      if (wt->node()->kind() == c10::aten::t && (w = attrTensor(wt->node()->input(0)))) {
        b = attrTensor(classifier->input(0));
      }
    } else if (classifier->kind() != c10::aten::matmul) {
      w = attrTensor(classifier->input(1));
      if (classifier->inputs().size() > 2) {
        b = attrTensor(classifier->input(2));
      }
    }
    if (!w || !(w->dim() == 2 || (convHead && w->dim() == 4))) {
      return;
    }
    at::Tensor weight = w->detach().reshape({w->size(0), -1}).to(at::kFloat).contiguous();
    m->clsWeight = weight;
    m->clsBias = b ? b->detach().reshape({-1}).to(at::kFloat).contiguous() : at::zeros({weight.size(0)}, weight.options());
  }

  // Step 6: each normalization tap's ReLU gate, found before step 7
  // changes the uses.
  void findGates() {
    for (auto& t : taps) {
      if (isNormTap(t.kind)) {
        t.gate = gateOf(t.value);
      }
    }
  }

  void remap(jit::Value* from, jit::Value* to) {
    for (auto& t : taps) {
      if (t.value == from) {
        t.value = to;
      }
      if (t.gate == from) {
        t.gate = to;
      }
    }
  }

  // Step 7: every tap keeps its own value. Where its only use is an
  // in-place ReLU or addition, that op becomes its out-of-place form (no
  // extra pass over the data); any other tap that alias analysis says is
  // still written to later gets a copy, and every later use reads the copy.
  void keepTapValues() {
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
      jit::WithInsertPoint guard(v->node()->next());
      jit::Value* copy = g->insert(c10::aten::clone, {v});
      v->replaceAllUsesAfterNodeWith(copy->node(), copy);
    }
  }

  // Step 8: the graph returns (original output, tap values..., gates...).
  void returnTaps() {
    jit::WithInsertPoint guard(g->return_node());
    std::vector<jit::Value*> outs{g->outputs()[0]};
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
    m->numOutputs = 1 + taps.size() + gates;
  }

  // Step 9: which taps each tap is computed from, by data flow. A pass then
  // takes gradients only at its earliest taps and reads the later ones from
  // hooks as autograd reaches them.
  void computeUpstream() {
    size_t n = taps.size();
    std::unordered_map<const jit::Value*, Bits> bits;
    std::unordered_map<const jit::Value*, std::vector<size_t>> tapOf;
    for (size_t i = 0; i < n; i++) {
      tapOf[taps[i].value].push_back(i);
    }
    m->upstream.assign(n, Bits(n, false));
    for (jit::Node* node : g->block()->nodes()) {
      Bits acc(n, false);
      collectInputs(node, bits, acc);
      for (const jit::Value* out : node->outputs()) {
        Bits b = acc;
        auto it = tapOf.find(out);
        if (it != tapOf.end()) {
          for (size_t i : it->second) {
            m->upstream[i] = acc;
            b[i] = true;
          }
        }
        bits[out] = std::move(b);
      }
    }
  }

  // Step 10: hand the rewritten graph to the module, as a function run by
  // the simple executor with the module object as its first input.
  void install() {
    for (auto& t : taps) {
      t.value = nullptr;
      t.gate = nullptr;
    }
    m->taps = std::move(taps);
    m->graph = g;
    m->fn = std::make_unique<jit::GraphFunction>("gaia_tapped_forward", g, nullptr,
                                                 jit::ExecutorExecutionMode::SIMPLE);
  }
};

}  // namespace

void buildTappedGraph(gaia_module* m) {
  Rewriter r{m};
  r.inlineAndSpecialize();
  r.findNormTaps();
  if (r.taps.empty()) {
    r.findReluTaps();
  }
  r.findConvHead();
  r.findHeadTaps();
  r.findGates();
  r.keepTapValues();
  r.returnTaps();
  r.computeUpstream();
  r.install();
}

}  // namespace gaia
