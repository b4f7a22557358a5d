// The operator library of the CUDA launch emulation (tests only): defines
// laplace_attn_emulated::<op> with the schema of each laplace_attn::<op> whose
// CUDA kernels it emulates, and the ops that read the launch log.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <sstream>
#include <string>
#include <vector>

#include "emulated_launch.h"

namespace laplace_attn::emulation {

std::vector<LaunchRecord>& launch_log() {
  static std::vector<LaunchRecord> log;
  return log;
}

bool& execute_launches() {
  static bool execute = true;
  return execute;
}

namespace {

// laplace_attn::name's schema, without the namespace.
std::string schema_of(const std::string& name) {
  const auto& op =
      c10::Dispatcher::singleton().findSchemaOrThrow(("laplace_attn::" + name).c_str(), "");
  std::ostringstream text;
  text << op.schema();
  const std::string full = text.str();
  return full.substr(full.find("::") + 2);
}

// One line per launch of the latest emulated call: "kernel blocks threads work".
std::vector<std::string> launches() {
  std::vector<std::string> lines;
  for (const LaunchRecord& r : launch_log()) {
    lines.push_back(r.kernel + " " + std::to_string(r.grid.blocks) + " " +
                    std::to_string(r.grid.threads_per_block) + " " + std::to_string(r.work));
  }
  return lines;
}

void set_execute(bool execute) {
  execute_launches() = execute;
}

}  // namespace

TORCH_LIBRARY(laplace_attn_emulated, m) {
  for (const char* name :
       {"laplace_scan", "_laplace_scan_backward", "laplacian_kernel", "_laplacian_kernel_backward",
        "_laplacian_attention_forward", "_laplacian_attention_backward", "gumbel_node_gate",
        "_gumbel_node_gate_backward"}) {
    m.def(schema_of(name).c_str());
  }
  m.def("launches() -> str[]", &launches);
  m.def("set_execute(bool execute) -> ()", &set_execute);
}

}  // namespace laplace_attn::emulation
