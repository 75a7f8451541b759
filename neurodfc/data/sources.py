"""Locating, verifying and (optionally) downloading the MNIST and Fashion-MNIST IDX files.

Every file is verified against the built-in SHA-256 of its *decompressed* content (gzip headers
differ between distributions, the content does not). Verdicts are cached in memory per
``(resolved path, mtime, size)``, so a file is hashed once per process unless it changes.
"""

from __future__ import annotations

import functools
import http.client
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from neurodfc.data.errors import DatasetError
from neurodfc.data.idx import PathLike, file_key, sha256_of_decompressed

__all__ = [
    "FILES",
    "SOURCES",
    "DatasetError",
    "DatasetSource",
    "cache_dir",
    "canonical_name",
    "candidate_dirs",
    "download_dataset",
    "find_files",
    "locate",
    "verify_files",
]

FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The four files of an MNIST-style data set (uncompressed names; ``.gz`` is also accepted)."""
_CHUNK = 1 << 20


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

    Raises:
        ValueError: for any other name (the message lists the allowed names).
    """
    key = name.strip().lower().replace("-", "_")
    if key not in SOURCES:
        raise ValueError(
            f"name must be one of {sorted(SOURCES)} (or 'fashion-mnist'), got {name!r}"
        )
    return key


def cache_dir(name: str) -> Path:
    """Per-user download folder: ``$XDG_CACHE_HOME/neurodfc/<name>`` (default ``~/.cache``)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root).expanduser() / "neurodfc" / canonical_name(name)


def candidate_dirs(name: str, data_dir: PathLike | None = None) -> list[Path]:
    """Folders searched for ``name``, in order (duplicates removed).

    Order: ``data_dir`` then its subfolders (e.g. ``data_dir/mnist``); ``$NEURODFC_DATA`` and its
    subfolders; the system folders (Fashion-MNIST: ``/usr/share/datasets/fashion-mnist``); the
    user cache :func:`cache_dir`.
    """
    src = SOURCES[canonical_name(name)]
    out: list[Path] = []
    for base in (data_dir, os.environ.get("NEURODFC_DATA") or None):
        if base is not None:
            root = Path(base).expanduser()
            out += [root, *(root / sub for sub in src.subfolders)]
    out += [*src.system_dirs, cache_dir(src.name)]
    return list(dict.fromkeys(out))


def find_files(folder: PathLike) -> dict[str, Path] | None:
    """Return stem -> path for the four files in ``folder``, or None if any is missing.

    Each file may be uncompressed (``<stem>``, preferred) or gzip-compressed (``<stem>.gz``).
    """
    root = Path(folder)
    found: dict[str, Path] = {}
    for stem in FILES:
        for cand in (root / stem, root / f"{stem}.gz"):
            if cand.is_file():
                found[stem] = cand
                break
        else:
            return None
    return found


@functools.lru_cache(maxsize=256)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    """SHA-256 of the decompressed content; cached per (path, mtime, size)."""
    del mtime_ns, size  # only part of the cache key
    return sha256_of_decompressed(path)


def verify_files(name: str, files: Mapping[str, Path]) -> None:
    """Check each file's decompressed SHA-256 against the built-in value for ``name``.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"`` (aliases as in :func:`canonical_name`).
        files: file stem (see :data:`FILES`) -> path, as returned by :func:`find_files`.

    Each file is hashed at most once per ``(resolved path, mtime, size)`` and process.

    Raises:
        DatasetError: naming the file, the expected and the actual checksum on a mismatch, or
            the file if it cannot be read.
    """
    src = SOURCES[canonical_name(name)]
    for stem, path in files.items():
        expected = src.sha256[stem]
        actual = _digest(*file_key(path))
        if actual != expected:
            raise DatasetError(
                f"{path}: checksum mismatch for {src.name} file {stem}: expected SHA-256 "
                f"{expected} (of the decompressed content), got {actual}; the file is corrupt "
                "or belongs to another data set"
            )


def _fetch(url: str, dest: Path, expected: str, timeout: float) -> None:
    """Download ``url`` to a temp file beside ``dest``, verify it, rename it atomically."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, _CHUNK)
        try:
            actual = sha256_of_decompressed(tmp)
        except DatasetError as exc:
            raise DatasetError(f"{dest.name} from {url}: not a valid gzip file: {exc}") from exc
        if actual != expected:
            raise DatasetError(
                f"{dest.name} from {url}: checksum mismatch: expected SHA-256 {expected} "
                f"(of the decompressed content), got {actual}; download deleted"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def download_dataset(
    name: str,
    dest: PathLike | None = None,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download the missing files of ``name`` into ``dest`` (default :func:`cache_dir`).

    Each ``<stem>.gz`` is fetched from the mirrors in order into a temp file beside its final
    place, verified (decompressed SHA-256) and moved in with an atomic rename, so a failed or
    interrupted download never leaves a partial or unverified file. Files already in ``dest`` are
    kept and verified.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        dest: target folder, created if needed.
        mirrors: base URLs (``file://`` works too); default the canonical mirrors.
        timeout: socket timeout per request, in seconds.

    Returns:
        The folder holding the four verified files.

    Raises:
        DatasetError: if every mirror fails for a file (the message names the file and each
            mirror's error, including expected and actual checksums on a mismatch).
    """
    src = SOURCES[canonical_name(name)]
    folder = Path(dest) if dest is not None else cache_dir(src.name)
    folder.mkdir(parents=True, exist_ok=True)
    bases = tuple(mirrors) if mirrors is not None else src.mirrors
    if not bases:
        raise ValueError("mirrors must name at least one base URL")
    for stem in FILES:
        if (folder / stem).is_file() or (folder / f"{stem}.gz").is_file():
            continue
        errors: list[str] = []
        for base in bases:
            url = base if base.endswith("/") else base + "/"
            url += f"{stem}.gz"
            try:
                _fetch(url, folder / f"{stem}.gz", src.sha256[stem], timeout)
                break
            except (ValueError, OSError, http.client.HTTPException) as exc:
                errors.append(f"  {url}: {exc}")
        else:
            raise DatasetError(
                f"could not download {src.name} file {stem}.gz into {folder}:\n" + "\n".join(errors)
            )
    files = find_files(folder)
    assert files is not None  # every stem was present or has just been downloaded
    verify_files(src.name, files)
    return folder


def locate(
    name: str,
    data_dir: PathLike | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    *,
    verify: bool = True,
) -> Path:
    """Find (or download) the folder holding the verified IDX files of ``name``.

    The first folder of :func:`candidate_dirs` that holds all four files (plain or ``.gz``) is
    used; it is verified, and a mismatch raises rather than falling through to the next folder.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` or ``"fashion-mnist"``.
        data_dir: folder searched first (the files directly, or a subfolder such as ``mnist``).
        download: download into the user cache if no folder qualifies.
        mirrors: base URLs for the download (default the canonical mirrors).
        verify: check the SHA-256 of each file (cached per path, mtime and size).

    Returns:
        The folder; :func:`find_files` gives the four paths inside it.

    Raises:
        ValueError: for an unknown name.
        DatasetError: if nothing is found and ``download`` is False, a download fails, or a
            file fails verification (the message names the file and the expected checksum).
    """
    key = canonical_name(name)
    searched = candidate_dirs(key, data_dir)
    for folder in searched:
        files = find_files(folder)
        if files is not None:
            if verify:
                verify_files(key, files)
            return folder
    if not download:
        where = "\n".join(f"  {p}" for p in searched)
        raise DatasetError(
            f"{key}: no folder with all of {', '.join(FILES)} (.gz optional); searched:\n{where}\n"
            "pass data_dir=..., set NEURODFC_DATA, or allow download=True"
        )
    return download_dataset(key, mirrors=mirrors)
