"""Flags for the dense CRF's parameters (``--bi-w`` ... ``--iterations``), shared by ``crf`` and ``evaluate``."""

from __future__ import annotations

import argparse

CRF_FLAGS = (
    ("bi_w", float, "bilateral kernel weight"),
    ("bi_xy_std", float, "bilateral position std (px)"),
    ("bi_rgb_std", float, "bilateral colour std (0-255)"),
    ("pos_w", float, "Gaussian kernel weight"),
    ("pos_xy_std", float, "Gaussian position std (px)"),
    ("iterations", int, "mean-field iterations"),
)


def add_crf_flags(p: argparse.ArgumentParser) -> None:
    """One optional flag per CRFParams number; unset flags stay None."""
    for name, typ, text in CRF_FLAGS:
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help=text)


def crf_flag_values(args: argparse.Namespace) -> dict:
    """{CRFParams field: value} of the flags given on the command line."""
    return {name: getattr(args, name) for name, _, _ in CRF_FLAGS if getattr(args, name) is not None}
