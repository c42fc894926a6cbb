"""Where the bundled data lives, in a source checkout and in an installed package alike."""

from __future__ import annotations

from pathlib import Path

__all__ = ["data_dir", "default_prior_dir", "images_dir"]


def data_dir() -> Path:
    """The bundled ``data/`` folder (images and the default prior).

    In a source checkout or an editable install it is the repository's ``data/``; in a regular
    install it is shipped inside the package as ``nested_inverse/data``.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "data", here.parent / "data"):
        if (candidate / "priors").is_dir():
            return candidate
    raise FileNotFoundError(
        f"bundled data not found next to {here}: expected `data/priors` in the package or the "
        "repository; reinstall nested-inverse"
    )


def default_prior_dir() -> Path:
    """The bundled default prior, ``data/priors/natural-patches-64`` (a DDPMPipeline folder)."""
    return data_dir() / "priors" / "natural-patches-64"


def images_dir() -> Path:
    """The bundled held-out test images, ``data/images``."""
    return data_dir() / "images"
