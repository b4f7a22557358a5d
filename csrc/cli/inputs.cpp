#include "cli/inputs.h"

#include <ATen/ops/abs.h>
#include <ATen/ops/view_as_real.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <iomanip>
#include <sstream>

namespace laplace_attn::cli {
namespace {

// The first sentence of a PyTorch error, without the advice and the C++ stack
// trace it carries.
std::string first_sentence(const std::string& message) {
  const std::string line = message.substr(0, message.find('\n'));
  return line.substr(0, line.find(". "));
}

}  // namespace

std::vector<at::Tensor> parse_inputs(const std::vector<char>& bytes, const std::string& source) {
  c10::IValue value;
  try {
    value = torch::jit::pickle_load(bytes);
  } catch (const std::exception& e) {
    throw UsageError("cannot read inputs '" + source + "' (" + first_sentence(e.what()) +
                     "): expected a file written by torch.save(tensor) or "
                     "torch.save((tensor, ...))");
  }
  std::vector<at::Tensor> tensors;
  if (value.isTensor()) {
    tensors.push_back(value.toTensor());
  } else if (value.isTuple() || value.isList()) {
    const auto elements =
        value.isTuple() ? value.toTupleRef().elements().vec() : value.toListRef().vec();
    for (const c10::IValue& element : elements) {
      if (!element.isTensor()) {
        throw UsageError("inputs '" + source + "': every element must be a tensor, found " +
                         element.tagKind());
      }
      tensors.push_back(element.toTensor());
    }
  } else {
    throw UsageError("inputs '" + source +
                     "': expected a tensor or a tuple/list of tensors, found " + value.tagKind());
  }
  for (const at::Tensor& t : tensors) {
    if (!t.defined())
      throw UsageError("inputs '" + source + "': found an undefined tensor (None)");
  }
  return tensors;
}

std::string describe(const std::vector<at::Tensor>& tensors) {
  std::ostringstream out;
  for (size_t i = 0; i < tensors.size(); ++i) {
    out << (i ? ", " : "") << tensors[i].sizes() << " " << tensors[i].scalar_type();
  }
  return out.str();
}

std::string summarize(const std::vector<at::Tensor>& tensors) {
  constexpr int64_t kShown = 8;
  std::ostringstream out;
  out << std::fixed << std::setprecision(6);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor t = tensors[i].detach();
    out << "output " << i << ": shape " << t.sizes() << " " << t.scalar_type()
        << "\n  first values:";
    if (t.is_complex()) {
      // [n, 2] of (re, im) in float64.
      const at::Tensor pairs = at::view_as_real(t.reshape(-1).to(at::kComplexDouble));
      const auto v = pairs.accessor<double, 2>();
      for (int64_t j = 0; j < std::min<int64_t>(kShown, pairs.size(0)); ++j)
        out << " (" << std::showpos << v[j][0] << ", " << v[j][1] << "i)" << std::noshowpos;
      const at::Tensor sum = pairs.sum(0);
      out << "\n  sum: (" << sum[0].item<double>() << ", " << sum[1].item<double>()
          << "i)  mean |x|: " << at::abs(t.to(at::kComplexDouble)).mean().item<double>() << "\n";
      continue;
    }
    const at::Tensor flat = t.reshape(-1).to(at::kDouble);
    const auto v = flat.accessor<double, 1>();
    for (int64_t j = 0; j < std::min<int64_t>(kShown, flat.numel()); ++j)
      out << " " << std::showpos << v[j] << std::noshowpos;
    out << "\n  sum: " << flat.sum().item<double>() << "  mean |x|: "
        << flat.abs().mean().item<double>() << "\n";
  }
  return out.str();
}

}  // namespace laplace_attn::cli
