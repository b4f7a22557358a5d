"""gumbel_node_gate against the binary Concrete formula written here."""
import pytest
import torch
from torch.autograd import gradcheck

import laplace_attn
from conftest import to_device


def reference_gate(logits, noise, tau, hard, training):
    l = logits.double()
    if training and noise is not None:
        u = noise.double().clamp(1e-7, 1 - 1e-7)
        l = l + torch.log(u) - torch.log1p(-u)
    z = l / tau
    return (z > 0).double() if hard else torch.sigmoid(z)


def inputs(shape=(3, 2, 7), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(*shape, generator=g, dtype=torch.float64) * 2).to(dtype)
    noise = torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype)
    return logits, noise


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_matches_formula(training, hard, tau, device):
    logits, noise = inputs()
    out = laplace_attn.gumbel_node_gate(*to_device((logits, noise), device), tau, hard, training)
    torch.testing.assert_close(out.cpu(), reference_gate(logits, noise, tau, hard, training),
                               rtol=1e-12, atol=1e-12)


def test_no_noise_in_training_is_the_eval_gate():
    logits, _ = inputs()
    torch.testing.assert_close(laplace_attn.gumbel_node_gate(logits, None, 0.5, False, True),
                               laplace_attn.gumbel_node_gate(logits, None, 0.5, False, False))


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_soft(training, device):
    logits, noise = to_device(inputs(shape=(2, 5)), device)
    logits.requires_grad_()
    assert gradcheck(lambda l: laplace_attn.gumbel_node_gate(l, noise, 0.7, False, training),
                     (logits,))


def test_hard_gate_passes_the_soft_gradient_straight_through(device):
    logits, noise = to_device(inputs(), device)
    logits.requires_grad_()
    w = torch.randn_like(logits)
    hard = laplace_attn.gumbel_node_gate(logits, noise, 0.5, True, True)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    (g_hard,) = torch.autograd.grad((hard * w).sum(), logits)
    soft = reference_gate(logits, noise, 0.5, False, True)
    (g_soft,) = torch.autograd.grad((soft * w).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft)


def test_extreme_noise_stays_finite():
    logits = torch.tensor([0.0, 1.0, -1.0], requires_grad=True)
    noise = torch.tensor([0.0, 1.0, 0.5])
    out = laplace_attn.gumbel_node_gate(logits, noise, 0.1, False, True)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision(dtype):
    logits, noise = inputs(dtype=dtype)
    out = laplace_attn.gumbel_node_gate(logits, noise, 0.5, False, True)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), reference_gate(logits, noise, 0.5, False, True),
                               rtol=1e-2, atol=1e-2)


def test_opcheck():
    logits, noise = inputs(shape=(2, 3, 4))
    for args in [(logits.requires_grad_(), noise, 0.5, False, True),
                 (logits, None, 1.0, True, False), (logits.float(), noise.float(), 2.0, True, True)]:
        torch.library.opcheck(torch.ops.laplace_attn.gumbel_node_gate.default, args)


@pytest.mark.parametrize("args,message", [
    ((torch.zeros(3), None, 0.0, False, True), "expected tau > 0"),
    ((torch.zeros(3), torch.rand(4), 1.0, False, True), "expected noise of shape"),
    ((torch.zeros(3), torch.rand(3, dtype=torch.float64), 1.0, False, True),
     "expected noise of dtype"),
    ((torch.zeros(3, dtype=torch.long), None, 1.0, False, True), "expected logits of dtype"),
])
def test_bad_inputs(args, message):
    with pytest.raises(RuntimeError, match=message):
        laplace_attn.gumbel_node_gate(*args)
