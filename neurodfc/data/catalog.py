"""What the image data sets contain: their file names, checksums, mirrors and folder names.

The checksums are SHA-256 digests of each file's *decompressed* content (gzip headers differ
between distributions, the content does not); they are also pooch's registry
(:func:`registry`) for downloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FILES", "SOURCES", "DatasetSource", "canonical_name", "registry"]

FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The four files of an MNIST-style data set (uncompressed names; ``.gz`` is also accepted)."""


@dataclass(frozen=True)
class DatasetSource:
    """Where a data set may live and what its files must contain.

    Attributes:
        name: canonical name (``"mnist"`` or ``"fashion_mnist"``).
        sha256: file stem (see :data:`FILES`) -> SHA-256 hex digest of the decompressed file.
        mirrors: base URLs serving ``<stem>.gz``, tried in order.
        subfolders: names accepted below a data directory, e.g. ``data_dir / "mnist"``.
        system_dirs: system-wide install locations (e.g. Debian packages).
    """

    name: str
    sha256: Mapping[str, str]
    mirrors: tuple[str, ...]
    subfolders: tuple[str, ...]
    system_dirs: tuple[Path, ...] = ()


# SHA-256 of the decompressed files, in the format of ``sha256sum`` (``<hex>  <file>``).
_MNIST_SHA256 = """
ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte
"""
_FASHION_SHA256 = """
c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888  train-images-idx3-ubyte
bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9  train-labels-idx1-ubyte
5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b  t10k-images-idx3-ubyte
0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34  t10k-labels-idx1-ubyte
"""


def _sums(text: str) -> dict[str, str]:
    """Parse ``sha256sum`` output into file name -> hex digest."""
    return {name: digest for digest, name in (line.split() for line in text.strip().splitlines())}


SOURCES: dict[str, DatasetSource] = {
    "mnist": DatasetSource(
        name="mnist",
        sha256=_sums(_MNIST_SHA256),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        subfolders=("mnist", "MNIST", "MNIST/raw"),
    ),
    "fashion_mnist": DatasetSource(
        name="fashion_mnist",
        sha256=_sums(_FASHION_SHA256),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        subfolders=("fashion_mnist", "fashion-mnist", "FashionMNIST", "FashionMNIST/raw"),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    ),
}
"""The known image data sets by canonical name: checksums, mirrors and folders searched."""


def canonical_name(name: str) -> str:
    """Map ``"mnist"``, ``"fashion_mnist"`` or ``"fashion-mnist"`` to its canonical name.

    Args:
        name: the data set's name (case and ``-``/``_`` do not matter).

    Raises:
        ValueError: for any other name (the message lists the allowed names).
    """
    key = name.strip().lower().replace("-", "_")
    if key not in SOURCES:
        raise ValueError(
            f"name must be one of {sorted(SOURCES)} (or 'fashion-mnist'), got {name!r}"
        )
    return key


def registry(name: str) -> dict[str, str]:
    """pooch's registry of ``name``: file stem -> ``"sha256:<hex>"`` of the decompressed file.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"`` (aliases as in :func:`canonical_name`).
    """
    return {
        stem: f"sha256:{digest}" for stem, digest in SOURCES[canonical_name(name)].sha256.items()
    }
