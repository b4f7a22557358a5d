// laplace-attn-infer: runs an exported model on tensors saved from Python, with
// no Python in the process. The op library is linked, so the laplace_attn
// operators a model calls resolve at load time.
//
//   laplace-attn-infer MODEL INPUTS [--output FILE] [--threads N]
//   laplace-attn-infer MODEL PROMPT --generate N [--text] [--temperature T]
//                      [--top-k K] [--seed S] [--output FILE] [--threads N]
//
// MODEL is a TorchScript file (torch.jit.save) or an AOTInductor package
// (.pt2, torch._inductor.aoti_compile_and_package); INPUTS is torch.save of a
// tensor or of a tuple/list of tensors. The outputs are printed and, with
// --output, saved so that torch.load reads them. With --generate, a scripted
// language model with a decoding cache continues the prompt token by token.
#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/csrc/jit/serialization/pickle.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "cli/generate.h"
#include "cli/inputs.h"
#include "laplace_attn/build_info.h"

namespace {

using laplace_attn::cli::describe;
using laplace_attn::cli::UsageError;

constexpr const char* kUsage =
    "usage: laplace-attn-infer MODEL INPUTS [--output FILE] [--threads N]\n"
    "       laplace-attn-infer MODEL PROMPT --generate N [--text] [--temperature T]\n"
    "                          [--top-k K] [--seed S] [--output FILE] [--threads N]\n"
    "\n"
    "  MODEL    TorchScript file (torch.jit.save) or AOTInductor package (.pt2)\n"
    "  INPUTS   torch.save(tensor) or torch.save((tensor, ...)): the model's inputs\n"
    "  PROMPT   torch.save of int64 token ids [B, n]; with --text, a text file whose\n"
    "           bytes are the tokens (a byte-level model)\n"
    "  --generate N     continue the prompt by N tokens through the model's decoding\n"
    "                   cache (a TorchScript laplace_attn.DecoderLM, or any scripted\n"
    "                   model with new_cache and forward(tokens, cache))\n"
    "  --temperature T  sampling temperature, 0 = the most likely token (default 1)\n"
    "  --top-k K        sample among the K most likely tokens (default 0 = all)\n"
    "  --seed S         random seed, as torch.Generator().manual_seed(S) (default 0)\n"
    "  --text           PROMPT is text, and the continuation is printed as text\n"
    "  --output FILE   save the outputs (or the generated tokens) there (torch.load reads them)\n"
    "  --threads N     intra-op threads (default: PyTorch's)\n"
    "  --version       print the laplace_attn build and exit\n";

// More threads than this is a typo, not a machine: libgomp would try to start them.
constexpr long kMaxThreads = 1024;

// More new tokens than this is a typo: the caches of some models grow with it.
constexpr long long kMaxNewTokens = 1LL << 24;

struct Options {
  std::string model, inputs, output;
  int threads = 0;
  bool generating = false, text = false;
  laplace_attn::cli::GenerateOptions generation;
};

long long parse_integer(const std::string& option, const std::string& value, long long lowest,
                        long long highest) {
  char* end = nullptr;
  errno = 0;
  const long long number = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || errno == ERANGE || number < lowest || number > highest) {
    throw UsageError(option + " expects an integer from " + std::to_string(lowest) + " to " +
                     std::to_string(highest) + ", got '" + value + "'");
  }
  return number;
}

double parse_temperature(const std::string& value) {
  char* end = nullptr;
  errno = 0;
  const double number = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0' || errno == ERANGE || !(number >= 0.0) || number == HUGE_VAL) {
    throw UsageError("--temperature expects a number >= 0 (0 = the most likely token), got '" +
                     value + "'");
  }
  return number;
}

Options parse_args(int argc, char** argv) {
  Options opts;
  std::vector<std::string> positional;
  bool sampling_option = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool takes_value = arg == "--output" || arg == "-o" || arg == "--threads" ||
                             arg == "--generate" || arg == "--temperature" || arg == "--top-k" ||
                             arg == "--seed";
    if (takes_value && i + 1 >= argc)
      throw UsageError(arg + " needs a value");
    if (arg == "--output" || arg == "-o") {
      opts.output = argv[++i];
    } else if (arg == "--threads") {
      opts.threads = static_cast<int>(parse_integer(arg, argv[++i], 1, kMaxThreads));
    } else if (arg == "--generate") {
      opts.generating = true;
      opts.generation.new_tokens = parse_integer(arg, argv[++i], 1, kMaxNewTokens);
    } else if (arg == "--temperature") {
      sampling_option = true;
      opts.generation.temperature = parse_temperature(argv[++i]);
    } else if (arg == "--top-k") {
      sampling_option = true;
      opts.generation.top_k = parse_integer(arg, argv[++i], 0, kMaxNewTokens);
    } else if (arg == "--seed") {
      sampling_option = true;
      opts.generation.seed = static_cast<uint64_t>(
          parse_integer(arg, argv[++i], 0, std::numeric_limits<long long>::max()));
    } else if (arg == "--text") {
      sampling_option = true;
      opts.text = true;
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
  if (sampling_option && !opts.generating)
    throw UsageError("--temperature, --top-k, --seed and --text go with --generate N");
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

std::vector<char> read_bytes(const std::string& path, const char* what) {
  std::ifstream file(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (bytes.empty())
    throw UsageError(std::string(what) + " file '" + path + "' is empty");
  return bytes;
}

std::vector<at::Tensor> load_inputs(const std::string& path) {
  return laplace_attn::cli::parse_inputs(read_bytes(path, "inputs"), path);
}

// The prompt's token ids [B, n]: the bytes of a text file (--text), or a saved tensor.
at::Tensor load_prompt(const Options& opts) {
  if (opts.text) {
    const std::vector<char> bytes = read_bytes(opts.inputs, "prompt");
    std::vector<int64_t> tokens(bytes.begin(), bytes.end());
    for (int64_t& token : tokens)
      token &= 0xff;  // char may be signed; a byte is 0..255
    return at::tensor(tokens, at::kLong).unsqueeze(0);
  }
  const std::vector<at::Tensor> inputs = load_inputs(opts.inputs);
  if (inputs.size() != 1 || inputs[0].scalar_type() != at::kLong || inputs[0].dim() != 2 ||
      inputs[0].size(0) == 0 || inputs[0].size(1) == 0) {
    throw UsageError(
        "--generate expects PROMPT to hold one int64 tensor of token ids [B, n] "
        "with B, n >= 1 (or a text file with --text), got " +
        describe(inputs));
  }
  return inputs[0];
}

void print_generation(const laplace_attn::cli::Generation& result, int64_t prompt_length,
                      bool text) {
  const int64_t new_tokens = result.tokens.size(1) - prompt_length;
  std::printf(
      "prefill: %lld tokens in %.1f ms; decode: %lld tokens in %.1f ms (%.3f ms/token, "
      "%.0f tokens/s per sequence)\n",
      static_cast<long long>(prompt_length), 1e3 * result.prefill_seconds,
      static_cast<long long>(new_tokens), 1e3 * result.decode_seconds,
      1e3 * result.decode_seconds / static_cast<double>(new_tokens),
      static_cast<double>(new_tokens) / result.decode_seconds);
  const at::Tensor tokens = result.tokens.contiguous();
  for (int64_t row = 0; row < tokens.size(0); ++row) {
    const int64_t* ids = tokens[row].data_ptr<int64_t>();
    if (text) {
      std::string continuation;
      for (int64_t t = 0; t < tokens.size(1); ++t) {
        if (ids[t] < 0 || ids[t] > 255) {
          throw UsageError("--text needs a byte-level model (tokens 0..255); it generated token " +
                           std::to_string(ids[t]));
        }
        continuation.push_back(static_cast<char>(ids[t]));
      }
      std::cout << continuation << "\n";
      continue;
    }
    std::cout << "row " << row << ":";
    for (int64_t t = prompt_length; t < tokens.size(1); ++t)
      std::cout << " " << ids[t];
    std::cout << "\n";
  }
}

at::Tensor run_generation(const Options& opts, const at::Tensor& prompt) {
  if (is_aoti_package(opts.model)) {
    throw UsageError(
        "--generate runs TorchScript models (the decoding cache is a method of the "
        "scripted model); '" +
        opts.model + "' is an AOTInductor package");
  }
  torch::jit::Module module = torch::jit::load(opts.model);
  module.eval();
  laplace_attn::cli::Generation result;
  try {
    result = laplace_attn::cli::generate(module, prompt, opts.generation);
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    throw UsageError("the model rejected the prompt of shape " + describe({prompt}) + ": " +
                     summary(e.what()));
  }
  std::cout << "model: " << opts.model << " (TorchScript)\nprompt: " << describe({prompt}) << "\n";
  print_generation(result, prompt.size(1), opts.text);
  return result.tokens;
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
  require_file(opts.inputs, opts.generating ? "prompt" : "inputs");
  if (opts.threads > 0)
    at::set_num_threads(opts.threads);

  const std::vector<at::Tensor> inputs =
      opts.generating ? std::vector<at::Tensor>{load_prompt(opts)} : load_inputs(opts.inputs);
  g_running = describe(inputs);
  std::vector<at::Tensor> outputs;
  try {
    if (opts.generating)
      outputs = {run_generation(opts, inputs[0])};
    else
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
  if (!opts.generating) {
    std::cout << "model: " << opts.model
              << (is_aoti_package(opts.model) ? " (AOTInductor)" : " (TorchScript)")
              << "\ninputs: " << describe(inputs) << "\n";
    std::cout << laplace_attn::cli::summarize(outputs);
  }
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
