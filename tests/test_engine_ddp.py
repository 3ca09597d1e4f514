import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deeplab.engine.state import load_state
from deeplab.models import load_model
from engine_tiny import tiny_dict, write_config

# Each rank trains, then saves its own copy of the weights so the test can compare them.
WORKER = """
import os, sys, torch
from deeplab.engine.config import load_config
from deeplab.engine.trainer import train
result = train(load_config(sys.argv[1]), sys.argv[2], progress=False)
torch.save(result.model.state_dict(), os.path.join(sys.argv[2], f"rank{os.environ['RANK']}.pt"))
"""


def torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    return [str(exe)] if exe.is_file() else [shutil.which("torchrun") or "torchrun"]


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_identical_weights(camvid_tiny, tmp_path):
    """torchrun, gloo, 2 processes x (2 micro-batches of 1) = global batch 4: DDP averages the gradients, so both
    ranks end with the same weights (and BN statistics, broadcast from rank 0); only rank 0 writes files."""
    cfg = write_config(
        tmp_path / "ddp.yaml",
        tiny_dict(
            camvid_tiny, data={"split": "train+val"}, train={"iterations": 3, "batch_size": 4, "checkpoint_every": 2}
        ),
    )
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "run"
    proc = subprocess.run(
        [*torchrun(), "--standalone", "--nproc_per_node", "2", str(script), str(cfg), str(out)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(out / "rank0.pt", weights_only=True)
    w1 = torch.load(out / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    assert load_state(out / "checkpoint.pt")["iteration"] == 3
    saved = load_model(out / "model.pt").model.state_dict()
    for k in w0:
        assert torch.equal(saved[k], w0[k]), k
    log = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2, 3]  # rank 0 only: no duplicate lines
