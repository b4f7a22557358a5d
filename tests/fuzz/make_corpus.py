"""Writes the fuzz target's seed corpus: files torch.save makes from the inputs
laplace-attn-infer reads (tensors of every dtype and layout, tuples, lists) and
from things it must refuse (dicts, numbers, None, nesting)."""
import sys
from pathlib import Path

import torch


def seeds():
    base = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    yield "float", base
    yield "long", torch.arange(6).view(2, 3)
    yield "bool", torch.tensor([True, False])
    yield "half", base.half()
    yield "bfloat16", base.bfloat16()
    yield "double", base.double()
    yield "complex", torch.tensor([1 + 2j, 3 - 4j])
    yield "scalar", torch.tensor(3.5)
    yield "empty", torch.zeros(0, 3)
    yield "expanded", base[0, :1].expand(5, 4)
    yield "sliced", base[:, ::2, 1:]
    yield "transposed", base.transpose(0, 2)
    yield "tuple", (base, torch.arange(3))
    yield "list", [base, base[0]]
    yield "shared", (base, base[1])
    yield "dict", {"x": base}
    yield "number", 3
    yield "none", None
    yield "nested", ((base,),)
    yield "string", "tokens"


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, value in seeds():
        torch.save(value, out / f"{name}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
