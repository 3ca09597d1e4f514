"""Output paths, checked before any work starts: the right kind (file or folder) and suffix, a writable place,
a name the file system accepts, and never one of the command's own input files.

Every file is then written atomically (deeplab.io.atomic_write): an interrupted or failed write leaves the
previous file intact. Errors are InputError naming the flag and the path.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from deeplab.errors import InputError


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_place(folder: Path, flag: str, target: Path) -> None:
    """``folder`` (to be created if missing) can receive new files."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise InputError(f"{flag} {target}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {target}: {base} is not writable")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(
    path: str | os.PathLike, suffixes: Iterable[str], flag: str, inputs: Iterable[str | os.PathLike] = ()
) -> Path:
    """Validate an output file path; returns it. ``suffixes``: accepted lower-case suffixes (".png", ...)."""
    text = os.fspath(path)
    suffixes = tuple(suffixes)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise InputError(f"{flag} {text}: is a folder; give a file name ending in {' or '.join(suffixes)}")
    if path.suffix.lower() not in suffixes:
        got = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise InputError(f"{flag} {text}: expected a {' or '.join(suffixes)} file, got {got}")
    check_name(path, flag)
    for src in inputs:
        if _same_file(path, Path(src)):
            raise InputError(f"{flag} {text}: is an input file of this command; refusing to overwrite it")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{flag} {text}: exists and is not writable")
    _check_place(path.parent, flag, path)
    return path


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Validate an output folder (created later if missing); returns it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path}: exists and is a file; give a folder")
    _check_place(path, flag, path)
    return path


def check_name(path: Path, flag: str) -> None:
    """The file name fits the file system's limit (usually 255 bytes)."""
    try:
        limit = os.pathconf(_nearest_existing(path.parent), "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(os.fsencode(path.name)) > limit:
        raise InputError(f"{flag} {path}: the file name is longer than this file system allows ({limit} bytes)")


def check_planned_files(files: Iterable[Path], inputs: Iterable[Path], flag: str) -> None:
    """Files a command will write into its output folder: none may be an input, a folder or too long a name."""
    inputs = list(inputs)
    resolved = {Path(p).resolve() for p in inputs}
    for f in files:
        if f.resolve() in resolved or any(_same_file(f, i) for i in inputs if f.name == Path(i).name):
            raise InputError(f"{flag}: writing {f} would overwrite the input image {f}; choose another output folder")
        if f.is_dir():
            raise InputError(f"{flag}: {f} is a folder, so the output {f.name} cannot be written there")
        check_name(f, flag)
