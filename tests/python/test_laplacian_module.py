"""LaplacianAttention: reference equality, Nystrom vs exact, causality, padding,
nn.Transformer integration, scripting/compile/export, errors."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import laplace_attn
from laplace_attn import LaplacianAttention

E, H = 16, 2


def make(**kw):
    torch.manual_seed(0)
    kw.setdefault("batch_first", True)
    kw.setdefault("num_landmarks", 4)
    return LaplacianAttention(E, H, **kw)


def reference(m, x, mem=None, causal=False):
    """Dense float64 attention with weights softmax(-inv_lambda ||q - k||_1), q and k scaled
    to unit root-mean-square per head first when the module has qk_norm."""
    mem = x if mem is None else mem
    B, N, M, D = x.shape[0], x.shape[1], mem.shape[1], E // H
    if m.in_proj_weight is not None:
        w_q, w_k, w_v = m.in_proj_weight.chunk(3)
    else:
        w_q, w_k, w_v = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
    b_q, b_k, b_v = m.in_proj_bias.chunk(3)
    q = F.linear(x, w_q, b_q).view(B, N, H, D).transpose(1, 2)
    k = F.linear(mem, w_k, b_k).view(B, M, H, D).transpose(1, 2)
    v = F.linear(mem, w_v, b_v).view(B, M, H, D).transpose(1, 2)
    if m.qk_norm:
        q = q / (q.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()
        k = k / (k.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()
    s = -m.inv_lambda()[None, :, None, None] * torch.cdist(q, k, p=1)
    if causal:
        s = s.masked_fill(torch.ones(N, M, dtype=torch.bool).triu(1), float("-inf"))
    z = torch.softmax(s, -1) @ v
    return m.out_proj(z.transpose(1, 2).reshape(B, N, E))


@pytest.mark.parametrize("causal", [False, True])
def test_exact_mode_equals_dense_reference(causal, device):
    m = make(exact=True).double()
    x = torch.randn(2, 20, E, dtype=torch.float64)
    expected = reference(m, x, causal=causal)
    xd = x.to(device)
    torch.testing.assert_close(m.to(device)(xd, xd, xd, is_causal=causal)[0].cpu(), expected)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_qk_norm_option_equals_reference(qk_norm):
    m = make(exact=True, qk_norm=qk_norm).double()
    x = torch.randn(2, 12, E, dtype=torch.float64)
    torch.testing.assert_close(m(x, x, x, is_causal=True)[0], reference(m, x, causal=True))


def test_qk_norm_makes_the_kernel_blind_to_query_and_key_scale():
    m, scaled = make(exact=True).double(), make(exact=True).double()
    with torch.no_grad():
        scaled.in_proj_weight[:2 * E] *= 7.0  # W_q and W_k (their biases are zero)
    x = torch.randn(2, 12, E, dtype=torch.float64)
    # Equal up to the 1e-6 under the root, which the scaling changes relative to q and k.
    torch.testing.assert_close(scaled(x, x, x)[0], m(x, x, x)[0], rtol=1e-4, atol=1e-5)
    plain = make(exact=True, qk_norm=False).double()
    plain.load_state_dict(scaled.state_dict())
    assert not torch.allclose(plain(x, x, x)[0], m(x, x, x)[0], atol=1e-3)


def test_cross_attention_equals_reference():
    m = make().double()
    x, mem = torch.randn(2, 9, E, dtype=torch.float64), torch.randn(2, 13, E, dtype=torch.float64)
    torch.testing.assert_close(m(x, mem, mem)[0], reference(m, x, mem))


def test_nystrom_with_enough_landmarks_is_exact(device):
    m = make(num_landmarks=30).double()
    x = torch.randn(2, 30, E, dtype=torch.float64)
    expected = reference(m, x)
    xd = x.to(device)
    torch.testing.assert_close(m.to(device)(xd, xd, xd)[0].cpu(), expected)
    m.cpu()
    approx = make(num_landmarks=6).double()
    out = approx(x, x, x)[0]
    assert out.shape == x.shape and not torch.allclose(out, reference(approx, x))


@pytest.mark.parametrize("kw", [dict(), dict(conv_kernel_size=5), dict(kernel="softmax")])
def test_causal_calls_never_see_later_tokens(kw):
    m = make(**kw)
    x = torch.randn(2, 30, E)
    x2 = x.clone()
    x2[:, 18:] = torch.randn(2, 12, E) * 5
    a = m(x, x, x, is_causal=True)[0]
    b = m(x2, x2, x2, attn_mask=nn.Transformer.generate_square_subsequent_mask(30))[0]
    torch.testing.assert_close(a[:, :18], b[:, :18], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(), dict(exact=True), dict(kernel="softmax")])
def test_padded_keys_influence_nothing(kw, device):
    m = make(**kw).to(device)
    x = torch.randn(2, 24, E)
    pad = torch.zeros(2, 24, dtype=torch.bool)
    pad[1, 16:] = True
    x2 = x.clone()
    x2[pad] = torch.randn(int(pad.sum()), E) * 10
    x, x2, pad = x.to(device), x2.to(device), pad.to(device)
    a = m(x, x, x, key_padding_mask=pad)[0]
    b = m(x2, x2, x2, key_padding_mask=pad)[0]
    torch.testing.assert_close(a[~pad], b[~pad], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(a).all()


def test_in_transformer_layers_train_and_eval():
    torch.manual_seed(0)
    enc = nn.TransformerEncoderLayer(E, H, 32, dropout=0.0, batch_first=True)
    dec = nn.TransformerDecoderLayer(E, H, 32, dropout=0.0, batch_first=True)
    assert laplace_attn.swap_attention(enc, kind="laplacian", num_landmarks=4) == 1
    assert laplace_attn.swap_attention(dec, kind="laplacian", num_landmarks=4) == 2
    x, mem = torch.randn(2, 12, E), torch.randn(2, 7, E)
    for module, call in [(enc, lambda: enc(x)),
                         (dec, lambda: dec(x, mem, tgt_is_causal=True,
                                           tgt_mask=nn.Transformer.generate_square_subsequent_mask(12)))]:
        module.train()
        out = call()
        out.sum().backward()
        module.eval()
        with torch.no_grad():
            torch.testing.assert_close(call(), out.detach())


def test_swap_copies_projections():
    mha = nn.MultiheadAttention(E, H, batch_first=True)
    holder = nn.Sequential(mha)
    laplace_attn.swap_attention(holder, kind="laplacian")
    assert torch.equal(holder[0].in_proj_weight, mha.in_proj_weight)
    assert torch.equal(holder[0].in_proj_bias, mha.in_proj_bias)
    assert torch.equal(holder[0].out_proj.weight, mha.out_proj.weight)


def test_swap_copies_separate_projections_for_other_kdim():
    mha = nn.MultiheadAttention(E, H, kdim=6, vdim=10, batch_first=True)
    holder = nn.Sequential(mha)
    laplace_attn.swap_attention(holder, kind="laplacian")
    new = holder[0]
    assert new.in_proj_weight is None
    for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
        assert torch.equal(getattr(new, name), getattr(mha, name))
    x, mem, val = torch.randn(2, 5, E), torch.randn(2, 7, 6), torch.randn(2, 7, 10)
    assert new(x, mem, val)[0].shape == (2, 5, E)


def test_state_dict_interchangeable_with_multihead_attention():
    mha = nn.MultiheadAttention(E, H, batch_first=True)
    m = make()
    missing, unexpected = m.load_state_dict(mha.state_dict(), strict=False)
    assert unexpected == [] and missing == ["log_inv_lambda"]
    assert torch.equal(m.in_proj_weight, mha.in_proj_weight)


class Tiny(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.attn = make(**kw)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


@pytest.mark.parametrize("kw", [dict(), dict(exact=True, conv_kernel_size=3)])
def test_script_compile_export(kw):
    model = Tiny(**kw).eval()
    x = torch.randn(2, 10, E)
    eager = model(x)
    torch.testing.assert_close(torch.jit.script(model)(x), eager)
    torch.testing.assert_close(torch.compile(model, fullgraph=True, backend="aot_eager")(x), eager)
    torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), eager)


def test_learnable_bandwidth_gets_gradient():
    m = make()
    x = torch.randn(2, 20, E)
    m(x, x, x)[0].square().sum().backward()
    assert m.log_inv_lambda.grad is not None and m.log_inv_lambda.grad.abs().sum() > 0


@pytest.mark.parametrize("build,message", [
    (lambda: LaplacianAttention(10, 3), "positive multiple of num_heads"),
    (lambda: LaplacianAttention(E, H, kernel="rbf"), "kernel must be one of"),
    (lambda: LaplacianAttention(E, H, normalization="x"), "normalization must be one of"),
    (lambda: LaplacianAttention(E, H, num_landmarks=0), "num_landmarks must be positive"),
])
def test_bad_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_non_causal_attn_mask_is_an_error():
    m = make()
    x = torch.randn(2, 6, E)
    with pytest.raises(RuntimeError, match="only a causal attn_mask is supported"):
        m(x, x, x, attn_mask=torch.zeros(6, 6, dtype=torch.bool))
