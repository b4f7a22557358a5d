"""laplace_linear_attention against its float64 quadratic form
(linear_attention_reference.py): values, every gradient, states for streaming and
decoding, 16-bit inputs, errors, determinism, opcheck and torch.compile."""
import re

import pytest
import torch

import laplace_attn
from linear_attention_reference import make_linear_inputs, reference_linear_attention

ARG_NAMES = ["q", "k", "v", "decay", "freq", "c_fwd", "c_bwd", "gate", "state_fwd", "state_bwd"]
CONFIGS = [dict(bilateral=b, states=s, gate=g) for b in (False, True) for s in (False, True)
           for g in (False, True)]


def call(args):
    return laplace_attn.laplace_linear_attention(*(args[k] for k in ARG_NAMES))


def max_error(a, b):
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("N", [1, 64, 150])
def test_matches_quadratic_reference(config, N):
    args = make_linear_inputs(N=N, **config)
    for out, ref in zip(call(args), reference_linear_attention(**args)):
        err = max_error(out, ref)
        assert err <= 1e-12, err


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_gradients_match_reference_autograd(config):
    args = make_linear_inputs(N=150, requires_grad=True, **config)
    inputs = [args[k] for k in ARG_NAMES if args[k] is not None]
    gen = torch.Generator().manual_seed(1)
    out = call(args)
    # Weights on all three outputs, so the state outputs' gradients are checked too.
    weights = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in out]

    def loss(outs):
        return sum((o * w).sum() for o, w in zip(outs, weights))

    ours = torch.autograd.grad(loss(out), inputs)
    ref = torch.autograd.grad(loss(reference_linear_attention(**args)), inputs)
    for name, a, b in zip([k for k in ARG_NAMES if args[k] is not None], ours, ref):
        rel = max_error(a, b) / float(b.abs().max())
        assert rel <= 1e-11, (name, rel)


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[-1]], ids=str)
def test_gradcheck(config):
    args = make_linear_inputs(B=1, N=67, H=1, Dk=2, Dv=2, S=2, requires_grad=True, **config)
    inputs = tuple(args[k] for k in ARG_NAMES)
    assert torch.autograd.gradcheck(laplace_attn.laplace_linear_attention, inputs)


def test_gradcheck_of_a_decoding_step():
    """One causal token with a state takes the one-pass decoding path forward; the
    backward is the general one, so they must agree."""
    args = make_linear_inputs(B=2, N=1, H=2, Dk=2, Dv=3, S=2, bilateral=False, gate=True,
                              states=True, requires_grad=True)
    args["state_bwd"] = None
    inputs = tuple(args[k] for k in ARG_NAMES)
    assert torch.autograd.gradcheck(laplace_attn.laplace_linear_attention, inputs)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_decoding_step_in_low_precision(dtype):
    args = make_linear_inputs(N=1, bilateral=False, gate=True, states=True)
    args["state_bwd"] = None
    expected = reference_linear_attention(**args)
    low = {n: (t.float() if t is not None else None) for n, t in args.items()}
    low.update({n: args[n].to(dtype) for n in ("q", "k", "v")})
    y, final, first = call(low)
    assert y.dtype == dtype and final.dtype == torch.float32
    scale = float(expected[0].abs().max())
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    assert max_error(y, expected[0]) <= tol * scale
    assert max_error(final, expected[1]) <= tol * float(expected[1].abs().max())
    assert first.abs().max() == 0


def test_float32_close_to_float64():
    args = make_linear_inputs(N=200, Dk=8, Dv=8, S=4, bilateral=True, gate=True, states=True)
    ref = reference_linear_attention(**args)
    args32 = {k: (v.float() if v is not None else None) for k, v in args.items()}
    out = call(args32)
    assert out[0].dtype == torch.float32 and out[1].dtype == torch.float32
    for o, r in zip(out, ref):
        rel = max_error(o, r) / float(r.abs().max())
        assert rel <= 1e-5, rel


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_activations(dtype):
    args = make_linear_inputs(N=130, Dk=8, Dv=8, S=4, bilateral=True, gate=True)
    ref = reference_linear_attention(**args)
    low = dict(args)
    for name in ("q", "k", "v"):
        low[name] = args[name].to(dtype)
    for name in ("decay", "freq", "c_fwd", "c_bwd", "gate"):
        low[name] = args[name].float()
    y, final_fwd, _ = call(low)
    assert y.dtype == dtype and final_fwd.dtype == torch.float32
    # The reference on the rounded inputs: what remains is the output rounding.
    ref_rounded = reference_linear_attention(**{**args, **{n: low[n] for n in ("q", "k", "v")}})
    rel = max_error(y, ref_rounded[0]) / float(ref[0].abs().max())
    assert rel <= (1e-2 if dtype == torch.bfloat16 else 2e-3), rel


def test_autocast_runs_in_bfloat16_with_float32_states():
    args = make_linear_inputs(N=70, bilateral=True, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, final_fwd, first_bwd = call(args)
    assert y.dtype == torch.bfloat16
    assert final_fwd.dtype == torch.float32 and first_bwd.dtype == torch.float32


def test_streaming_in_pieces_equals_one_call():
    args = make_linear_inputs(N=200, bilateral=False, gate=True)
    y_full, final_full, _ = call(args)
    state = None
    ys = []
    for start, stop in [(0, 1), (1, 70), (70, 71), (71, 200)]:
        piece = dict(args, state_fwd=state)
        for name in ("q", "k", "v"):
            piece[name] = args[name][:, start:stop]
        y, state, _ = call(piece)
        ys.append(y)
    assert max_error(torch.cat(ys, 1), y_full) <= 1e-12
    assert max_error(state, final_full) <= 1e-12


def test_token_by_token_decoding_equals_one_call():
    args = make_linear_inputs(N=40, bilateral=False, dtype=torch.float32)
    y_full = call(args)[0]
    state = None
    for t in range(40):
        step = dict(args, state_fwd=state)
        for name in ("q", "k", "v"):
            step[name] = args[name][:, t:t + 1]
        y, state, _ = call(step)
        err = max_error(y, y_full[:, t:t + 1])
        assert err <= 1e-5, (t, err)


def test_bilateral_pieces_right_to_left_states():
    """The anticausal state of the right piece, passed as state_bwd, completes the left."""
    args = make_linear_inputs(N=150, bilateral=True)
    y_full, _, first_full = call(args)
    right = dict(args, **{n: args[n][:, 90:] for n in ("q", "k", "v")})
    _, _, first_right = call(right)
    left = dict(args, state_bwd=first_right, **{n: args[n][:, :90] for n in ("q", "k", "v")})
    y_left, _, first_left = call(left)
    assert max_error(first_left, first_full) <= 1e-12
    # The left piece sees the right one only through the anticausal state.
    assert max_error(y_left, reference_linear_attention(**left)[0]) <= 1e-12
    assert max_error(y_left, y_full[:, :90]) <= 1e-12


def test_empty_sequence_returns_the_initial_states():
    args = make_linear_inputs(N=0, bilateral=True, states=True)
    y, final_fwd, first_bwd = call(args)
    assert y.shape == (2, 0, 2, 4)
    assert max_error(final_fwd, args["state_fwd"]) == 0.0
    assert max_error(first_bwd, args["state_bwd"]) == 0.0


def test_results_do_not_depend_on_thread_count():
    args = make_linear_inputs(B=2, N=300, H=4, Dk=16, Dv=16, S=4, dtype=torch.float32,
                              gate=True, requires_grad=True)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            y = call(args)[0]
            grads = torch.autograd.grad((y * y).sum(), [args[k] for k in ("q", "k", "decay")])
            results.append((y, *grads))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("change, message", [
    (dict(q=torch.zeros(2, 70, 2)), "expected q of shape [B, N, H, D] (4-D)"),
    (dict(k=torch.zeros(2, 70, 2, 4, dtype=torch.float64)), "expected k of the shape of q"),
    (dict(v=torch.zeros(2, 71, 2, 4, dtype=torch.float64)), "expected v of shape [B, N, H, Dv]"),
    (dict(v=torch.zeros(2, 70, 2, 4, dtype=torch.float32)), "expected q, k and v of one dtype"),
    (dict(decay=torch.zeros(2, 4, dtype=torch.float64)), "expected freq of shape [H, S]"),
    (dict(c_fwd=torch.zeros(2, 3, 4, 2, dtype=torch.float64)), "expected c_fwd of shape [H, S, 2]"),
    (dict(gate=torch.zeros(2, 2, 4, dtype=torch.float64)), "expected gate of shape [B, H, S]"),
    (dict(state_fwd=torch.zeros(2, 2, 3, 3, 3, 2, dtype=torch.float64)),
     "expected state_fwd of shape [B, H, S, Dk, Dv, 2]"),
    (dict(c_bwd=None, state_bwd=torch.zeros(2, 2, 3, 3, 4, 2, dtype=torch.float64)),
     "state_bwd was given but c_bwd is None"),
    (dict(decay=-torch.ones(2, 3, dtype=torch.float64)), "expected decay >= 0"),
    (dict(c_fwd=torch.zeros(2, 3, 2)), "expected c_fwd of dtype"),
])
def test_errors_name_the_argument(change, message):
    args = make_linear_inputs(N=70, bilateral=True)
    args.update(change)
    with pytest.raises(RuntimeError, match=re.escape(message)):
        call(args)


def test_opcheck():
    samples = [
        make_linear_inputs(B=2, N=11, H=2, Dk=3, Dv=2, S=3, requires_grad=True),
        make_linear_inputs(B=1, N=70, H=1, Dk=2, Dv=3, S=2, bilateral=False, requires_grad=True),
        make_linear_inputs(B=2, N=5, H=2, S=3, gate=True, states=True, requires_grad=True),
        make_linear_inputs(B=1, N=6, H=2, S=2, gate=True, states=True, dtype=torch.float32),
    ]
    for args in samples:
        for return_states in (True, False):
            torch.library.opcheck(
                torch.ops.laplace_attn.laplace_linear_attention.default,
                tuple(args[k] for k in ARG_NAMES) + (return_states,),
                test_utils=("test_schema", "test_autograd_registration", "test_faketensor",
                            "test_aot_dispatch_dynamic"),
            )


def test_torch_compile_fullgraph_matches_eager():
    args = make_linear_inputs(B=1, N=70, gate=True, states=True, dtype=torch.float32,
                              requires_grad=True)

    def fn(*inputs):
        y, f, g = laplace_attn.laplace_linear_attention(*inputs)
        return (y * y).sum() + f.sum() - g.sum()

    inputs = [args[k] for k in ARG_NAMES]
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    eager_loss = fn(*inputs)
    compiled_loss = compiled(*inputs)
    torch.testing.assert_close(compiled_loss, eager_loss)
    for a, b in zip(torch.autograd.grad(eager_loss, inputs),
                    torch.autograd.grad(compiled_loss, inputs)):
        torch.testing.assert_close(a, b)


def test_double_backward_is_a_clear_error():
    args = make_linear_inputs(B=1, N=10, requires_grad=True)
    y = call(args)[0]
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        torch.autograd.grad(y.sum(), [args["q"]], create_graph=True)
