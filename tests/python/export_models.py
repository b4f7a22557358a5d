"""Small models built from laplace_attn's modules, shared by the export tests."""
import torch
from torch import nn

import laplace_attn

E, H = 32, 4


def swapped_encoder(kind: str) -> nn.Module:
    """A stock nn.TransformerEncoder whose attention swap_attention replaced."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=64, dropout=0.0, batch_first=True)
    encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    options = {"num_nodes": 8, "causal": True} if kind == "stlt" else {"num_landmarks": 8}
    assert laplace_attn.swap_attention(encoder, kind=kind, **options) == 2
    return encoder.eval()


class TokenModel(nn.Module):
    """Token ids -> logits through both module families: a causal gated STLT
    block, then a causal Laplacian attention block (the exact fused operator)."""

    def __init__(self, vocab: int = 50):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(vocab, E)
        self.stlt = laplace_attn.STLTAttention(E, H, num_nodes=8, causal=True, mixer="gated",
                                               batch_first=True)
        self.laplacian = laplace_attn.LaplacianAttention(E, H, batch_first=True)
        self.norm = nn.LayerNorm(E)
        self.head = nn.Linear(E, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        x = x + self.stlt(x, x, x, need_weights=False)[0]
        x = x + self.laplacian(x, x, x, need_weights=False, is_causal=True)[0]
        return self.head(self.norm(x))


def make(name: str):
    """(model, example input) for a model name."""
    if name == "tokens":
        torch.manual_seed(1)
        return TokenModel().eval(), torch.randint(0, 50, (2, 40))
    torch.manual_seed(1)
    return swapped_encoder(name), torch.randn(2, 40, E)


NAMES = ("stlt", "laplacian", "tokens")
