"""Resumable, distributed data order.

Each epoch is a permutation of the data set fixed by (seed, epoch) and shared by all ranks; rank r takes
every world_size-th index (DistributedSampler). Together with deeplab.data.transforms.SeededDataset
(augmentation seeded from (seed, epoch, index)) the sample stream is a pure function of the position
(epoch, samples consumed in the epoch), which is all a checkpoint needs to store to continue the same
trajectory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from dataclasses import dataclass

from torch.utils.data import DistributedSampler


@dataclass
class Position:
    """Where a rank is in its sample stream: ``consumed`` samples of ``epoch`` already used."""

    epoch: int = 0
    consumed: int = 0


class ResumableSampler(DistributedSampler):
    """DistributedSampler (shuffle, drop_last) that starts ``start`` samples into its epoch."""

    def __init__(self, dataset: Sized, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        # DistributedSampler only needs len(dataset): any sized data set will do
        super().__init__(dataset, num_replicas, rank, shuffle=True, seed=seed, drop_last=True)  # type: ignore[arg-type]
        self.start = 0

    def set_position(self, pos: Position) -> None:
        self.set_epoch(pos.epoch)
        self.start = pos.consumed

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)
