"""laplace_attn.integrations.transformers on real transformers model classes built
from small configs: each model with attn_implementation="laplacian" or "stlt" against
the same model with a float64 reference of that attention registered beside it (a
dense softmax of L1 distances; the O(N^2) sum-of-powers scan); training steps,
padding, GQA, generate() with transformers' cache, save/load."""
import pytest
import torch
import torch.nn.functional as F

from scan_reference import reference_scan

transformers = pytest.importorskip("transformers")
import laplace_attn.integrations.transformers as hf  # noqa: E402  (registers "laplacian")
from transformers import (AttentionInterface, AutoModel, AutoModelForCausalLM,  # noqa: E402
                          BertConfig, GPT2Config, LlamaConfig, ViTConfig)
from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask  # noqa: E402

VOCAB = 50
# The unit-RMS statistics of q and k are float32 in every dtype (as in LaplacianAttention),
# so float64 models agree with the reference to float32's precision.
TOL = 1e-6


def reference_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                        is_causal=None, **kwargs):
    """Dense float64: softmax over the visible keys of -scaling * ||q_i - k_j||_1 with q
    and k at unit RMS, the queries aligned with the last keys."""
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    q, k = query.double(), key.double()
    q = q / (q.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()
    k = k / (k.pow(2).mean(-1, keepdim=True) + 1e-6).sqrt()
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    scores = -scale * torch.cdist(q, k, p=1)
    N, M = q.shape[2], k.shape[2]
    allowed = torch.ones(q.shape[0], 1, N, M, dtype=torch.bool)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
    if causal:
        allowed = allowed & torch.ones(N, M, dtype=torch.bool).tril(M - N)
    if attention_mask is not None:
        allowed = allowed & attention_mask.bool()[:, None, None, :]
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1).nan_to_num(0.0)
    out = weights @ value.double()
    return out.to(query.dtype).transpose(1, 2).contiguous(), None


def reference_stlt(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                   is_causal=None, **kwargs):
    """q * scan(k * v) over the module's nodes, the scan as sums of pole powers."""
    nodes = module.stlt_nodes
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    u = (key * value).double()
    if attention_mask is not None:
        u = u * attention_mask.double()[:, None, :, None]
    decay = (F.softplus(nodes.sigma_raw) + nodes.sigma_min + 1.0 / F.softplus(nodes.window_raw)[:, None])
    readout = torch.sqrt(1.0 - torch.exp(-2.0 * decay))[:, :, None, None]
    c_bwd = None if nodes.c_bwd is None else nodes.c_bwd * readout
    y = reference_scan(u.transpose(1, 2), decay, nodes.omega, nodes.c_fwd * readout, c_bwd)[0]
    N, M = query.shape[2], key.shape[2]
    out = query.transpose(1, 2).double() * y[:, M - N:]
    return out.to(query.dtype).contiguous(), None


for _name, _fn in (("laplacian_reference", reference_attention), ("stlt_reference", reference_stlt)):
    AttentionInterface.register(_name, _fn)
    AttentionMaskInterface.register(_name, flash_attention_mask)

# The causal configs have no end-of-sequence token: generate() writes every token asked for.
CONFIGS = {
    "llama (GQA)": lambda: LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, max_position_embeddings=128,
                                       bos_token_id=None, eos_token_id=None),
    "gpt2": lambda: GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                               bos_token_id=None, eos_token_id=None),
    "bert": lambda: BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=4, intermediate_size=64),
}
CAUSAL = ("llama (GQA)", "gpt2")


def build(name, implementation, dtype=torch.float64):
    torch.manual_seed(0)
    make = AutoModelForCausalLM if name in CAUSAL else AutoModel
    model = make.from_config(CONFIGS[name](), attn_implementation=implementation)
    return model.to(dtype).eval()


def outputs(model, *args, **kwargs):
    out = model(*args, **kwargs)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("name", CONFIGS)
@torch.no_grad()
def test_models_match_the_dense_reference(name):
    tokens = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 24, dtype=torch.long)
    if name in CAUSAL:
        mask[1, :5] = 0  # left padding, as for generation
    else:
        mask[1, -7:] = 0  # right padding, as for an encoder
    got = outputs(build(name, "laplacian"), tokens, attention_mask=mask)
    want = outputs(build(name, "laplacian_reference"), tokens, attention_mask=mask)
    keep = mask.bool()
    err = (got - want)[keep].abs().max().item()
    assert err <= TOL, f"{name}: {err}"
    sdpa = outputs(build(name, "sdpa"), tokens, attention_mask=mask)
    assert not torch.allclose(got, sdpa)  # the implementation is really ours


def test_vit_matches_the_dense_reference():
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=64)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2),
                         dtype=torch.float64)
    results = []
    for implementation in ("laplacian", "laplacian_reference"):
        torch.manual_seed(0)
        model = AutoModel.from_config(config, attn_implementation=implementation).double()
        with torch.no_grad():
            results.append(model.eval()(images).last_hidden_state)
    err = (results[0] - results[1]).abs().max().item()
    assert err <= TOL, err


@pytest.mark.parametrize("name", CAUSAL)
def test_a_few_training_steps_lower_the_loss(name):
    model = build(name, "laplacian", torch.float32).train()
    tokens = torch.randint(0, VOCAB, (4, 32), generator=torch.Generator().manual_seed(3))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = model(tokens, labels=tokens).loss
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses


@pytest.mark.parametrize("name", CAUSAL)
@torch.no_grad()
def test_generate_with_the_cache_equals_recomputing(name):
    model = build(name, "laplacian")
    prompt = torch.randint(1, VOCAB, (2, 6), generator=torch.Generator().manual_seed(4))
    got = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12,
                         do_sample=False, pad_token_id=0)
    tokens = prompt
    for _ in range(12):
        next_token = model(tokens).logits[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, next_token], dim=1)
    assert torch.equal(got, tokens)


def test_save_and_load_keep_the_outputs(tmp_path):
    model = build("llama (GQA)", "laplacian")
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="laplacian")
    tokens = torch.randint(0, VOCAB, (1, 16), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(model(tokens).logits, loaded.double().eval()(tokens).logits)


def test_unsupported_options_say_so():
    q = torch.randn(1, 2, 4, 8)
    module = torch.nn.Module()
    with pytest.raises(ValueError, match="softcap is not supported"):
        hf.laplacian_attention_forward(module, q, q, q, None, softcap=30.0)
    with pytest.raises(ValueError, match="no attention weights exist"):
        hf.laplacian_attention_forward(module, q, q, q, None, output_attentions=True)
    with pytest.raises(ValueError, match=r"expected a padding mask of shape \[B, M\] = \[1, 4\]"):
        hf.laplacian_attention_forward(module, q, q, q, torch.ones(1, 1, 4, 4, dtype=torch.bool))


# --- STLT ----------------------------------------------------------------------------

def build_stlt(name, dtype=torch.float64):
    model = build(name, "sdpa", dtype)
    assert hf.enable_stlt(model, num_nodes=6, expected_length=64) == 2
    torch.manual_seed(1)
    with torch.no_grad():  # nodes away from their initial values, as after training
        for module in model.modules():
            if isinstance(module, hf.STLTNodes):
                module.omega.add_(0.1 * torch.rand_like(module.omega))
    return model


@pytest.mark.parametrize("name", CONFIGS)
@torch.no_grad()
def test_stlt_models_match_the_reference_scan(name):
    tokens = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(6))
    mask = torch.ones(2, 20, dtype=torch.long)
    mask[1, :4] = 0 if name in CAUSAL else 1
    mask[1, -5:] = 1 if name in CAUSAL else 0
    model = build_stlt(name)
    assert model.config._attn_implementation == "stlt"
    got = outputs(model, tokens, attention_mask=mask)
    model.set_attn_implementation("stlt_reference")
    want = outputs(model, tokens, attention_mask=mask)
    err = (got - want)[mask.bool()].abs().max().item()
    assert err <= 1e-10, f"{name}: {err}"


def test_stlt_trains_generates_and_round_trips(tmp_path):
    model = build_stlt("llama (GQA)", torch.float32).train()
    tokens = torch.randint(0, VOCAB, (4, 32), generator=torch.Generator().manual_seed(7))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    nodes = [n for n, _ in model.named_parameters() if ".stlt_nodes." in n]
    assert len(nodes) == 2 * 4  # sigma_raw, omega, window_raw, c_fwd per causal layer
    losses = []
    for _ in range(8):
        loss = model(tokens, labels=tokens).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses

    model.eval()
    prompt = tokens[:2, :6]
    with torch.no_grad():
        got = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=10,
                             do_sample=False, pad_token_id=0)
        want = prompt
        for _ in range(10):
            want = torch.cat([want, model(want).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(got, want)

    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert hf.enable_stlt(loaded, from_pretrained=str(tmp_path)) == 2
    with torch.no_grad():
        assert torch.equal(model(tokens).logits, loaded.eval()(tokens).logits)


@pytest.mark.parametrize("name", CAUSAL)
@torch.no_grad()
def test_stlt_cache_generates_from_the_recurrent_state(name):
    model = build_stlt(name)
    prompt = torch.randint(1, VOCAB, (2, 7), generator=torch.Generator().manual_seed(10))
    mask = torch.ones_like(prompt)
    mask[1, :3] = 0  # a left-padded row
    cache = hf.STLTCache()
    got = model.generate(prompt, attention_mask=mask, max_new_tokens=9, do_sample=False,
                         pad_token_id=0, cache=cache)
    # The same as transformers' key-value cache (which rescans all cached positions) ...
    rescanned = model.generate(prompt, attention_mask=mask, max_new_tokens=9, do_sample=False,
                               pad_token_id=0)
    assert torch.equal(got, rescanned)
    # ... and as recomputing the unpadded row from scratch, token by token.
    tokens = prompt[1:, 3:]
    for _ in range(9):
        tokens = torch.cat([tokens, model(tokens).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(got[1:, 3:], tokens)
    # The cache holds one fixed-size state per layer, no keys or values.
    heads, head_dim = 4, 32 // 4
    for layer in cache.layers:
        assert layer.state.shape == (2, heads, 6, head_dim, 2) and layer.keys is None
    assert cache.get_seq_length() == 7 + 9 - 1


def test_stlt_errors_say_what_to_do():
    model = build("llama (GQA)", "sdpa")
    with pytest.raises(RuntimeError, match="has no STLT nodes; call laplace_attn.integrations"):
        model.set_attn_implementation("stlt")
        model(torch.zeros(1, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="expected a transformers model .* got Linear"):
        hf.enable_stlt(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="was not saved from a model with STLT nodes"):
        hf.enable_stlt(build("gpt2", "sdpa"), from_pretrained="somewhere")


@pytest.mark.parametrize("implementation", ["laplacian", "stlt"])
def test_trainer_trains_the_model_and_the_nodes(implementation, tmp_path):
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments
    if implementation == "stlt":
        model = build_stlt("llama (GQA)", torch.float32).train()
    else:
        model = build("llama (GQA)", implementation, torch.float32).train()
    g = torch.Generator().manual_seed(8)
    data = [{"input_ids": t, "labels": t} for t in torch.randint(0, VOCAB, (16, 24), generator=g)]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                             learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no")
    result = Trainer(model=model, args=args, train_dataset=data).train()
    assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "model.layers.0.self_attn.q_proj.weight" in moved
    if implementation == "stlt":
        assert "model.layers.0.self_attn.stlt_nodes.c_fwd" in moved
        assert "model.layers.1.self_attn.stlt_nodes.omega" in moved


@pytest.mark.parametrize("implementation", ["laplacian", "stlt"])
@pytest.mark.parametrize("source", ["position_ids", "collator"])
@torch.no_grad()
def test_packed_batches_keep_sequences_apart(implementation, source):
    """A Llama model on a packed row (position ids restarting at each sequence, or the
    flash-attention kwargs of transformers' flattening collator) equals each sequence
    alone."""
    model = build("llama (GQA)", "laplacian") if implementation == "laplacian" \
        else build_stlt("llama (GQA)")
    g = torch.Generator().manual_seed(2)
    sequences = [torch.randint(0, VOCAB, (n,), generator=g) for n in (7, 12, 1, 9)]
    alone = [outputs(model, s[None])[0] for s in sequences]
    if source == "collator":
        from transformers import DataCollatorWithFlattening
        collate = DataCollatorWithFlattening(return_flash_attn_kwargs=True)
        batch = collate([{"input_ids": s.tolist()} for s in sequences])
        batch.pop("labels")
        assert "cu_seq_lens_q" in batch
    else:
        batch = dict(input_ids=torch.cat(sequences)[None],
                     position_ids=torch.cat([torch.arange(len(s)) for s in sequences])[None])
    packed = outputs(model, **batch)[0]
    torch.testing.assert_close(packed, torch.cat(alone), rtol=TOL, atol=TOL)
