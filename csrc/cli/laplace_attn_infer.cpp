// laplace-attn-infer: runs an exported model on tensors saved from Python, with
// no Python in the process. The op library is linked, so the laplace_attn
// operators a model calls resolve at load time.
//
//   laplace-attn-infer MODEL INPUTS [--output FILE] [--threads N]
//
// MODEL is a TorchScript file (torch.jit.save) or an AOTInductor package
// (.pt2, torch._inductor.aoti_compile_and_package); INPUTS is torch.save of a
// tensor or of a tuple/list of tensors. The outputs are printed and, with
// --output, saved so that torch.load reads them.
#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "laplace_attn/build_info.h"

namespace {

constexpr const char* kUsage =
    "usage: laplace-attn-infer MODEL INPUTS [--output FILE] [--threads N]\n"
    "\n"
    "  MODEL    TorchScript file (torch.jit.save) or AOTInductor package (.pt2)\n"
    "  INPUTS   torch.save(tensor) or torch.save((tensor, ...)): the model's inputs\n"
    "  --output FILE   save the outputs there (torch.load reads them)\n"
    "  --threads N     intra-op threads (default: PyTorch's)\n"
    "  --version       print the laplace_attn build and exit\n";

// A failure the user can act on: printed as one message, exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model, inputs, output;
  int threads = 0;
};

Options parse_args(int argc, char** argv) {
  Options opts;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--output" || arg == "-o" || arg == "--threads") && i + 1 >= argc) {
      throw UsageError(arg + " needs a value");
    }
    if (arg == "--output" || arg == "-o") {
      opts.output = argv[++i];
    } else if (arg == "--threads") {
      const std::string value = argv[++i];
      char* end = nullptr;
      const long threads = std::strtol(value.c_str(), &end, 10);
      if (*end != '\0' || threads <= 0) {
        throw UsageError("--threads expects a positive integer, got '" + value + "'");
      }
      opts.threads = static_cast<int>(threads);
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError("unknown option '" + arg + "'");
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) {
    throw UsageError("expected MODEL and INPUTS, got " + std::to_string(positional.size()) +
                     " file argument(s)");
  }
  opts.model = positional[0];
  opts.inputs = positional[1];
  return opts;
}

void require_file(const std::string& path, const char* what) {
  if (!std::filesystem::is_regular_file(path)) {
    throw UsageError(std::string(what) + " file '" + path + "' does not exist");
  }
}

std::vector<at::Tensor> load_inputs(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(file)),
                                std::istreambuf_iterator<char>());
  c10::IValue value;
  try {
    value = torch::jit::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw UsageError("cannot read inputs '" + path +
                     "': expected a file written by torch.save(tensor) or "
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
        throw UsageError("inputs '" + path + "': every element must be a tensor, found " +
                         element.tagKind());
      }
      tensors.push_back(element.toTensor());
    }
  } else {
    throw UsageError("inputs '" + path + "': expected a tensor or a tuple/list of tensors, found " +
                     value.tagKind());
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

// The part of a PyTorch error worth showing: the exception a TorchScript model
// raised (the last line of the interpreter's traceback), otherwise the first
// line, without the C++ stack trace PyTorch appends.
std::string summary(const std::string& message) {
  if (message.find("failed in the TorchScript interpreter") != std::string::npos) {
    const size_t end = message.find_last_not_of("\n ");
    const size_t start = message.rfind('\n', end);
    return message.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start + 1));
  }
  return message.substr(0, message.find('\n'));
}

// "Unknown builtin op: ns::name" (TorchScript) and "Could not find schema for
// ns::name" (AOTInductor) both mean the process lacks an operator library.
bool names_missing_operator(const std::string& message, std::string* op) {
  for (const char* marker : {"Unknown builtin op: ", "Could not find schema for "}) {
    const size_t at = message.find(marker);
    if (at != std::string::npos) {
      const size_t start = at + std::strlen(marker);
      const size_t end = message.find_first_of(" .\n'", start);
      *op = message.substr(start, end == std::string::npos ? end : end - start);
      return true;
    }
  }
  return false;
}

std::vector<at::Tensor> run_torchscript(const std::string& path,
                                        const std::vector<at::Tensor>& inputs) {
  torch::jit::Module module = torch::jit::load(path);
  module.eval();
  std::vector<c10::IValue> args(inputs.begin(), inputs.end());
  c10::IValue result;
  try {
    c10::InferenceMode guard;
    result = module.forward(args);
  } catch (const std::exception& e) {
    throw UsageError("the model rejected inputs of shape " + describe(inputs) + ": " +
                     summary(e.what()));
  }
  std::vector<at::Tensor> outputs;
  if (result.isTensor()) {
    outputs.push_back(result.toTensor());
  } else if (result.isTuple()) {
    for (const c10::IValue& element : result.toTupleRef().elements()) {
      if (element.isTensor())
        outputs.push_back(element.toTensor());
    }
  } else {
    throw UsageError("the model returned a " + std::string(result.tagKind()) +
                     "; expected a tensor or a tuple of tensors");
  }
  return outputs;
}

std::vector<at::Tensor> run_aoti_package(const std::string& path,
                                         const std::vector<at::Tensor>& inputs) {
  // The compiled model checks its inputs' shapes and dtypes only when asked to;
  // without the check a wrong shape reads out of bounds.
  setenv("AOTI_RUNTIME_CHECK_INPUTS", "1", /*overwrite=*/0);
  torch::inductor::AOTIModelPackageLoader loader(path);
  try {
    c10::InferenceMode guard;
    return loader.run(inputs);
  } catch (const std::exception& e) {
    throw UsageError("the model rejected inputs of shape " + describe(inputs) + ": " +
                     summary(e.what()));
  }
}

bool is_aoti_package(const std::string& path) {
  return std::filesystem::path(path).extension() == ".pt2";
}

void print_outputs(const std::vector<at::Tensor>& outputs) {
  constexpr int64_t kShown = 8;
  for (size_t i = 0; i < outputs.size(); ++i) {
    const at::Tensor flat = outputs[i].detach().reshape(-1).to(at::kDouble);
    std::cout << "output " << i << ": shape " << outputs[i].sizes() << " "
              << outputs[i].scalar_type() << "\n  first values:";
    const auto values = flat.accessor<double, 1>();
    for (int64_t j = 0; j < std::min<int64_t>(kShown, flat.numel()); ++j) {
      std::cout << " " << std::showpos << std::fixed << std::setprecision(6) << values[j]
                << std::noshowpos;
    }
    std::cout << "\n  sum: " << std::setprecision(6) << flat.sum().item<double>()
              << "  mean |x|: " << flat.abs().mean().item<double>() << "\n";
  }
}

void save_outputs(const std::vector<at::Tensor>& outputs, const std::string& path) {
  const c10::IValue value = outputs.size() == 1
                                ? c10::IValue(outputs[0])
                                : c10::IValue(c10::ivalue::Tuple::create(
                                      std::vector<c10::IValue>(outputs.begin(), outputs.end())));
  const std::vector<char> bytes = torch::jit::pickle_save(value);
  std::ofstream file(path, std::ios::binary);
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!file)
    throw UsageError("cannot write outputs to '" + path + "'");
  std::cout << "saved " << outputs.size() << " output(s) to " << path << "\n";
}

int run(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    }
    if (arg == "--version") {
      const laplace_attn::BuildInfo info = laplace_attn::build_info();
      std::cout << "laplace_attn " << info.version << " (simd " << info.simd << ", "
                << info.num_threads << " threads, cuda " << (info.cuda ? "yes" : "no") << ")\n";
      return 0;
    }
  }
  const Options opts = parse_args(argc, argv);
  require_file(opts.model, "model");
  require_file(opts.inputs, "inputs");
  if (opts.threads > 0)
    at::set_num_threads(opts.threads);

  const std::vector<at::Tensor> inputs = load_inputs(opts.inputs);
  std::vector<at::Tensor> outputs;
  try {
    outputs = is_aoti_package(opts.model) ? run_aoti_package(opts.model, inputs)
                                          : run_torchscript(opts.model, inputs);
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    std::string op;
    if (names_missing_operator(e.what(), &op)) {
      throw UsageError("the model calls operator " + op +
                       ", which no library loaded in this program registers (this program has "
                       "the laplace_attn operators; link or dlopen the library that defines " +
                       op + ")");
    }
    if (std::string(e.what()).find("PytorchStreamReader") != std::string::npos) {
      throw UsageError("'" + opts.model +
                       "' is not a model: expected a TorchScript file (torch.jit.save) or an "
                       "AOTInductor package (.pt2)");
    }
    throw UsageError("cannot load model '" + opts.model + "': " + summary(e.what()));
  }
  std::cout << "model: " << opts.model
            << (is_aoti_package(opts.model) ? " (AOTInductor)" : " (TorchScript)")
            << "\ninputs: " << describe(inputs) << "\n";
  print_outputs(outputs);
  if (!opts.output.empty())
    save_outputs(outputs, opts.output);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "laplace-attn-infer: " << e.what() << "\n";
    if (std::string(e.what()).find("expected MODEL") != std::string::npos)
      std::cerr << kUsage;
    return 2;
  }
}
