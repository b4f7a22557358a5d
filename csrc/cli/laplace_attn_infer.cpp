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
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "cli/inputs.h"
#include "laplace_attn/build_info.h"

namespace {

using laplace_attn::cli::describe;
using laplace_attn::cli::UsageError;

constexpr const char* kUsage =
    "usage: laplace-attn-infer MODEL INPUTS [--output FILE] [--threads N]\n"
    "\n"
    "  MODEL    TorchScript file (torch.jit.save) or AOTInductor package (.pt2)\n"
    "  INPUTS   torch.save(tensor) or torch.save((tensor, ...)): the model's inputs\n"
    "  --output FILE   save the outputs there (torch.load reads them)\n"
    "  --threads N     intra-op threads (default: PyTorch's)\n"
    "  --version       print the laplace_attn build and exit\n";

// More threads than this is a typo, not a machine: libgomp would try to start them.
constexpr long kMaxThreads = 1024;

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
      errno = 0;
      const long threads = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || errno == ERANGE || threads < 1 ||
          threads > kMaxThreads) {
        throw UsageError("--threads expects a positive integer from 1 to " +
                         std::to_string(kMaxThreads) + ", got '" + value + "'");
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
  namespace fs = std::filesystem;
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (!fs::exists(status)) {
    throw UsageError(std::string(what) + " file '" + path + "' does not exist");
  }
  if (fs::is_directory(status)) {
    throw UsageError(std::string(what) + " '" + path + "' is a directory; expected a file");
  }
  if (!fs::is_regular_file(status)) {
    throw UsageError(std::string(what) + " '" + path +
                     "' is not a regular file (a device, pipe or socket); expected a file");
  }
  if (access(path.c_str(), R_OK) != 0) {
    throw UsageError(std::string(what) + " file '" + path +
                     "' cannot be read: " + std::strerror(errno));
  }
}

std::vector<at::Tensor> load_inputs(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(file)),
                                std::istreambuf_iterator<char>());
  if (bytes.empty())
    throw UsageError("inputs file '" + path + "' is empty");
  return laplace_attn::cli::parse_inputs(bytes, path);
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

// The real stderr, and the inputs being run, for the terminate handler.
int g_stderr = STDERR_FILENO;
std::string g_running;

// A compiled (AOTInductor) model checks its inputs inside OpenMP regions; an
// exception there cannot unwind and ends in std::terminate. Report it like any
// other model failure: one line, exit 2. Other threads that fail at the same
// time wait for the first to exit.
[[noreturn]] void report_terminate() {
  static std::atomic<bool> reported{false};
  if (reported.exchange(true)) {
    for (;;)
      pause();
  }
  std::string reason = "no message";
  if (const std::exception_ptr error = std::current_exception()) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      reason = summary(e.what());
    } catch (...) {
      reason = "it threw an unknown exception";
    }
  }
  const std::string line = g_running.empty()
                               ? "laplace-attn-infer: stopped: " + reason + "\n"
                               : "laplace-attn-infer: the model failed on inputs of shape " +
                                     g_running + ": " + reason + "\n";
  (void)!write(g_stderr, line.data(), line.size());
  _exit(2);
}

// While the model runs, what it prints to stderr goes to a temporary file: a
// compiled model prints its input-check failures there before it throws, which
// the one-line message already says. On success the text is passed on.
class HeldStderr {
 public:
  HeldStderr() : file_(std::tmpfile()) {
    std::fflush(stderr);
    g_stderr = dup(STDERR_FILENO);
    if (file_ != nullptr && g_stderr >= 0)
      dup2(fileno(file_), STDERR_FILENO);
  }
  ~HeldStderr() {
    std::fflush(stderr);
    if (g_stderr >= 0) {
      dup2(g_stderr, STDERR_FILENO);
      close(g_stderr);
    }
    g_stderr = STDERR_FILENO;
    if (file_ != nullptr)
      std::fclose(file_);
  }
  void pass_on() {
    if (file_ == nullptr)
      return;
    std::fflush(stderr);
    std::rewind(file_);
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, file_)) > 0)
      (void)!write(g_stderr, buffer, n);
  }
  HeldStderr(const HeldStderr&) = delete;
  HeldStderr& operator=(const HeldStderr&) = delete;

 private:
  std::FILE* file_;
};

std::vector<at::Tensor> run_aoti_package(const std::string& path,
                                         const std::vector<at::Tensor>& inputs) {
  // The compiled model checks its inputs' shapes and dtypes only when asked to;
  // without the check a wrong shape reads out of bounds.
  setenv("AOTI_RUNTIME_CHECK_INPUTS", "1", /*overwrite=*/0);
  torch::inductor::AOTIModelPackageLoader loader(path);
  std::vector<at::Tensor> outputs;
  {
    HeldStderr held;
    try {
      c10::InferenceMode guard;
      outputs = loader.run(inputs);
    } catch (const std::exception& e) {
      throw UsageError("the model rejected inputs of shape " + describe(inputs) + ": " +
                       summary(e.what()));
    }
    held.pass_on();
  }
  return outputs;
}

bool is_aoti_package(const std::string& path) {
  return std::filesystem::path(path).extension() == ".pt2";
}

void save_outputs(const std::vector<at::Tensor>& outputs, const std::string& path) {
  const c10::IValue value = outputs.size() == 1
                                ? c10::IValue(outputs[0])
                                : c10::IValue(c10::ivalue::Tuple::create(
                                      std::vector<c10::IValue>(outputs.begin(), outputs.end())));
  const std::vector<char> bytes = torch::jit::pickle_save(value);
  std::ofstream file(path, std::ios::binary);
  const int open_error = file ? 0 : errno;
  file.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!file) {
    throw UsageError("cannot write outputs to '" + path + "'" +
                     (open_error ? std::string(": ") + std::strerror(open_error) : ""));
  }
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
  g_running = describe(inputs);
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
  std::cout << laplace_attn::cli::summarize(outputs);
  if (!opts.output.empty())
    save_outputs(outputs, opts.output);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::set_terminate(report_terminate);
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "laplace-attn-infer: " << e.what() << "\n";
    if (std::string(e.what()).find("expected MODEL") != std::string::npos)
      std::cerr << kUsage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "laplace-attn-infer: " << summary(e.what()) << "\n";
    return 2;
  }
}
