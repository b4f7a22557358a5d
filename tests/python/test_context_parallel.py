"""Context-parallel laplace_scan over 2 and 3 processes (gloo, loopback, spawned from
the test): each rank's outputs and the global states equal the single-process scan,
forward and backward, causal and bilateral, with gates (some exactly 0), initial
states and uneven slices (one empty)."""
import datetime
import os
import traceback

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import laplace_attn
from laplace_attn.distributed import context_parallel_scan
from scan_reference import make_inputs

TIMEOUT_S = 120
NAMES = ["u", "decay", "freq", "c_fwd", "c_bwd", "gate", "state_fwd", "state_bwd"]


def problem(bilateral, seed=0):
    x = make_inputs(B=2, N=41, H=2, D=3, S=4, bilateral=bilateral, gate=True, states=True,
                    seed=seed)
    x["gate"][:, 0, 1] = 0.0  # a node switched off: its state passes through
    return x


def split(n, world):
    """Uneven slices, the middle one empty when there are three ranks."""
    if world == 2:
        return [13, n - 13]
    return [17, 0, n - 17]


def worker(rank, world, store, bilateral, failures):
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                world_size=world, timeout=datetime.timedelta(seconds=60))
        torch.set_num_threads(1)
        x = problem(bilateral)
        g = torch.Generator().manual_seed(5)
        weights = [torch.randn(x["u"].shape, generator=g, dtype=torch.float64),
                   torch.randn(2, 2, 4, 3, 2, generator=g, dtype=torch.float64),
                   torch.randn(2, 2, 4, 3, 2, generator=g, dtype=torch.float64)]

        def loss_of(outputs, rows):
            y, final, first = outputs
            return ((y * weights[0][:, rows]).sum() + (final * weights[1]).sum()
                    + (first * weights[2]).sum())

        # The single-process result.
        leaves = {k: v.clone().requires_grad_() for k, v in x.items() if v is not None}
        full = laplace_attn.laplace_scan(**leaves)
        loss_of(full, slice(None)).backward()
        # This rank's slice.
        sizes = split(x["u"].shape[1], world)
        start = sum(sizes[:rank])
        rows = slice(start, start + sizes[rank])
        mine = {k: v.clone().requires_grad_() for k, v in x.items() if v is not None}
        args = {k: v for k, v in mine.items() if k != "u"}
        args["u_local"] = mine["u"][:, rows]
        # Only rank 0 has the final state's loss term, only one has the first state's,
        # so the sum over ranks is the single-process loss.
        out = context_parallel_scan(**args)
        y, final, first = out
        assert torch.allclose(y, full[0][:, rows], rtol=0, atol=1e-12), "y"
        assert torch.allclose(final, full[1], rtol=0, atol=1e-12), "final_fwd"
        assert torch.allclose(first, full[2], rtol=0, atol=1e-12), "first_bwd"
        local = (y * weights[0][:, rows]).sum()
        if rank == 0:
            local = local + (final * weights[1]).sum() + (first * weights[2]).sum()
        local.backward()
        u_grad = mine["u"].grad
        assert torch.allclose(u_grad[:, rows], leaves["u"].grad[:, rows], rtol=0, atol=1e-12)
        for name in NAMES[1:]:
            if name not in mine:
                continue
            grad = mine[name].grad.clone()
            dist.all_reduce(grad)  # what DDP does with parameter gradients
            assert torch.allclose(grad, leaves[name].grad, rtol=0, atol=1e-12), name
        dist.destroy_process_group()
    except Exception:
        failures.put(f"rank {rank}: {traceback.format_exc()}")
        raise


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("bilateral", [False, True])
def test_context_parallel_scan_equals_one_process(world, bilateral, tmp_path):
    ctx = mp.get_context("spawn")
    failures = ctx.SimpleQueue()
    processes = mp.start_processes(worker, args=(world, str(tmp_path / "store"), bilateral,
                                                 failures),
                                   nprocs=world, join=False, start_method="spawn")
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=TIMEOUT_S)
    try:
        while not processes.join(timeout=5):
            assert datetime.datetime.now() < deadline, "the ranks did not finish in time"
    except mp.ProcessRaisedException:
        messages = []
        while not failures.empty():
            messages.append(failures.get())
        pytest.fail("\n".join(messages) or "a rank failed")
    finally:
        for p in processes.processes:
            if p.is_alive():
                p.terminate()


def test_needs_an_initialised_process_group():
    x = problem(False)
    with pytest.raises(RuntimeError, match="torch.distributed is not initialised"):
        context_parallel_scan(x["u"], x["decay"], x["freq"], x["c_fwd"])
