"""The installed C++ package: `cmake --install` of the build, then a separate
project (tests/cpp/consumer) that finds it with find_package(laplace_attn), builds,
calls an operator through the public header and runs TorchScript and AOTInductor
models."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.utils

from export_models import make

ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("LAPLACE_ATTN_BUILD_DIR", ROOT / "build" / "cmake"))


def run(*command, **kwargs):
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                            timeout=600, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    if not (BUILD_DIR / "CMakeCache.txt").exists():
        pytest.fail(f"no CMake build in {BUILD_DIR}: run `bash scripts/setup.sh` first")
    prefix = tmp_path_factory.mktemp("install")
    run("cmake", "--install", BUILD_DIR, "--prefix", prefix)
    return prefix


@pytest.fixture(scope="module")
def consumer(prefix, tmp_path_factory):
    build = tmp_path_factory.mktemp("consumer")
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    # LAPLACE_ATTN_CMAKE_ARGS: what the package's own build was configured with
    # (setup.py reads it too), e.g. where a CUDA toolkit is.
    run("cmake", "-S", ROOT / "tests" / "cpp" / "consumer", "-B", build, *generator,
        f"-DCMAKE_PREFIX_PATH={prefix};{torch.utils.cmake_prefix_path}",
        *os.environ.get("LAPLACE_ATTN_CMAKE_ARGS", "").split())
    run("cmake", "--build", build)
    return build / "consumer"


def test_install_layout(prefix):
    for path in ("include/laplace_attn/ops.h", "include/laplace_attn/build_info.h",
                 "lib/liblaplace_attn.so", "lib/cmake/laplace_attn/laplace_attnConfig.cmake",
                 "lib/cmake/laplace_attn/laplace_attnConfigVersion.cmake",
                 "bin/laplace-attn-infer"):
        assert (prefix / path).exists(), path


def test_consumer_calls_an_operator_through_the_header(consumer):
    out = run(consumer).stdout
    assert "laplacian_attention: max |error| vs the O(N^2) formula" in out


def assert_consumer_matches_python(consumer, model, x, model_path):
    torch.save(x, model_path.parent / "x.pt")
    run(consumer, model_path, model_path.parent / "x.pt", model_path.parent / "y.pt")
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(torch.load(model_path.parent / "y.pt"), expected, atol=1e-5,
                               rtol=1e-5)


def test_consumer_runs_a_torchscript_model_like_python(consumer, tmp_path):
    model, x = make("stlt")
    torch.jit.script(model).save(str(tmp_path / "model.pt"))
    assert_consumer_matches_python(consumer, model, x, tmp_path / "model.pt")


def test_consumer_runs_an_aoti_package_like_python(consumer, tmp_path):
    model, x = make("tokens")
    program = torch.export.export(model, (x,))
    torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "m.pt2"))
    assert_consumer_matches_python(consumer, model, x, tmp_path / "m.pt2")


def test_installed_program_runs_from_its_prefix(prefix, tmp_path):
    model, x = make("tokens")
    torch.jit.script(model).save(str(tmp_path / "model.pt"))
    torch.save(x, tmp_path / "x.pt")
    # No LD_LIBRARY_PATH: the program finds the op library and libtorch itself.
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    run(prefix / "bin" / "laplace-attn-infer", tmp_path / "model.pt", tmp_path / "x.pt",
        "--output", tmp_path / "y.pt", env=env)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), expected, atol=1e-5, rtol=1e-5)
