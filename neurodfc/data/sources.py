"""Locating, verifying and (only into the user cache) downloading the MNIST-style IDX files.

Folders are searched in this order (see :func:`candidate_dirs`); the first one holding *any*
file of the data set decides:

1. ``data_dir`` (the argument; the config's ``data.data_dir``) and its subfolders (``mnist``,
   ``fashion-mnist``, ...);
2. ``$NEURODFC_DATA`` and its subfolders;
3. system folders (Debian's ``/usr/share/datasets/fashion-mnist``);
4. the user cache :func:`cache_dir`: ``$NEURODFC_CACHE/<name>``, else pooch's per-user cache
   folder ``neurodfc/<name>`` (``~/.cache`` or ``$XDG_CACHE_HOME`` on Linux).

A folder with some files but not all is an error naming the missing file (except the cache,
where the missing files are downloaded). Downloads use pooch (:func:`make_pooch`: its registry
holds the SHA-256 of each file's decompressed content) and go only into the cache; none is
attempted when a folder was given explicitly (``data_dir`` or ``$NEURODFC_DATA``) or while
``$NEURODFC_NO_DOWNLOAD`` is set (the test suite sets it).

Every file found is verified against the same SHA-256 of its *decompressed* content (gzip
headers differ between distributions, the content does not); verdicts are cached in memory per
``(resolved path, mtime, size)``, so a file is hashed once per process unless it changes.
"""

from __future__ import annotations

import functools
import gzip
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pooch

# FILES and SOURCES stay reachable as neurodfc.data.sources.FILES / .SOURCES (same objects)
from neurodfc.data.catalog import FILES, SOURCES, canonical_name, registry
from neurodfc.data.errors import DatasetError
from neurodfc.data.idx import STREAM_ERRORS, PathLike, file_key, sha256_of_decompressed

__all__ = [
    "CACHE_ENV",
    "DATA_ENV",
    "NO_DOWNLOAD_ENV",
    "DatasetError",
    "cache_dir",
    "candidate_dirs",
    "download_dataset",
    "find_files",
    "locate",
    "make_pooch",
    "present_files",
    "verify_files",
]

DATA_ENV = "NEURODFC_DATA"
"""Environment variable naming a data folder (searched after ``data_dir``)."""
CACHE_ENV = "NEURODFC_CACHE"
"""Environment variable replacing the root of the download cache."""
NO_DOWNLOAD_ENV = "NEURODFC_NO_DOWNLOAD"
"""Environment variable that, when set to anything but ``""`` or ``"0"``, forbids downloads."""
_CHUNK = 1 << 20


def cache_dir(name: str) -> Path:
    """The download folder of ``name``: ``$NEURODFC_CACHE/<name>``, else pooch's per-user
    cache ``neurodfc/<name>`` (on Linux ``$XDG_CACHE_HOME``, default ``~/.cache``).

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"`` (aliases as in :func:`canonical_name`).
    """
    root = os.environ.get(CACHE_ENV) or pooch.os_cache("neurodfc")
    return Path(root).expanduser() / canonical_name(name)


def _candidates(name: str, data_dir: PathLike | None) -> list[tuple[Path, str]]:
    """The folders of :func:`candidate_dirs`, each with where it came from."""
    src = SOURCES[canonical_name(name)]
    out: list[tuple[Path, str]] = []
    for base, origin in ((data_dir, "data_dir"), (os.environ.get(DATA_ENV) or None, DATA_ENV)):
        if base is not None:
            root = Path(base).expanduser()
            out += [(p, origin) for p in (root, *(root / sub for sub in src.subfolders))]
    out += [(p, "system folder") for p in src.system_dirs]
    out.append((cache_dir(src.name), "user cache"))
    seen: dict[Path, str] = {}
    for path, origin in out:
        seen.setdefault(path, origin)
    return list(seen.items())


def candidate_dirs(name: str, data_dir: PathLike | None = None) -> list[Path]:
    """Folders searched for ``name``, in order (duplicates removed).

    Order: ``data_dir`` then its subfolders (e.g. ``data_dir/mnist``); ``$NEURODFC_DATA`` and
    its subfolders; the system folders (Fashion-MNIST: ``/usr/share/datasets/fashion-mnist``);
    the user cache :func:`cache_dir`.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"`` (aliases as in :func:`canonical_name`).
        data_dir: folder searched first (optional).
    """
    return [path for path, _ in _candidates(name, data_dir)]


def present_files(folder: PathLike) -> dict[str, Path]:
    """Stem -> path for those of the four files that ``folder`` holds (possibly none).

    Args:
        folder: the folder; each file may be uncompressed (``<stem>``, preferred) or
            gzip-compressed (``<stem>.gz``).
    """
    root = Path(folder)
    found: dict[str, Path] = {}
    for stem in FILES:
        for cand in (root / stem, root / f"{stem}.gz"):
            if cand.is_file():
                found[stem] = cand
                break
    return found


def find_files(folder: PathLike) -> dict[str, Path] | None:
    """Stem -> path for the four files in ``folder``, or None if any is missing.

    Args:
        folder: the folder (see :func:`present_files` for the accepted file names).
    """
    found = present_files(folder)
    return found if len(found) == len(FILES) else None


@functools.lru_cache(maxsize=256)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    """SHA-256 of the decompressed content; cached per (path, mtime, size)."""
    del mtime_ns, size  # only part of the cache key
    return sha256_of_decompressed(path)


def verify_files(name: str, files: Mapping[str, Path]) -> None:
    """Check each file's decompressed SHA-256 against the built-in value for ``name``.

    Each file is hashed at most once per ``(resolved path, mtime, size)`` and process.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"`` (aliases as in :func:`canonical_name`).
        files: file stem (see :data:`FILES`) -> path, as returned by :func:`find_files`.

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


def make_pooch(name: str, base_url: str) -> pooch.Pooch:
    """A pooch that fetches ``<base_url><stem>.gz`` into :func:`cache_dir` (``name``).

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"`` (aliases as in :func:`canonical_name`).
        base_url: a mirror serving the gzip-compressed files.
    """
    base = base_url if base_url.endswith("/") else base_url + "/"
    return pooch.create(
        path=cache_dir(name),
        base_url=base,
        registry=registry(name),
        urls={stem: f"{base}{stem}.gz" for stem in FILES},
        retry_if_failed=0,
    )


@dataclass(frozen=True)
class _Gunzip:
    """A pooch downloader: fetch the ``.gz`` over HTTP(S), write its decompressed content
    (which pooch then checks against the registry before moving it into the cache)."""

    timeout: float

    def __call__(self, url: str, output_file: str, fetcher: Any) -> None:
        packed = Path(f"{output_file}.gz")
        try:
            pooch.HTTPDownloader(timeout=self.timeout)(url, str(packed), fetcher)
            try:
                with gzip.open(packed, "rb") as fin, open(output_file, "wb") as fout:
                    shutil.copyfileobj(fin, fout, _CHUNK)
            except STREAM_ERRORS as exc:
                raise DatasetError(f"not a valid gzip file: {exc}") from exc
        finally:
            packed.unlink(missing_ok=True)


def _downloads_disabled() -> bool:
    return os.environ.get(NO_DOWNLOAD_ENV, "") not in ("", "0")


def download_dataset(
    name: str, mirrors: Sequence[str] | None = None, timeout: float = 30.0
) -> Path:
    """Download the missing files of ``name`` into :func:`cache_dir` with pooch.

    Each ``<stem>.gz`` is fetched from the mirrors in order; its decompressed content is
    written to a temp file in the cache, checked against :func:`registry` and moved into place
    (pooch), so a failed download never leaves a partial or unverified file. Files already in
    the cache are kept and verified.

    Args:
        name: ``"mnist"`` or ``"fashion_mnist"``.
        mirrors: base URLs (http or https); default the canonical mirrors.
        timeout: socket timeout per request, in seconds.

    Returns:
        The cache folder holding the four verified files.

    Raises:
        DatasetError: if downloads are disabled (``$NEURODFC_NO_DOWNLOAD``) or every mirror
            fails for a file (the message names the file and each mirror's error, with the
            expected and actual checksums on a mismatch).
    """
    src = SOURCES[canonical_name(name)]
    folder = cache_dir(src.name)
    if _downloads_disabled():
        raise DatasetError(
            f"{src.name}: a download into {folder} was needed but downloads are disabled by "
            f"{NO_DOWNLOAD_ENV}={os.environ[NO_DOWNLOAD_ENV]!r}"
        )
    import requests  # pooch's HTTP client; imported only when downloading

    bases = tuple(mirrors) if mirrors is not None else src.mirrors
    if not bases:
        raise ValueError("mirrors must name at least one base URL")
    have = present_files(folder)
    for stem in (s for s in FILES if s not in have):
        errors: list[str] = []
        for base in bases:
            fetcher = make_pooch(src.name, base)
            try:
                fetcher.fetch(stem, downloader=_Gunzip(timeout))
                break
            except (ValueError, OSError, requests.RequestException) as exc:
                errors.append(f"{fetcher.get_url(stem)}: {exc}")
        else:
            raise DatasetError(
                f"could not download {src.name} file {stem}.gz into {folder}: " + "; ".join(errors)
            )
    files = find_files(folder)
    assert files is not None  # every stem was present or has just been downloaded
    verify_files(src.name, files)
    return folder


def _missing(key: str, folder: Path, origin: str, have: Mapping[str, Path]) -> str:
    """One line: which files of ``key`` the ``folder`` lacks and which it holds."""
    missing = [s for s in FILES if s not in have]
    more = f" (and {', '.join(missing[1:])})" if missing[1:] else ""
    return (
        f"{folder}: {key} file {missing[0]}(.gz) is missing{more}; the folder ({origin}) "
        f"holds {', '.join(p.name for p in have.values())}"
    )


def locate(
    name: str,
    data_dir: PathLike | None = None,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    *,
    verify: bool = True,
) -> Path:
    """Find (or download into the cache) the folder holding the verified IDX files of ``name``.

    The first folder of :func:`candidate_dirs` holding any of the four files (plain or ``.gz``)
    decides: with all four it is verified and returned (a mismatch raises rather than falling
    through); with some missing it is an error naming them, except in the user cache, where
    they are downloaded. No folder holding any file: download into the cache, unless a folder
    was given explicitly (``data_dir`` or ``$NEURODFC_DATA``), ``download`` is False or
    ``$NEURODFC_NO_DOWNLOAD`` is set.

    Args:
        name: ``"mnist"``, ``"fashion_mnist"`` or ``"fashion-mnist"``.
        data_dir: folder searched first (the files directly, or a subfolder such as ``mnist``).
        download: allow downloading into the user cache.
        mirrors: base URLs for the download (default the canonical mirrors).
        verify: check the SHA-256 of each file (cached per path, mtime and size).

    Returns:
        The folder; :func:`find_files` gives the four paths inside it.

    Raises:
        ValueError: for an unknown name.
        DatasetError: one line naming the folder and the missing file when the files are not
            found (and no download is allowed), a download fails, or a file fails
            verification (naming the file and the expected checksum).
    """
    key = canonical_name(name)
    candidates = _candidates(key, data_dir)
    explicit = [(p, o) for p, o in candidates if o in ("data_dir", DATA_ENV)]
    no_download = ""
    if explicit:
        no_download = f"no download is attempted when a data folder is given ({explicit[0][1]})"
    elif not download:
        no_download = "downloads not allowed (download=False)"
    elif _downloads_disabled():
        no_download = f"downloads are disabled by {NO_DOWNLOAD_ENV}"
    for folder, origin in candidates:
        have = present_files(folder)
        if not have:
            continue
        if len(have) < len(FILES):
            if origin == "user cache" and not no_download:
                return download_dataset(key, mirrors=mirrors)
            hint = no_download or "copy the missing file there"
            raise DatasetError(f"{_missing(key, folder, origin, have)}; {hint}")
        if verify:
            verify_files(key, have)
        return folder
    if not no_download:
        return download_dataset(key, mirrors=mirrors)
    searched = ", ".join(str(p) for p, _ in candidates)
    if explicit:
        folder, origin = explicit[0]
        raise DatasetError(
            f"{key}: {FILES[0]}(.gz) not found in {folder} ({origin}) or its subfolders "
            f"(searched: {searched}); {no_download}: copy the four files there, or drop "
            f"data_dir and unset {DATA_ENV} to download into {cache_dir(key)}"
        )
    raise DatasetError(
        f"{key}: {FILES[0]}(.gz) not found (searched: {searched}); {no_download}: pass "
        f"data_dir=..., set {DATA_ENV}, or allow the download into {cache_dir(key)}"
    )
