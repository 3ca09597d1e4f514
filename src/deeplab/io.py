"""Atomic file writes: a file either keeps its old content or gets the whole new one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from deeplab.errors import InputError


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions of a new file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a truncated file behind (kill-safe)."""
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f))


def load_torch_file(path: str | os.PathLike, what: str) -> Any:
    """``torch.load`` (weights only, to CPU) of a file described as ``what`` ("model checkpoint", ...).

    Raises InputError naming the file if it is missing or unreadable.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors come in many types
        raise InputError(f"{path}: not a readable {what} ({type(e).__name__}: {e})") from e
