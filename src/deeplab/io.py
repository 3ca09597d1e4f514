"""Atomic file writes: a file either keeps its old content or gets the whole new one.

Temporary files are named ``.deeplab-XXXXXXXX.tmp`` in the destination folder (a short name, so that the
longest allowed destination name still works); clean_temp_files removes the ones an interrupted run left.
A failed write (disk full, file size limit, permissions) leaves the destination untouched and raises
InputError naming the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from deeplab.errors import InputError

TEMP_PREFIX, TEMP_SUFFIX = ".deeplab-", ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name (e.g. an exporter); on
    success it is renamed over ``path``, on any failure removed. OS errors -> InputError naming ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions of a new file
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise InputError(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        _remove(tmp)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync, then rename over ``path``."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def _remove(tmp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def clean_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove temporary files that an interrupted atomic_write left in ``folder``. Returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}") if p.is_file()]
    for p in stale:
        _remove(str(p))
    return stale


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
