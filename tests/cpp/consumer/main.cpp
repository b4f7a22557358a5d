// Uses laplace_attn from C++ with no Python: calls an operator through the
// public header, then runs a model exported from Python.
//
//   consumer [MODEL INPUTS OUTPUT]
//
// MODEL is a TorchScript file or an AOTInductor package (.pt2).
#include <laplace_attn/ops.h>

#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  const laplace_attn::BuildInfo info = laplace_attn::build_info();
  std::cout << "laplace_attn " << info.version << ", simd " << info.simd << "\n";

  // Exact causal Laplacian attention, checked against its O(N^2) definition:
  // softmax over keys j <= i of -||q_i - k_j||_1 / lambda.
  at::manual_seed(0);
  const at::Tensor q = at::randn({1, 2, 64, 16}), k = at::randn({1, 2, 64, 16}),
                   v = at::randn({1, 2, 64, 8});
  const at::Tensor inv_lambda = at::full({}, 0.25);
  const at::Tensor out =
      laplace_attn::laplacian_attention(q, k, v, inv_lambda, std::nullopt, /*causal=*/true);
  const at::Tensor future = at::ones({64, 64}, at::kBool).triu(1);
  const at::Tensor scores = (-0.25 * at::cdist(q, k, /*p=*/1)).masked_fill(future, -INFINITY);
  const double error = (out - at::softmax(scores, -1).matmul(v)).abs().max().item<double>();
  std::cout << "laplacian_attention: max |error| vs the O(N^2) formula = " << error << "\n";
  if (error > 1e-5)
    return 1;

  // A model saved in Python, applied to torch.save(x, INPUTS); the result is
  // saved for torch.load. The op library registered our operators when it
  // loaded, so the model's calls to them resolve.
  if (argc == 4) {
    std::ifstream in(argv[2], std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
    const at::Tensor x = torch::jit::pickle_load(bytes).toTensor();
    at::Tensor y;
    const std::string path = argv[1];
    if (path.size() > 4 && path.substr(path.size() - 4) == ".pt2") {
      // torch._inductor.aoti_compile_and_package(torch.export.export(model, ...))
      torch::inductor::AOTIModelPackageLoader loader(path);
      y = loader.run({x})[0];
    } else {
      // torch.jit.script(model).save(path)
      torch::jit::Module model = torch::jit::load(path);
      y = model.forward({x}).toTensor();
    }
    const std::vector<char> saved = torch::jit::pickle_save(y);
    std::ofstream(argv[3], std::ios::binary).write(saved.data(), saved.size());
    std::cout << "model output " << y.sizes() << " saved to " << argv[3] << "\n";
  }
  return 0;
}
