#include "cli/inputs.h"

#include <ATen/ops/abs.h>
#include <ATen/ops/view_as_real.h>
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <torch/csrc/jit/serialization/import_read.h>

#include <algorithm>
#include <cstring>
#include <iomanip>
#include <memory>
#include <sstream>

#include "cli/pickle_scan.h"

namespace laplace_attn::cli {
namespace {

// The first sentence of a PyTorch error, without the advice and the C++ stack
// trace it carries.
std::string first_sentence(const std::string& message) {
  const std::string line = message.substr(0, message.find('\n'));
  return line.substr(0, line.find(". "));
}

// The bytes of a torch.save file for PyTorch's zip reader. A malformed archive
// can make the reader ask for bytes past the end (libtorch's own VectorReader
// copies them anyway, found by tests/fuzz): here such a read returns what there
// is, and the reader reports the archive as truncated.
class BoundedReader : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit BoundedReader(const std::vector<char>& bytes) : bytes_(bytes) {}
  size_t size() const override { return bytes_.size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* /*what*/) const override {
    if (pos >= bytes_.size())
      return 0;
    const size_t count = std::min<uint64_t>(n, bytes_.size() - pos);
    std::memcpy(buf, bytes_.data() + pos, count);
    return count;
  }

 private:
  const std::vector<char>& bytes_;
};

// torch::jit::pickle_load over a BoundedReader, after checking that no record
// and no length inside the pickle claims more bytes than the file has: PyTorch
// allocates such claims before it finds them false.
c10::IValue load_archive(const std::vector<char>& bytes, const std::string& source) {
  caffe2::serialize::PyTorchStreamReader reader(std::make_shared<BoundedReader>(bytes));
  for (const std::string& name : reader.getAllRecords()) {
    if (reader.getRecordSize(name) > bytes.size()) {
      throw UsageError("cannot read inputs '" + source + "': its record " + name + " claims " +
                       std::to_string(reader.getRecordSize(name)) + " bytes, more than the file");
    }
  }
  const auto [pickle, size] = reader.getRecord("data.pkl");
  const std::string oversized = find_oversized_length(static_cast<const char*>(pickle.get()), size);
  if (!oversized.empty())
    throw UsageError("cannot read inputs '" + source + "': its pickle is corrupt (" + oversized +
                     ")");
  return torch::jit::readArchiveAndTensors("data", /*pickle_prefix=*/"", /*tensor_prefix=*/"",
                                           /*type_resolver=*/std::nullopt,
                                           /*obj_loader=*/std::nullopt, /*device=*/std::nullopt,
                                           reader);
}

// The dtypes every CPU operator computes with (not bits, small unsigned or float8).
bool readable(at::ScalarType t) {
  switch (t) {
    case at::kBool:
    case at::kByte:
    case at::kChar:
    case at::kShort:
    case at::kInt:
    case at::kLong:
    case at::kHalf:
    case at::kBFloat16:
    case at::kFloat:
    case at::kDouble:
    case at::kComplexFloat:
    case at::kComplexDouble:
      return true;
    default:
      return false;
  }
}

// libtorch's reader does not compare a tensor's record with the bytes its shape
// needs (Python's torch.load does): a short record would be read past its end.
void check_storage_covers(const at::Tensor& t, const std::string& which) {
  if (t.numel() == 0)
    return;
  int64_t last = t.storage_offset();
  bool overflow = last < 0;
  for (int64_t d = 0; d < t.dim(); ++d) {
    int64_t extent = 0;
    overflow = overflow || t.stride(d) < 0 ||
               __builtin_mul_overflow(t.size(d) - 1, t.stride(d), &extent) ||
               __builtin_add_overflow(last, extent, &last);
  }
  int64_t needed = 0;
  overflow = overflow || __builtin_mul_overflow(last + 1, t.element_size(), &needed);
  // A record shorter than its storage leaves the storage without data.
  const uint64_t held = t.has_storage() && t.storage().data() != nullptr ? t.storage().nbytes() : 0;
  if (overflow || static_cast<uint64_t>(needed) > held) {
    throw UsageError(which + " of shape " + c10::str(t.sizes()) + " needs " +
                     (overflow ? std::string("more bytes than can be counted")
                               : std::to_string(needed) + " bytes") +
                     " of data, but its record holds " + std::to_string(held) +
                     ": the file is truncated or corrupt");
  }
}

}  // namespace

std::vector<at::Tensor> parse_inputs(const std::vector<char>& bytes, const std::string& source) {
  c10::IValue value;
  try {
    value = load_archive(bytes, source);
  } catch (const UsageError&) {
    throw;
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
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    const std::string which = "inputs '" + source + "': tensor " + std::to_string(i);
    if (!t.defined())
      throw UsageError(which + " is undefined (None)");
    if (t.layout() != at::kStrided || t.is_quantized()) {
      throw UsageError(which + " is sparse or quantized; expected a dense tensor");
    }
    if (!readable(t.scalar_type())) {
      throw UsageError(which + " has dtype " + std::string(c10::toString(t.scalar_type())) +
                       "; expected bool, an integer, a floating or a complex dtype");
    }
    check_storage_covers(t, which);
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
    out << "\n  sum: " << flat.sum().item<double>()
        << "  mean |x|: " << flat.abs().mean().item<double>() << "\n";
  }
  return out.str();
}

}  // namespace laplace_attn::cli
