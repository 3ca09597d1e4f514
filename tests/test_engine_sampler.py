import json

from deeplab.engine.plots import append_log, plot_curves, read_log, truncate_log
from deeplab.engine.sampler import Position, ResumableSampler


def test_resumed_sampler_continues_the_epoch_order():
    data = range(10)
    full = ResumableSampler(data, seed=3)
    full.set_position(Position(epoch=2, consumed=0))
    order = list(full)
    assert sorted(order) == list(range(10))
    resumed = ResumableSampler(data, seed=3)
    resumed.set_position(Position(epoch=2, consumed=4))
    assert list(resumed) == order[4:] and len(resumed) == 6
    full.set_position(Position(epoch=3, consumed=0))
    assert list(full) != order  # a new permutation each epoch


def test_ranks_split_one_shared_permutation():
    data = range(11)
    parts = []
    for rank in (0, 1):
        s = ResumableSampler(data, num_replicas=2, rank=rank, seed=0)
        s.set_position(Position(epoch=1, consumed=0))
        parts.append(list(s))
    assert len(parts[0]) == len(parts[1]) == 5  # drop_last: equal shares
    assert not set(parts[0]) & set(parts[1])


def test_log_truncation_and_torn_lines(tmp_path):
    log = tmp_path / "log.jsonl"
    for i in range(1, 6):
        append_log(log, {"iteration": i, "loss": 1.0 / i, "lr": 0.01})
    append_log(log, {"iteration": 4, "val_miou": 0.5, "val_pixel_acc": 0.8})
    with open(log, "a") as f:
        f.write('{"iteration": 6, "lo')  # killed mid-write
    assert [r["iteration"] for r in read_log(log)] == [1, 2, 3, 4, 5, 4]
    truncate_log(log, 3)
    assert [json.loads(ln)["iteration"] for ln in log.read_text().splitlines()] == [1, 2, 3]
    png = plot_curves([*read_log(log), {"iteration": 3, "val_miou": 0.4}], tmp_path / "curves.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
