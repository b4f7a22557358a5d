"""Context parallelism over 2 and 3 processes (gloo, loopback, spawned from the test,
bounded time): each rank's outputs of context_parallel_scan and
context_parallel_laplacian_attention, the scan's global states, and every gradient
equal the single-process float64 result to 1e-12 (parameter gradients: relative to
their largest entry): causal and bilateral, with gates
(one exactly 0), initial states and uneven slices (one empty)."""
import datetime
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


def problem(bilateral, N=41, seed=0):
    x = make_inputs(B=2, N=N, H=2, D=3, S=4, bilateral=bilateral, gate=True, states=True,
                    seed=seed)
    x["gate"][:, 0, 1] = 0.0  # a node switched off: its state passes through
    return x


def split(n, world):
    """Uneven slices, the middle one empty when there are three ranks."""
    if world == 2:
        return [13, n - 13]
    return [17, 0, n - 17]


def worker(rank, world, store, bilateral, N, failures):
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                world_size=world, timeout=datetime.timedelta(seconds=60))
        torch.set_num_threads(1)
        x = problem(bilateral, N)
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
            gap = (grad - leaves[name].grad).abs().max().item()
            scale = leaves[name].grad.abs().max().item()
            assert gap <= 1e-12 * max(1.0, scale), (name, gap, scale)
        dist.destroy_process_group()
    except Exception:
        failures.put(f"rank {rank}: {traceback.format_exc()}")
        raise


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("bilateral", [False, True])
def test_context_parallel_scan_equals_one_process(world, bilateral, tmp_path):
    run_ranks(worker, world, tmp_path, bilateral, 41)


def test_context_parallel_scan_over_several_blocks_of_powers(tmp_path):
    # A slice of 587 tokens: two full blocks of 256 pole powers and a padded one.
    run_ranks(worker, 2, tmp_path, True, 600)


def test_needs_an_initialised_process_group():
    from laplace_attn.distributed import context_parallel_laplacian_attention
    x = problem(False)
    with pytest.raises(RuntimeError, match="torch.distributed is not initialised"):
        context_parallel_scan(x["u"], x["decay"], x["freq"], x["c_fwd"])
    q = torch.randn(1, 1, 4, 2)
    with pytest.raises(RuntimeError, match="torch.distributed is not initialised"):
        context_parallel_laplacian_attention(q, q, q, torch.tensor(1.0))


def attention_worker(rank, world, store, causal, failures):
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                world_size=world, timeout=datetime.timedelta(seconds=60))
        torch.set_num_threads(1)
        from laplace_attn.distributed import context_parallel_laplacian_attention
        g = torch.Generator().manual_seed(3)
        N = 30
        q, k, v = (torch.randn(2, 2, N, 4, generator=g, dtype=torch.float64) for _ in range(3))
        lam = 0.3 + torch.rand(2, generator=g, dtype=torch.float64)
        weight = torch.randn(2, 2, N, 4, generator=g, dtype=torch.float64)
        leaves = [t.clone().requires_grad_() for t in (q, k, v, lam)]
        full = laplace_attn.laplacian_attention(*leaves, causal=causal)
        (full * weight).sum().backward()
        sizes = split(N, world)
        start = sum(sizes[:rank])
        rows = slice(start, start + sizes[rank])
        mine = [t.clone().requires_grad_() for t in (q, k, v, lam)]
        out = context_parallel_laplacian_attention(mine[0][:, :, rows], mine[1][:, :, rows],
                                                   mine[2][:, :, rows], mine[3], causal)
        assert torch.allclose(out, full[:, :, rows], rtol=0, atol=1e-12), "out"
        (out * weight[:, :, rows]).sum().backward()
        for name, a, b in zip("qkv", mine[:3], leaves[:3]):
            assert torch.allclose(a.grad[:, :, rows], b.grad[:, :, rows], rtol=0,
                                  atol=1e-12), name
        grad_lambda = mine[3].grad.clone()
        dist.all_reduce(grad_lambda)
        assert torch.allclose(grad_lambda, leaves[3].grad, rtol=0, atol=1e-12), "inv_lambda"
        dist.destroy_process_group()
    except Exception:
        failures.put(f"rank {rank}: {traceback.format_exc()}")
        raise


def run_ranks(worker_fn, world, tmp_path, *args):
    ctx = mp.get_context("spawn")
    failures = ctx.SimpleQueue()
    processes = mp.start_processes(worker_fn, args=(world, str(tmp_path / "store"), *args,
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


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("causal", [False, True])
def test_context_parallel_attention_equals_one_process(world, causal, tmp_path):
    run_ranks(attention_worker, world, tmp_path, causal)


def disagreeing_worker(rank, world, store, failures):
    """Rank 1 passes another head count: every rank raises, none waits forever."""
    try:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                                world_size=world, timeout=datetime.timedelta(seconds=60))
        x = problem(False)
        if rank == 1:
            x = {k: (v[:, :, :1] if k == "u" else v[:1] if k in ("decay", "freq", "c_fwd")
                     else v) for k, v in x.items() if k in ("u", "decay", "freq", "c_fwd")}
        try:
            context_parallel_scan(x["u"], x["decay"], x["freq"], x["c_fwd"])
        except RuntimeError as error:
            assert "the ranks disagree on the shapes of the call" in str(error), str(error)
        else:
            raise AssertionError("no error")
        dist.destroy_process_group()
    except Exception:
        failures.put(f"rank {rank}: {traceback.format_exc()}")
        raise


def test_ranks_that_disagree_all_raise(tmp_path):
    run_ranks(disagreeing_worker, 2, tmp_path)

