// shim_internal.h: what the shim's C++ files share. Not part of the C ABI
// (that is shim.h); nothing here crosses to Go.
#ifndef GAIA_SHIM_INTERNAL_H
#define GAIA_SHIM_INTERNAL_H

#include <torch/script.h>
#include <torch/csrc/jit/api/function_impl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "shim.h"

namespace gaia {

// An error the shim raises itself, carrying its status code (GAIA_ERR_*).
struct ShimError : std::runtime_error {
  int code;
  ShimError(int c, const std::string& m) : std::runtime_error(m), code(c) {}
};

// A tap: a value of the forward computation handed back beside the logits.
struct Tap {
  std::string name;  // module path, such as "layer3.1.bn2"
  int32_t kind = 0;  // GAIA_TAP_*
  int64_t channels = -1;
  torch::jit::Value* value = nullptr;  // during graph rewriting only
  torch::jit::Value* gate = nullptr;   // the input of the ReLU that gates it (rewriting only)
  int gateOutput = -1;                 // its index among the gate outputs, -1 without one
};

inline bool isNormTap(int32_t kind) {
  return kind == GAIA_TAP_BATCH_NORM || kind == GAIA_TAP_GROUP_NORM || kind == GAIA_TAP_INSTANCE_NORM;
}

using Bits = std::vector<bool>;

}  // namespace gaia

// The loaded module behind the opaque C handle.
struct gaia_module {
  torch::jit::Module module;
  c10::Device device{c10::kCPU};
  std::shared_ptr<torch::jit::Graph> graph;
  std::unique_ptr<torch::jit::GraphFunction> fn;  // the tapped forward
  std::vector<gaia::Tap> taps;
  std::vector<std::string> warnings;
  int64_t inputChannels = -1;
  size_t numOutputs = 1;  // of the tapped forward's tuple: 1 + taps + gates
  // upstream[i][j]: tap j is computed before tap i and tap i is computed from it.
  std::vector<gaia::Bits> upstream;
  // The classifier's weight (K x D) and bias (K), when one was found.
  at::Tensor clsWeight, clsBias;
  // Buffers on the device for heads (gaia_module_put), by id.
  std::unordered_map<int32_t, at::Tensor> buffers;
  int32_t nextBuffer = 1;
};

namespace gaia {

// graph.cpp: rewrites m->module's forward into m->fn, which also returns
// every tap, and fills m->taps, m->warnings, m->inputChannels, m->upstream.
void buildTappedGraph(gaia_module* m);

// run.cpp: one batch, as gaia_module_run describes it.
struct RunRequest {
  const float* input;
  const int64_t* shape;
  const int32_t* values;
  int32_t nValues;
  const gaia_pass* passes;
  int32_t nPasses;
  const int32_t* tapList;
  int32_t nTapList;
  const double* params;
  int32_t nParams;
  const gaia_head* heads;
  int32_t nHeads;
  int32_t flags;
};

struct RunResult {
  std::vector<at::Tensor> tensors;  // outputs, values, each pass's, then each head's
  int32_t nOutputs = 0;
  int32_t nValues = 0;
  std::vector<int32_t> passCounts;
  int32_t nHeads = 0;
};

// heads.cpp: one head on its value x (a tap's, detached, or the logits).
at::Tensor runHead(gaia_module* m, const gaia_head& h, const at::Tensor& x);

RunResult runBatch(gaia_module* m, const RunRequest& req);

// run.cpp: each tap's value shape after one forward on zeros of shape.
std::vector<std::vector<int64_t>> tapShapes(gaia_module* m, const int64_t* shape);

// reduce.cpp: a tap gradient reduced as GAIA_REDUCE_* says (not
// GAIA_REDUCE_PERTURB_FORWARD, which run.cpp does).
at::Tensor reduceGrad(const at::Tensor& g, int reduce);

}  // namespace gaia

#endif  // GAIA_SHIM_INTERNAL_H
