"""Reading IDX files (the MNIST file format), plain or gzip-compressed.

The IDX format: two zero bytes, one dtype code byte, one byte ``ndim``, then ``ndim`` big-endian
uint32 dimensions, then the row-major payload in big-endian order. Compression is detected from
the gzip magic bytes (``1f 8b``), never from the file name.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import zlib
from pathlib import Path

import numpy as np

from neurodfc.data.errors import DatasetError

__all__ = ["STREAM_ERRORS", "file_key", "is_gzip", "read_idx", "sha256_of_decompressed"]

PathLike = str | os.PathLike[str]

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
#: IDX dtype code -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
STREAM_ERRORS = (OSError, EOFError, zlib.error)
"""Errors a missing file or a damaged gzip stream can raise (``BadGzipFile`` is an OSError)."""


def is_gzip(path: PathLike) -> bool:
    """Return True if the file at ``path`` starts with the gzip magic bytes ``1f 8b``."""
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def _open(path: PathLike) -> io.BufferedIOBase:
    """Open ``path`` for binary reading, transparently decompressing gzip."""
    if is_gzip(path):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read_all(path: PathLike) -> bytes:
    try:
        with _open(path) as fh:
            return fh.read()
    except STREAM_ERRORS as exc:
        if isinstance(exc, FileNotFoundError):
            raise DatasetError(f"{path}: file not found") from exc
        raise DatasetError(f"{path}: cannot read (truncated or corrupt gzip?): {exc}") from exc


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip) into a numpy array.

    Args:
        path: file to read; compression is detected from the content.

    Returns:
        A writable array in native byte order with the shape stored in the header, e.g.
        ``[60000, 28, 28]`` uint8 for MNIST training images or ``[60000]`` uint8 for labels.

    Raises:
        DatasetError: (naming the file) if the file is missing, the gzip stream is damaged, the
            magic number, dtype code or number of dimensions is invalid, or the payload length
            does not match the dimensions (truncated or padded file).
    """
    data = _read_all(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: bad IDX magic number {data[:4].hex()} (must start 0000)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise DatasetError(f"{path}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise DatasetError(f"{path}: IDX header declares zero dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} < {header} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        raise DatasetError(
            f"{path}: IDX payload is {actual} bytes but shape {shape} of {dtype} needs "
            f"{expected} bytes (truncated or corrupt file)"
        )
    # bytearray gives a writable buffer; astype converts to native byte order if needed.
    arr = np.frombuffer(bytearray(data[header:]), dtype=dtype).reshape(shape)
    native = dtype.newbyteorder("=")
    return arr if native == dtype else arr.astype(native)


def sha256_of_decompressed(path: PathLike) -> str:
    """Return the SHA-256 hex digest of the decompressed content of the file at ``path``.

    The file is streamed in 1 MiB chunks.

    For an uncompressed file this is the digest of the file itself, so a ``.gz`` file and its
    decompressed copy have the same digest.

    Raises:
        DatasetError: (naming the file) if it is missing or its gzip stream is damaged.
    """
    digest = hashlib.sha256()
    try:
        with _open(path) as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except STREAM_ERRORS as exc:
        if isinstance(exc, FileNotFoundError):
            raise DatasetError(f"{path}: file not found") from exc
        raise DatasetError(f"{path}: cannot read (truncated or corrupt gzip?): {exc}") from exc
    return digest.hexdigest()


def file_key(path: PathLike) -> tuple[str, int, int]:
    """Return ``(resolved path, mtime in ns, size in bytes)``, the key for content caches."""
    p = Path(path).resolve()
    st = p.stat()
    return str(p), st.st_mtime_ns, st.st_size
