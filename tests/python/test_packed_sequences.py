"""Packed variable-length batches (cu_seqlens) in laplace_scan, laplacian_attention
and nystrom_attention: each sequence against an independent float64 reference
computed on it alone, gradients, opcheck, tracing with a dynamic total length,
and bad offsets."""
import pytest
import torch
from torch.autograd import gradcheck

import laplace_attn
from conftest import to_device
from scan_reference import reference_scan
from test_laplacian_attention import reference as laplacian_reference
from test_nystrom_attention import nystromformer_reference

LENGTHS = [5, 0, 17, 1, 9]


def offsets(lengths, device="cpu"):
    ends = torch.tensor(lengths, dtype=torch.int64).cumsum(0)
    return torch.cat([torch.zeros(1, dtype=torch.int64), ends]).to(torch.int32).to(device)


def spans(lengths):
    start = 0
    for i, n in enumerate(lengths):
        yield i, slice(start, start + n)
        start += n


def scan_inputs(lengths, H=2, D=3, S=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    n, T = len(lengths), sum(lengths)
    f64 = dict(generator=g, dtype=torch.float64)
    return dict(
        u=torch.randn(1, T, H, D, **f64),
        decay=0.05 + 0.5 * torch.rand(H, S, **f64),
        freq=torch.randn(H, S, **f64),
        c_fwd=torch.randn(H, S, D, 2, **f64),
        c_bwd=torch.randn(H, S, D, 2, **f64),
        gate=torch.rand(n, H, S, **f64),
        state_fwd=torch.randn(n, H, S, D, 2, **f64),
        state_bwd=torch.randn(n, H, S, D, 2, **f64),
    )


@pytest.mark.parametrize("bilateral", [False, True])
def test_scan_restarts_at_every_boundary(bilateral, device):
    x = scan_inputs(LENGTHS)
    if not bilateral:
        x["c_bwd"] = x["state_bwd"] = None
    y, final_fwd, first_bwd = laplace_attn.laplace_scan(
        **to_device(x, device), cu_seqlens=offsets(LENGTHS, device))
    assert final_fwd.shape[0] == first_bwd.shape[0] == len(LENGTHS)
    for i, rows in spans(LENGTHS):
        per_seq = {k: (v[i:i + 1] if k in ("gate", "state_fwd", "state_bwd") else v)
                   for k, v in x.items() if v is not None}
        per_seq["u"] = x["u"][:, rows]
        y_ref, f_ref, b_ref = reference_scan(**per_seq)
        torch.testing.assert_close(y[:, rows].cpu(), y_ref)
        torch.testing.assert_close(final_fwd[i:i + 1].cpu(), f_ref)
        if bilateral:
            torch.testing.assert_close(first_bwd[i:i + 1].cpu(), b_ref)


def test_scan_gradcheck(device):
    lengths = [3, 0, 4, 2]
    x = {k: v.requires_grad_() for k, v in to_device(scan_inputs(lengths), device).items()}
    cu = offsets(lengths, device)
    names = list(x)

    def fn(*args):
        return laplace_attn.laplace_scan(**dict(zip(names, args)), cu_seqlens=cu)

    assert gradcheck(fn, tuple(x.values()))


def test_scan_opcheck():
    lengths = [3, 0, 4]
    x = {k: v.requires_grad_() for k, v in scan_inputs(lengths).items()}
    torch.library.opcheck(torch.ops.laplace_attn.laplace_scan.default,
                          (*x.values(), offsets(lengths)))


def attention_inputs(lengths, key_lengths=None, H=2, D=3, E=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    f64 = dict(generator=g, dtype=torch.float64)
    M = sum(key_lengths if key_lengths is not None else lengths)
    return [torch.randn(1, H, sum(lengths), D, **f64), torch.randn(1, H, M, D, **f64),
            torch.randn(1, H, M, E, **f64), 0.2 + torch.rand(H, **f64)]


@pytest.mark.parametrize("causal", [False, True])
def test_attention_is_block_diagonal(causal, device):
    q, k, v, lam = attention_inputs(LENGTHS)
    out = laplace_attn.laplacian_attention(*to_device((q, k, v, lam), device), causal=causal,
                                           cu_seqlens=offsets(LENGTHS, device))
    for _, rows in spans(LENGTHS):
        expected = laplacian_reference(q[:, :, rows], k[:, :, rows], v[:, :, rows], lam,
                                       causal=causal)
        torch.testing.assert_close(out[:, :, rows].cpu(), expected)


def test_attention_with_separate_key_offsets_aligns_each_sequence_bottom_right(device):
    # The last few tokens of each sequence as queries (decoding a packed batch).
    query_lengths, key_lengths = [2, 0, 3, 1], [6, 2, 3, 4]
    q, k, v, lam = attention_inputs(query_lengths, key_lengths)
    pad = torch.zeros(1, sum(key_lengths), dtype=torch.bool)
    pad[0, 1] = pad[0, 12] = True
    out = laplace_attn.laplacian_attention(
        *to_device((q, k, v, lam, pad), device), causal=True,
        cu_seqlens=offsets(query_lengths, device), cu_seqlens_k=offsets(key_lengths, device))
    for (_, rows), (_, cols) in zip(spans(query_lengths), spans(key_lengths)):
        expected = laplacian_reference(q[:, :, rows], k[:, :, cols], v[:, :, cols], lam,
                                       pad=pad[:, cols], causal=True)
        torch.testing.assert_close(out[:, :, rows].cpu(), expected)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_gradcheck(causal, device):
    lengths = [3, 0, 4, 2]
    args = [t.requires_grad_() for t in to_device(attention_inputs(lengths), device)]
    cu = offsets(lengths, device)
    assert gradcheck(lambda *a: laplace_attn.laplacian_attention(*a, causal=causal, cu_seqlens=cu),
                     args)


def test_attention_opcheck():
    lengths = [3, 0, 4]
    args = [t.requires_grad_() for t in attention_inputs(lengths)]
    cu = offsets(lengths)
    for extra in [(None, False, cu, None), (None, True, cu, cu)]:
        torch.library.opcheck(torch.ops.laplace_attn.laplacian_attention.default, (*args, *extra))


def test_nystrom_softmax_matches_nystromformer_per_sequence():
    m, lengths = 4, [8, 16, 0, 12]
    q, k, v, _ = attention_inputs(lengths, D=8, E=8)
    out = laplace_attn.nystrom_attention(q, k, v, m, "softmax", cu_seqlens=offsets(lengths))
    for _, rows in spans(lengths):
        if rows.stop > rows.start:
            expected = nystromformer_reference(q[:, :, rows], k[:, :, rows], v[:, :, rows], m)
            torch.testing.assert_close(out[:, :, rows], expected)


def test_nystrom_laplacian_matches_each_sequence_alone(device):
    m, lengths = 3, [7, 0, 11, 4]
    q, k, v, lam = attention_inputs(lengths)
    out = laplace_attn.nystrom_attention(*to_device((q, k, v), device), m, "laplacian",
                                         lam.to(device), cu_seqlens=offsets(lengths, device))
    for _, rows in spans(lengths):
        alone = laplace_attn.nystrom_attention(q[:, :, rows], k[:, :, rows], v[:, :, rows], m,
                                               "laplacian", lam)
        torch.testing.assert_close(out[:, :, rows].cpu(), alone)


def test_nystrom_short_sequences_get_a_landmark_per_token():
    # Shorter than num_landmarks: every token is its own landmark, so the
    # result is the exact attention once the inverse has converged.
    lengths = [2, 3]
    q, k, v, lam = attention_inputs(lengths)
    out = laplace_attn.nystrom_attention(q, k, v, 4, "laplacian", lam, "row", 40,
                                         cu_seqlens=offsets(lengths))
    for _, rows in spans(lengths):
        expected = laplacian_reference(q[:, :, rows], k[:, :, rows], v[:, :, rows], lam)
        torch.testing.assert_close(out[:, :, rows], expected)


def test_nystrom_gradcheck():
    lengths = [6, 0, 5]
    args = [t.requires_grad_() for t in attention_inputs(lengths)]
    cu = offsets(lengths)
    assert gradcheck(lambda q, k, v, lam: laplace_attn.nystrom_attention(
        q, k, v, 3, "laplacian", lam, "row", 40, cu_seqlens=cu), args)


class PackedLayer(torch.nn.Module):
    """A scan, then attention, over a packed batch."""

    def __init__(self, H=2, D=4, S=3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.decay = torch.nn.Parameter(0.1 + torch.rand(H, S, generator=g))
        self.freq = torch.nn.Parameter(torch.randn(H, S, generator=g))
        self.c = torch.nn.Parameter(torch.randn(H, S, D, 2, generator=g))
        self.lam = torch.nn.Parameter(torch.ones(H))

    def forward(self, u, cu_seqlens):
        y, _, _ = laplace_attn.laplace_scan(u, self.decay, self.freq, self.c,
                                            cu_seqlens=cu_seqlens)
        x = y.transpose(1, 2)
        return laplace_attn.laplacian_attention(x, x, x, self.lam, causal=True,
                                                cu_seqlens=cu_seqlens)


def test_export_with_a_dynamic_total_length():
    layer = PackedLayer()
    u, cu = torch.randn(1, 20, 2, 4), offsets([7, 13])
    total = torch.export.Dim("total", min=2, max=4096)
    sequences = torch.export.Dim("sequences", min=1, max=64)
    exported = torch.export.export(layer, (u, cu),
                                   dynamic_shapes=({1: total}, {0: sequences + 1}))
    for lengths in ([7, 13], [3, 30, 1, 4]):
        u, cu = torch.randn(1, sum(lengths), 2, 4), offsets(lengths)
        torch.testing.assert_close(exported.module()(u, cu), layer(u, cu))


def test_compile_fullgraph_matches_eager():
    layer = PackedLayer()
    u, cu = torch.randn(1, 20, 2, 4, requires_grad=True), offsets([7, 13])
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    eager = layer(u, cu)
    torch.testing.assert_close(compiled(u, cu), eager)


BAD_OFFSETS = [
    (torch.tensor([0, 7, 20], dtype=torch.int64), "expected cu_seqlens of dtype int32"),
    (torch.tensor([[0, 7, 20]], dtype=torch.int32), r"expected cu_seqlens of shape \[num_seq"),
    (torch.tensor([1, 7, 20], dtype=torch.int32), r"expected cu_seqlens\[0\] = 0, but got 1"),
    (torch.tensor([0, 9, 7, 20], dtype=torch.int32),
     r"expected cu_seqlens non-decreasing, but cu_seqlens\[2\] = 7 < cu_seqlens\[1\] = 9"),
    (torch.tensor([0, 7, 21], dtype=torch.int32),
     r"expected the last entry of cu_seqlens to be the packed length 20 \(u.size\(1\)\), but "
     "got 21"),
    (torch.tensor([0, 7, 19], dtype=torch.int32), "packed length 20"),
]


@pytest.mark.parametrize("cu,message", BAD_OFFSETS)
def test_scan_rejects_bad_offsets(cu, message):
    x = scan_inputs([7, 13])
    x["gate"] = x["state_fwd"] = x["state_bwd"] = None
    with pytest.raises(RuntimeError, match=message):
        laplace_attn.laplace_scan(**x, cu_seqlens=cu)


@pytest.mark.parametrize("cu,message", BAD_OFFSETS)
def test_attention_rejects_bad_offsets(cu, message):
    q, k, v, lam = attention_inputs([7, 13])
    message = message.replace(r"u.size\(1\)", r"q.size\(2\)")
    with pytest.raises(RuntimeError, match=message):
        laplace_attn.laplacian_attention(q, k, v, lam, cu_seqlens=cu)


def test_packed_inputs_need_batch_one_and_per_sequence_states():
    x = scan_inputs([7, 13])
    x["u"] = x["u"].expand(2, -1, -1, -1)
    with pytest.raises(RuntimeError, match="expected u with batch size 1, but got 2"):
        laplace_attn.laplace_scan(**x, cu_seqlens=offsets([7, 13]))
    x = scan_inputs([7, 13])
    with pytest.raises(RuntimeError, match=r"expected gate of shape \[num_sequences, H, S\]"):
        laplace_attn.laplace_scan(**x, cu_seqlens=offsets([20]))


def test_attention_offset_errors():
    q, k, v, lam = attention_inputs([7, 13])
    with pytest.raises(RuntimeError, match="cu_seqlens_k was given without cu_seqlens"):
        laplace_attn.laplacian_attention(q, k, v, lam, cu_seqlens_k=offsets([7, 13]))
    with pytest.raises(RuntimeError, match=r"as many sequences as cu_seqlens \(2\), but it "
                                           "describes 3"):
        laplace_attn.laplacian_attention(q, k, v, lam, cu_seqlens=offsets([7, 13]),
                                         cu_seqlens_k=offsets([7, 6, 7]))
    with pytest.raises(RuntimeError, match='cu_seqlens supports normalization "row" only'):
        laplace_attn.nystrom_attention(q, k, v, 3, "laplacian", lam, "injective",
                                       cu_seqlens=offsets([7, 13]))


# --- modules ---------------------------------------------------------------------


def packed_and_alone(layer, lengths, E, **kwargs):
    """The layer on a packed batch, and on each sequence alone."""
    g = torch.Generator().manual_seed(1)
    sequences = [torch.randn(n, E, generator=g, dtype=torch.float64) for n in lengths]
    x, cu = laplace_attn.pack_sequences(sequences)
    packed, _ = layer(x, x, x, cu_seqlens=cu, **kwargs)
    alone = [layer(s[None], s[None], s[None], **kwargs)[0][0] if len(s) else s
             for s in sequences]
    return laplace_attn.unpack_sequences(packed, cu), alone


@pytest.mark.parametrize("options", [
    dict(causal=True), dict(causal=False), dict(causal=False, adaptive=True),
    dict(causal=True, adaptive=True, mixer="gated")])
def test_stlt_attention_keeps_packed_sequences_apart(options):
    layer = laplace_attn.STLTAttention(16, 2, num_nodes=4, batch_first=True, **options).double()
    layer.eval()
    packed, alone = packed_and_alone(layer, [6, 11, 0, 3], 16)
    for a, b in zip(packed, alone):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("options,call", [
    (dict(exact=True), dict(is_causal=True)), (dict(exact=True), dict()),
    (dict(num_landmarks=4), dict())])
def test_laplacian_attention_keeps_packed_sequences_apart(options, call):
    layer = laplace_attn.LaplacianAttention(16, 2, batch_first=True, **options).double()
    # Longer than num_landmarks: alone, they use landmarks too.
    packed, alone = packed_and_alone(layer, [6, 11, 5], 16, **call)
    for a, b in zip(packed, alone):
        torch.testing.assert_close(a, b)


def test_packed_modules_script_with_torchscript():
    layer = laplace_attn.STLTAttention(8, 2, num_nodes=3, batch_first=True, causal=True)
    scripted = torch.jit.script(layer)
    x, cu = laplace_attn.pack_sequences([torch.randn(5, 8), torch.randn(7, 8)])
    torch.testing.assert_close(scripted(x, x, x, cu_seqlens=cu)[0],
                               layer(x, x, x, cu_seqlens=cu)[0])


def test_packed_modules_reject_what_they_cannot_keep_apart():
    x, cu = laplace_attn.pack_sequences([torch.randn(5, 8), torch.randn(7, 8)])
    stlt = laplace_attn.STLTAttention(8, 2, batch_first=True, short_conv=4)
    with pytest.raises(RuntimeError, match="cu_seqlens .* short_conv=0"):
        stlt(x, x, x, cu_seqlens=cu)
    lap = laplace_attn.LaplacianAttention(8, 2, batch_first=True, kernel="softmax")
    with pytest.raises(RuntimeError, match="cu_seqlens .* needs kernel='laplacian'"):
        lap(x, x, x, cu_seqlens=cu)
    lap = laplace_attn.LaplacianAttention(8, 2, batch_first=True)
    with pytest.raises(RuntimeError, match="no key_padding_mask"):
        lap(x, x, x, key_padding_mask=torch.zeros(1, 12, dtype=torch.bool), cu_seqlens=cu)
