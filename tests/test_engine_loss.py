import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeplab.engine.class_weights import class_pixel_counts, median_frequency_weights
from deeplab.engine.trainer import loss_normalizer, segmentation_loss
from deeplab.errors import InputError


def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, 6, 6, generator=g)
    target = torch.randint(0, 5, (4, 6, 6), generator=g)
    target[0, :3] = 255
    return logits, target


@pytest.mark.parametrize("weighted", [False, True])
def test_micro_batch_losses_add_up_to_the_full_batch_mean(weighted):
    """Each micro-batch loss is normalised by the whole batch, so accumulated gradients are the full batch's."""
    logits, target = batch()
    weight = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.25]) if weighted else None
    norm = loss_normalizer([target[i : i + 1] for i in range(4)], weight)
    parts = sum(segmentation_loss(logits[i : i + 1], target[i : i + 1], norm, weight) for i in range(4))
    full = F.cross_entropy(logits, target, weight=weight, ignore_index=255)  # torch's (weighted) mean
    torch.testing.assert_close(parts, full)


def test_mismatched_score_map_is_reported():
    logits, target = batch()
    with pytest.raises(InputError, match=r"8k\+1"):
        segmentation_loss(logits, target[..., :5], 1.0)


def test_median_frequency_weights():
    a = np.array([[0, 0, 0, 1]], np.uint8)  # 4 pixels: class 0 x3, class 1 x1
    b = np.array([[0, 2, 255, 255]], np.uint8)  # 2 valid pixels: class 0, class 2
    counts, present = class_pixel_counts([a, b], 4)
    assert counts.tolist() == [4, 1, 1, 0] and present.tolist() == [6, 4, 2, 0]
    w = median_frequency_weights(counts, present)
    freq = np.array([4 / 6, 1 / 4, 1 / 2])
    np.testing.assert_allclose(w[:3], np.median(freq) / freq)
    assert w[3] == 0.0  # never seen
