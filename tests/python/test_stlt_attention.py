"""STLTAttention: reference equality, causality, padding, nn.Transformer
integration, scripting/compile/export, adaptive gates, errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import laplace_attn
from laplace_attn import STLTAttention
from linear_attention_reference import reference_linear_attention
from scan_reference import reference_scan

E, H = 16, 2


def make(seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("num_nodes", 5)
    kw.setdefault("batch_first", True)
    return STLTAttention(E, H, **kw)


def randomize(m):
    # Non-trivial values everywhere, including biases initialised to zero.
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 1 and p is not m.window_raw:
                p.normal_(0.0, 0.3)
    return m


def reference_forward(m, x, causal):
    """The scan-mode layer in plain float64 PyTorch, with an O(N^2) scan."""
    B, N, _ = x.shape
    D = E // H
    q, k, v = F.linear(x, m.in_proj_weight, m.in_proj_bias).chunk(3, dim=-1)
    u = k * v if m.mixer == "multiplicative" else v
    sigma = F.softplus(m.sigma_raw) + m.sigma_min
    decay = sigma + 1.0 / F.softplus(m.window_raw)[:, None]
    norm = torch.sqrt(1.0 - torch.exp(-2.0 * decay))[:, :, None, None]
    c_bwd = None if causal else m.c_bwd * norm
    y = reference_scan(u.reshape(B, N, H, D), decay, m.omega, m.c_fwd * norm, c_bwd)[0]
    y = y.reshape(B, N, E)
    if m.mixer == "gated":
        y = torch.sigmoid(q) * y
    elif m.mixer == "multiplicative":
        y = q * y
    return m.out_proj(y)


@pytest.mark.parametrize("mixer", ["plain", "gated", "multiplicative"])
@pytest.mark.parametrize("causal", [False, True])
def test_equals_plain_pytorch_reference(mixer, causal, device):
    m = randomize(make(mixer=mixer, causal=causal)).double()
    x = torch.randn(2, 30, E, dtype=torch.float64)
    expected = reference_forward(m, x, causal)
    xd = x.to(device)
    out, weights = m.to(device)(xd, xd, xd)
    assert weights is None
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-10, atol=1e-10)


def reference_linear_forward(m, x, causal):
    """The linear mixer in plain float64 PyTorch, on the quadratic reference."""
    B, N, _ = x.shape
    D = E // H
    qkv = F.linear(x, m.in_proj_weight, m.in_proj_bias)
    if m.short_conv:
        size = m.short_conv
        left = size - 1 if causal else size // 2
        padded = F.pad(qkv.transpose(1, 2), (left, size - 1 - left))
        qkv = F.conv1d(padded, m.qkv_conv.weight, groups=3 * E).transpose(1, 2)
    q, k, v = qkv.chunk(3, dim=-1)
    if m.feature_map == "elu":
        q, k = F.elu(q) + 1, F.elu(k) + 1
    k = k / math.sqrt(D)
    sigma = F.softplus(m.sigma_raw) + m.sigma_min
    decay = sigma + 1.0 / F.softplus(m.window_raw)[:, None]
    y = reference_linear_attention(q.reshape(B, N, H, D), k.reshape(B, N, H, D),
                                   v.reshape(B, N, H, D), decay, m.omega, m.c_fwd,
                                   None if causal else m.c_bwd)[0]
    y = y * torch.rsqrt(y.square().mean(-1, keepdim=True) + 1e-5) * m.out_norm.weight
    return m.out_proj(y.reshape(B, N, E))


@pytest.mark.parametrize("options", [dict(), dict(short_conv=4), dict(feature_map="identity"),
                                     dict(short_conv=3, feature_map="identity")], ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_linear_mixer_equals_plain_pytorch_reference(options, causal):
    m = randomize(make(mixer="linear", causal=causal, **options)).double()
    with torch.no_grad():
        m.c_fwd.normal_()
        if m.c_bwd is not None:
            m.c_bwd.normal_()
    x = torch.randn(2, 70, E, dtype=torch.float64)
    out, weights = m(x, x, x)
    assert weights is None
    torch.testing.assert_close(out, reference_linear_forward(m, x, causal), rtol=1e-10,
                               atol=1e-10)


def test_linear_mixer_kernel_is_one_per_head():
    m = make(mixer="linear", causal=True)
    k_fwd, k_bwd = m.kernel(20)
    assert k_fwd.shape == (H, 1, 20) and torch.equal(k_bwd, torch.zeros_like(k_bwd))
    # Readout weights start at 1/S: K(0) = 1 in every head, then damped oscillations.
    torch.testing.assert_close(k_fwd[..., 0], torch.ones(H, 1))


def test_sequence_first_layout():
    m = make(batch_first=False)
    x = torch.randn(12, 3, E)
    out, _ = m(x, x, x)
    assert out.shape == (12, 3, E)
    mb = make(batch_first=True)
    mb.load_state_dict(m.state_dict())
    xb = x.transpose(0, 1)
    torch.testing.assert_close(mb(xb, xb, xb)[0].transpose(0, 1), out)


CAUSAL_VARIANTS = [
    dict(causal=True),
    dict(causal=True, adaptive=True),
    dict(causal=True, mixer="gated", dropout=0.2),
    dict(causal=True, mode="relevance", adaptive=True),
    dict(causal=False, mixer="plain"),  # bilateral layer called with is_causal=True
    dict(causal=True, mixer="linear", short_conv=4),
    dict(causal=True, mixer="linear", adaptive=True),
    dict(causal=False, mixer="linear", short_conv=3),
]


@pytest.mark.parametrize("kw", CAUSAL_VARIANTS)
@pytest.mark.parametrize("training", [True, False])
def test_no_output_depends_on_a_later_token(kw, training, device):
    m = randomize(make(**kw)).train(training).to(device)
    x = torch.randn(2, 40, E)
    t = 23
    x2 = x.clone()
    x2[:, t + 1:] = torch.randn(2, 40 - t - 1, E) * 5
    x, x2 = x.to(device), x2.to(device)
    outs = []
    for inp in (x, x2):
        torch.manual_seed(5)  # the same Gumbel noise and dropout masks in both calls
        outs.append(m(inp, inp, inp, is_causal=True, need_weights=False)[0])
    assert torch.equal(outs[0][:, :t + 1], outs[1][:, :t + 1])
    assert not torch.equal(outs[0][:, t + 1:], outs[1][:, t + 1:])


def test_causal_attn_mask_selects_the_causal_path():
    m = randomize(make())
    x = torch.randn(2, 10, E)
    mask = nn.Transformer.generate_square_subsequent_mask(10)
    by_mask = m(x, x, x, attn_mask=mask)[0]
    by_bool = m(x, x, x, attn_mask=torch.ones(10, 10, dtype=torch.bool).triu(1))[0]
    by_flag = m(x, x, x, is_causal=True)[0]
    torch.testing.assert_close(by_mask, by_flag)
    torch.testing.assert_close(by_bool, by_flag)


@pytest.mark.parametrize("kw", [dict(), dict(adaptive=True), dict(causal=True, adaptive=True),
                                dict(mode="relevance"), dict(mixer="gated"),
                                dict(mixer="linear"), dict(mixer="linear", short_conv=3),
                                dict(mixer="linear", causal=True, short_conv=4)])
def test_padded_tokens_influence_nothing(kw, device):
    m = randomize(make(**kw)).eval().to(device)
    x = torch.randn(2, 25, E)
    pad = torch.zeros(2, 25, dtype=torch.bool)
    pad[0, 18:] = True
    pad[1, :4] = True
    x2 = x.clone()
    x2[pad] = torch.randn(int(pad.sum()), E) * 10
    x, x2, pad = x.to(device), x2.to(device), pad.to(device)
    a = m(x, x, x, key_padding_mask=pad)[0]
    b = m(x2, x2, x2, key_padding_mask=pad)[0]
    assert torch.equal(a[~pad], b[~pad])
    assert torch.isfinite(a).all()
    # A float mask with -inf at the padding means the same.
    fpad = torch.zeros(2, 25, device=device).masked_fill(pad, float("-inf"))
    assert torch.equal(m(x, x, x, key_padding_mask=fpad)[0], a)


def test_relevance_mode_weights_are_a_causal_softmax():
    m = randomize(make(mode="relevance", causal=True))
    x = torch.randn(2, 12, E)
    out, w = m(x, x, x, need_weights=True)
    assert w.shape == (2, 12, 12)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 12))
    assert torch.all(w.triu(1) == 0)
    out_fast, none = m(x, x, x, need_weights=False)
    assert none is None
    torch.testing.assert_close(out_fast, out, rtol=1e-5, atol=1e-5)
    per_head = m(x, x, x, average_attn_weights=False)[1]
    assert per_head.shape == (2, H, 12, 12)


def test_in_transformer_encoder_and_decoder_layers():
    torch.manual_seed(0)
    enc = nn.TransformerEncoderLayer(E, H, 32, dropout=0.0, batch_first=True)
    dec = nn.TransformerDecoderLayer(E, H, 32, dropout=0.0, batch_first=True)
    stack = nn.TransformerEncoder(nn.TransformerEncoderLayer(E, H, 32, 0.0, batch_first=True), 3,
                                  enable_nested_tensor=False)
    assert laplace_attn.swap_attention(enc, num_nodes=4) == 1
    assert laplace_attn.swap_attention(dec, num_nodes=4, causal=True) == 1  # cross stays
    assert isinstance(dec.multihead_attn, nn.MultiheadAttention)
    assert laplace_attn.swap_attention(stack, num_nodes=4) == 3
    x, memory = torch.randn(2, 9, E), torch.randn(2, 7, E)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, -2:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(9)
    for module, call in [
        (enc, lambda: enc(x, src_key_padding_mask=pad)),
        (dec, lambda: dec(x, memory, tgt_mask=causal, tgt_is_causal=True)),
        (stack, lambda: stack(x, src_key_padding_mask=pad)),
    ]:
        module.train()
        train_out = call()
        train_out.sum().backward()
        assert all(p.grad is not None for p in module.parameters() if p.requires_grad)
        module.eval()
        with torch.no_grad():  # where nn.TransformerEncoderLayer's fast path would run
            eval_out = call()
        torch.testing.assert_close(eval_out, train_out.detach())


def test_swap_attention_copies_projections():
    mha = nn.MultiheadAttention(E, H, batch_first=True)
    holder = nn.Sequential(mha)
    laplace_attn.swap_attention(holder, num_nodes=3)
    new = holder[0]
    assert isinstance(new, STLTAttention) and new.batch_first
    assert torch.equal(new.in_proj_weight, mha.in_proj_weight)
    assert torch.equal(new.out_proj.weight, mha.out_proj.weight)
    with pytest.raises(ValueError, match="kind must be one of"):
        laplace_attn.swap_attention(holder, kind="nope")


class TinyModel(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.attn = make(**kw)
        self.proj = nn.Linear(E, 1)

    def forward(self, x):
        return self.proj(self.attn(x, x, x, need_weights=False, is_causal=True)[0])


@pytest.mark.parametrize("kw", [dict(causal=True), dict(causal=True, adaptive=True),
                                dict(mixer="gated", causal=True),
                                dict(mixer="linear", causal=True, short_conv=4)])
def test_script_compile_export_match_eager(kw):
    model = TinyModel(**kw).eval()
    x = torch.randn(2, 11, E)
    eager = model(x)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), eager)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), eager)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), eager)


def test_compile_fullgraph_backward_matches_eager():
    model = TinyModel(causal=True).train()
    x = torch.randn(2, 11, E)
    eager_grads = torch.autograd.grad(model(x).sum(), list(model.parameters()))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    compiled_grads = torch.autograd.grad(compiled(x).sum(), list(model.parameters()))
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b)


def test_describe_nodes_reads_the_poles():
    m = make(causal=True, adaptive=True)
    rows = m.describe_nodes()
    assert len(rows) == H * 5
    decay, freq = (t.detach() for t in m.poles())
    r = rows[3]
    assert r["half_life"] == pytest.approx(math.log(2) / float(decay[0, 3]))
    assert r["period"] == pytest.approx(2 * math.pi / abs(float(freq[0, 3])))
    assert 0.0 < r["gate_probability"] < 1.0
    k_fwd, k_bwd = m.kernel(50)
    assert k_fwd.shape == (H, E // H, 50) and torch.equal(k_bwd, torch.zeros_like(k_bwd))


def train_s_eff(steps, anneal=False, **kw):
    """Eval S_eff of a causal adaptive layer after a short reconstruction training."""
    torch.manual_seed(0)
    m = STLTAttention(E, H, causal=True, adaptive=True, batch_first=True, **kw)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    for step in range(steps):
        if anneal:
            m.anneal_temperature(step, steps, 1.0, 0.3)
        x = torch.randn(4, 16, E)
        out = m(x, x, x, is_causal=True)[0]
        loss = (out - x).square().mean() + m.regularization_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    x = torch.randn(4, 16, E)
    m(x, x, x, is_causal=True)
    return m.s_eff()


def test_gate_statistics_respond_to_the_mask_regulariser():
    def s_eff(lambda_mask):
        return train_s_eff(60, anneal=True, num_nodes=8, lambda_mask=lambda_mask)

    assert s_eff(lambda_mask=0.5) < s_eff(lambda_mask=0.0) - 2


def test_node_budget_brings_s_eff_within_the_target():
    assert train_s_eff(80, num_nodes=16, gate_init=1.0, lambda_mask=0.0) >= 10
    assert 3 <= train_s_eff(80, num_nodes=16, gate_init=1.0, lambda_mask=1.0, target_nodes=6) <= 6


def test_budget_penalises_only_nodes_beyond_the_most_important():
    m = make(causal=True, adaptive=True, num_nodes=4, target_nodes=2, lambda_mask=1.0,
             lambda_omega=0.0, lambda_sigma=0.0)
    with torch.no_grad():
        m.gate_logits.copy_(torch.tensor([[3.0, -1.0, 2.0, 0.5], [-2.0, 1.0, 4.0, 0.0]]))
    x = torch.randn(1, 8, E)
    m(x, x, x)
    # Head 0 keeps nodes 0 and 2, head 1 nodes 1 and 2; the others are penalised.
    expected = torch.sigmoid(torch.tensor([-1.0, 0.5, -2.0, 0.0])).sum()
    torch.testing.assert_close(m.regularization_loss(), expected)
    m.regularization_loss().backward()
    assert m.gate_logits.grad[0, 0] == 0 and m.gate_logits.grad[0, 2] == 0
    assert m.gate_logits.grad[0, 1] > 0 and m.gate_logits.grad[1, 3] > 0


def test_gate_parameters_are_the_gates_only():
    assert make().gate_parameters() == []
    causal = make(causal=True, adaptive=True)
    assert [p is causal.gate_logits for p in causal.gate_parameters()] == [True]
    bilateral = make(adaptive=True)
    expected = [bilateral.gate_proj.weight, bilateral.gate_proj.bias]
    assert [p is e for p, e in zip(bilateral.gate_parameters(), expected)] == [True, True]
    assert len(bilateral.gate_parameters()) == 2


def test_hard_gates_switch_nodes_off_in_eval():
    m = make(causal=True, adaptive=True)
    with torch.no_grad():
        m.gate_logits.copy_(torch.tensor([[3.0, -3.0, 3.0, -3.0, -3.0], [-3.0] * 4 + [3.0]]))
    m.eval()
    x = torch.randn(1, 8, E)
    m(x, x, x)
    assert m.s_eff() == pytest.approx(1.5)


@pytest.mark.parametrize("build,message", [
    (lambda: STLTAttention(10, 3), "must be a positive multiple of num_heads"),
    (lambda: STLTAttention(E, H, mode="fft"), "mode must be one of"),
    (lambda: STLTAttention(E, H, mixer="x"), "mixer must be one of"),
    (lambda: STLTAttention(E, H, mixer="linear", feature_map="relu"),
     "feature_map must be one of"),
    (lambda: STLTAttention(E, H, short_conv=-1), "short_conv"),
    (lambda: STLTAttention(E, H, kdim=8), "self-attention"),
    (lambda: STLTAttention(E, H, target_nodes=4), "target_nodes needs adaptive=True"),
    (lambda: STLTAttention(E, H, adaptive=True, num_nodes=4, target_nodes=5), "target_nodes"),
])
def test_bad_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_calls():
    m = make()
    x = torch.randn(2, 6, E)
    with pytest.raises(RuntimeError, match="cross-attention is not supported"):
        m(x, torch.randn(2, 6, E), x)
    with pytest.raises(RuntimeError, match="only a causal attn_mask is supported"):
        m(x, x, x, attn_mask=torch.zeros(6, 6, dtype=torch.bool))
    with pytest.raises(RuntimeError, match=r"expected key_padding_mask of shape \[B, N\]"):
        m(x, x, x, key_padding_mask=torch.zeros(2, 5, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="expected query of shape"):
        y = torch.randn(2, 6, 8)
        m(y, y, y)
    bilateral_adaptive = make(adaptive=True)
    with pytest.raises(RuntimeError, match="cannot run causally"):
        bilateral_adaptive(x, x, x, is_causal=True)
