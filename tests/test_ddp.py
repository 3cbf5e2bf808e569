"""Two gloo processes (as torchrun would start them) train one model and stay in sync."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from gancraft import load, save

from conftest import make_tiny_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    from gancraft import distributed
    from gancraft.train.loop import TrainOptions, run_training
    from gancraft.train.methods import UnionMethod

    tmp_path = Path(tmp)
    method = UnionMethod(load(tmp_path / "avg.st"), {"cat": load(tmp_path / "cat.st")})
    opts = TrainOptions(kimg=3 * 4 / 1000, batch=4, snap_kimg=100, seed=2, r1_interval=2)
    trainer = run_training(method, opts, tmp_path / "run", progress=False)
    torch.save({k: v for k, v in trainer.checkpoint().tensors.items()}, tmp_path / f"rank{rank}.pt")
    distributed.shutdown(distributed.from_env())


def test_two_process_gloo_run_keeps_replicas_in_sync(tmp_path: Path):
    save(make_tiny_checkpoint(seed=0), tmp_path / "avg.st")
    save(make_tiny_checkpoint(seed=1), tmp_path / "cat.st")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    start = load(tmp_path / "run" / "snapshot-000000.st").tensors
    assert not torch.equal(a["G.synthesis.b16.conv1.weight"], start["G.synthesis.b16.conv1.weight"])
    # only rank 0 writes: one snapshot per step, one log line per step
    assert sorted(p.name for p in (tmp_path / "run").glob("snapshot-*.st")) == [
        "snapshot-000000.st",
        "snapshot-000003.st",
    ]
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 3
