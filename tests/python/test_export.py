"""Export end to end: models built from the modules, saved with TorchScript and with
torch.export + AOTInductor, run in Python and by the C++ program laplace-attn-infer
(no Python in its process); torch.compile(fullgraph=True) forward and backward; the
program's errors."""
import subprocess
from pathlib import Path

import pytest
import torch
from torch.export import Dim

import laplace_attn
from export_models import NAMES, E, make

TOL = {"atol": 1e-5, "rtol": 1e-5}


def run_program(*args, check=True):
    result = subprocess.run([laplace_attn.infer_program(), *map(str, args)],
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def run_in_cpp(model_path, inputs, tmp_path):
    """Outputs of laplace-attn-infer for ``inputs``, as Python tensors."""
    input_path, output_path = tmp_path / "inputs.pt", tmp_path / "outputs.pt"
    torch.save(inputs, input_path)
    result = run_program(model_path, input_path, "--output", output_path)
    assert "output 0: shape" in result.stdout
    return torch.load(output_path)


@pytest.mark.parametrize("name", NAMES)
def test_torchscript_file_runs_in_cpp_with_python_outputs(name, tmp_path):
    model, x = make(name)
    with torch.no_grad():
        eager = model(x)
    path = tmp_path / "model.pt"
    torch.jit.script(model).save(str(path))
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(path))(x), eager, **TOL)
    torch.testing.assert_close(run_in_cpp(path, x, tmp_path), eager, **TOL)


@pytest.fixture(scope="module")
def stlt_package(tmp_path_factory):
    """The STLT encoder, exported with a dynamic sequence length and compiled by
    AOTInductor (the slow step, done once)."""
    model, x = make("stlt")
    seq = Dim("seq", min=2, max=8192)
    program = torch.export.export(model, (x,), dynamic_shapes=({1: seq},))
    path = tmp_path_factory.mktemp("aoti") / "stlt.pt2"
    torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return model, path


def test_aoti_package_runs_in_cpp_at_any_length(stlt_package, tmp_path):
    model, path = stlt_package
    for length in (40, 97):
        x = torch.randn(2, length, E)
        with torch.no_grad():
            eager = model(x)
        torch.testing.assert_close(run_in_cpp(path, x, tmp_path), eager, **TOL)


@pytest.fixture(scope="module")
def token_package(tmp_path_factory):
    """The token model (an embedding first), exported and compiled by AOTInductor."""
    model, x = make("tokens")
    program = torch.export.export(model, (x,))
    path = tmp_path_factory.mktemp("aoti") / "tokens.pt2"
    torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return model, program, path


def test_aoti_package_of_token_model_runs_in_cpp(token_package, tmp_path):
    model, program, path = token_package
    _, x = make("tokens")
    with torch.no_grad():
        eager = model(x)
    torch.testing.assert_close(program.module()(x), eager, **TOL)
    torch.testing.assert_close(torch._inductor.aoti_load_package(str(path))(x), eager, **TOL)
    torch.testing.assert_close(run_in_cpp(path, x, tmp_path), eager, **TOL)


@pytest.mark.parametrize("token", [10**9, -5, 50])
def test_program_reports_out_of_range_tokens_without_aborting(token_package, token, tmp_path):
    # A compiled model checks indices inside OpenMP regions, where the exception
    # cannot unwind: it used to abort (SIGABRT, "terminate called recursively").
    model, _, package = token_package
    script_path = tmp_path / "tokens.pt"
    torch.jit.script(model).save(str(script_path))
    torch.save(torch.full((2, 40), token), tmp_path / "ids.pt")
    for path in (package, script_path):
        for threads in ("1", "2"):
            result = run_program(path, tmp_path / "ids.pt", "--threads", threads, check=False)
            assert result.returncode == 2, (path.suffix, result.returncode, result.stderr)
            lines = result.stderr.splitlines()
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith("laplace-attn-infer: the model ")
            assert "[2, 40] Long" in lines[0] and "index out of" in lines[0]


def test_program_prints_one_line_for_a_compiled_models_input_checks(token_package, tmp_path):
    _, _, package = token_package
    torch.save(torch.zeros(2, 40), tmp_path / "floats.pt")
    torch.save(torch.zeros(2, 41, dtype=torch.long), tmp_path / "long.pt")
    for name in ("floats.pt", "long.pt"):
        result = run_program(package, tmp_path / name, check=False)
        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "the model rejected inputs of shape" in result.stderr


def test_program_summarises_complex_outputs_as_complex(tmp_path):
    class ToComplex(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.view_as_complex(x)

    torch.jit.script(ToComplex()).save(str(tmp_path / "complex.pt"))
    torch.save(torch.tensor([[1.0, 2.0], [3.0, -4.0]]), tmp_path / "pairs.pt")
    result = run_program(tmp_path / "complex.pt", tmp_path / "pairs.pt")
    assert "(+1.000000, +2.000000i) (+3.000000, -4.000000i)" in result.stdout
    assert "sum: (4.000000, -2.000000i)" in result.stdout


@pytest.mark.parametrize("layout", ["expanded", "scalar expanded", "sliced", "transposed"])
def test_program_reads_inputs_of_any_layout(layout, tmp_path):
    class Total(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sum().reshape(1)

    torch.jit.script(Total()).save(str(tmp_path / "total.pt"))
    base = torch.arange(12.0)
    x = {"expanded": base[:3].expand(4, 3), "scalar expanded": torch.tensor(2.0).expand(5, 2),
         "sliced": base[1::3], "transposed": base.view(3, 4).t()}[layout]
    torch.save(x, tmp_path / "x.pt")
    assert torch.equal(run_in_cpp(tmp_path / "total.pt", x, tmp_path), x.sum().reshape(1))


@pytest.mark.parametrize("name", NAMES)
def test_compile_fullgraph_matches_eager_forward_and_backward(name):
    model, x = make(name)
    model.train()
    compiled = torch.compile(model, fullgraph=True)
    outputs = []
    for run in (model, compiled):
        model.zero_grad()
        out = run(x)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        outputs.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (eager, eager_grads), (comp, comp_grads) = outputs
    torch.testing.assert_close(comp, eager, **TOL)
    for g_comp, g_eager in zip(comp_grads, eager_grads):
        torch.testing.assert_close(g_comp, g_eager, atol=1e-4, rtol=1e-4)


# --- the program's errors -------------------------------------------------------------

def test_program_reports_missing_files(tmp_path):
    result = run_program(tmp_path / "absent.pt", tmp_path / "x.pt", check=False)
    assert result.returncode == 2
    assert "model file" in result.stderr and "does not exist" in result.stderr
    model_path = tmp_path / "model.pt"
    torch.jit.script(make("stlt")[0]).save(str(model_path))
    result = run_program(model_path, tmp_path / "absent.pt", check=False)
    assert result.returncode == 2 and "inputs file" in result.stderr


def test_program_reports_bad_arguments(tmp_path):
    result = run_program(check=False)
    assert result.returncode == 2 and "usage:" in result.stderr
    for threads in ("zero", "0", "-3", "100000", "2147483648", "4294967297", "99999999999"):
        result = run_program("a", "b", "--threads", threads, check=False)
        assert result.returncode == 2, threads
        assert "--threads expects an integer from 1 to 1024" in result.stderr
    torch.save(torch.zeros(3), tmp_path / "x.pt")
    result = run_program(tmp_path / "x.pt", tmp_path / "x.pt", check=False)
    assert result.returncode == 2 and "is not a model" in result.stderr
    torch.save({"a": 1}, tmp_path / "dict.pt")
    torch.jit.script(make("stlt")[0]).save(str(tmp_path / "model.pt"))
    result = run_program(tmp_path / "model.pt", tmp_path / "dict.pt", check=False)
    assert result.returncode == 2 and "expected a tensor or a tuple/list of tensors" in result.stderr


@torch.library.custom_op("laplace_attn_test::double_it", mutates_args=())
def _double_it(x: torch.Tensor) -> torch.Tensor:
    return x * 2


class UsesForeignOperator(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.laplace_attn_test.double_it(x)


def test_program_names_an_operator_it_does_not_have(tmp_path):
    torch.jit.script(UsesForeignOperator()).save(str(tmp_path / "foreign.pt"))
    torch.save(torch.zeros(3), tmp_path / "x.pt")
    result = run_program(tmp_path / "foreign.pt", tmp_path / "x.pt", check=False)
    assert result.returncode == 2
    assert "operator laplace_attn_test::double_it" in result.stderr


def test_program_reports_wrong_input_shape(stlt_package, tmp_path):
    model, package = stlt_package
    script_path = tmp_path / "model.pt"
    torch.jit.script(model).save(str(script_path))
    torch.save(torch.randn(2, 40, E + 1), tmp_path / "bad.pt")
    for path in (script_path, package):
        result = run_program(path, tmp_path / "bad.pt", check=False)
        assert result.returncode == 2, result.stdout
        assert "rejected inputs of shape [2, 40, 33]" in result.stderr


REGRESSIONS = sorted((Path(__file__).resolve().parents[1] / "fuzz" / "regressions").iterdir())


@pytest.mark.parametrize("found", REGRESSIONS, ids=lambda p: p.name)
def test_program_refuses_what_the_fuzzer_found_in_one_line(found, tmp_path):
    # Each file once crashed, aborted or exhausted memory in the input handling.
    torch.jit.script(make("stlt")[0]).save(str(tmp_path / "model.pt"))
    result = run_program(tmp_path / "model.pt", found, check=False)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"laplace-attn-infer: inputs '{found}'") or \
        result.stderr.startswith(f"laplace-attn-infer: cannot read inputs '{found}'")
