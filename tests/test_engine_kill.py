import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from deeplab.cli import main
from deeplab.engine.state import load_state
from deeplab.engine.trainer import train
from deeplab.models import load_model
from engine_tiny import tiny_config, tiny_dict, write_config


@pytest.mark.slow
@pytest.mark.parametrize("sig, workers", [(signal.SIGTERM, 0), (signal.SIGINT, 1)])
def test_killed_run_checkpoints_and_resumes_on_the_same_trajectory(camvid_tiny, tmp_path, sig, workers):
    """SIGTERM to the trainer, or SIGINT to its whole process group (Ctrl-C, reaching the DataLoader worker too):
    it finishes the iteration, checkpoints, exits 128+signal; --resume then ends where a straight run ends."""
    root = camvid_tiny
    cfg = write_config(
        tmp_path / "tiny.yaml",
        tiny_dict(root, data={"workers": workers}, train={"iterations": 500, "checkpoint_every": 1000}),
    )
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "deeplab", "train", str(cfg), "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    log = out / "log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # Ctrl-C: the whole process group
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "--resume" in err
    assert not (out / "model.pt").exists()
    k = load_state(out / "checkpoint.pt")["iteration"]
    assert 2 <= k < 500  # a checkpoint was written on the signal (checkpoint_every is 1000)

    assert main(["train", str(cfg), f"train.iterations={k + 2}", "--out", str(out), "--resume", "--no-progress"]) == 0
    resumed = load_model(out / "model.pt").model.state_dict()
    straight = train(
        tiny_config(root, train={"iterations": k + 2, "checkpoint_every": 1000}), tmp_path / "straight", progress=False
    ).model.state_dict()
    for name, v in straight.items():
        assert torch.equal(v, resumed[name]), name
