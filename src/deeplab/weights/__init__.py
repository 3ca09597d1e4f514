"""The model shipped inside the package (``--model default``)."""

from __future__ import annotations

import os
from pathlib import Path

from deeplab.errors import InputError

DEFAULT_MODEL = "deeplab_camvid.pt"


def default_model_path() -> Path:
    """Path of the shipped default model (a deeplab.models.save_model file); InputError if it is absent."""
    path = Path(__file__).with_name(DEFAULT_MODEL)
    if not path.is_file():
        raise InputError(
            f"--model default: the shipped model {path} is missing from this installation; "
            "pass --model PATH to a model written by `deeplab train`"
        )
    return path


def resolve_model_path(spec: str | os.PathLike) -> Path:
    """``"default"`` -> default_model_path(); anything else is taken as a file path."""
    return default_model_path() if str(spec) == "default" else Path(spec)


def is_shipped_model(path: str | os.PathLike) -> bool:
    """True if ``path`` is (or would replace) a file inside the package's weights folder."""
    return Path(path).resolve().parent == Path(__file__).resolve().parent
