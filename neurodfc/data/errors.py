"""Exception type shared by the data package."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A data set could not be found, read or verified.

    Raised for missing files, malformed or truncated IDX/gzip files, checksum mismatches and
    failed downloads. The message always names the file (or the folders searched).
    """
