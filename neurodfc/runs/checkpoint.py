"""Checkpoint files with a content digest, verified before anything is unpickled.

A checkpoint file is three parts::

    NEURODFC-CHECKPOINT 1\\n              # the format line
    {"sha256": "<hex>", "size": <n>}\\n   # the digest and length of the payload
    <n bytes>                             # the payload: torch.save of the checkpoint dict

:func:`write_checkpoint` writes it atomically (:func:`neurodfc.runs.files.atomic_write`).
:func:`read_checkpoint` checks the format line, the length and the SHA-256 digest of the payload
before it unpickles anything, so a truncated, empty, foreign or altered file (one flipped bit in
a weight included) is refused with a one-line :class:`CheckpointError` that names the file and
the fix. Checkpoints written before digests existed (a plain ``torch.save`` zip file) are still
read, with a warning that their content cannot be verified; the next checkpoint of the run
carries a digest. (A single damaged bit cannot turn a new checkpoint into an old one: the
format line and the zip signature differ in several bits.)
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from neurodfc.runs.files import RunDirError, atomic_write

MAGIC = b"NEURODFC-CHECKPOINT 1\n"
"""The first line of a checkpoint file."""
_ZIP = b"PK\x03\x04"  # torch.save's default format: the checkpoints before digests


class CheckpointError(RunDirError):
    """A checkpoint file is missing, damaged, altered or not a neurodfc checkpoint."""


def _refuse(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: {why}; it cannot be resumed: start afresh with another --out, or restore "
        "the file from a backup"
    )


def write_checkpoint(payload: dict[str, Any], path: str | Path) -> str:
    """Write the checkpoint dict ``payload`` to ``path`` with its digest, atomically.

    Args:
        payload: anything ``torch.save`` can write (a dict of state dicts, RNG states ...).
        path: the checkpoint file; its folder must exist.

    Returns:
        The SHA-256 digest (hex) of the serialised payload.

    Raises:
        OSError: the file cannot be written; a previous checkpoint at ``path`` is untouched.
    """
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getbuffer()
    digest = hashlib.sha256(data).hexdigest()
    header = json.dumps({"sha256": digest, "size": len(data)}).encode() + b"\n"

    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            fh.write(MAGIC)
            fh.write(header)
            fh.write(data)

    atomic_write(path, write)
    return digest


def _payload(path: Path, data: bytes) -> bytes:
    """The verified payload of the checkpoint bytes ``data`` read from ``path``."""
    rest = data[len(MAGIC) :]
    end = rest.find(b"\n")
    try:
        header = json.loads(rest[:end]) if end > 0 else None
        digest, size = str(header["sha256"]), int(header["size"])  # type: ignore[index]
    except (ValueError, TypeError, KeyError):
        raise _refuse(path, "its header is damaged") from None
    payload = rest[end + 1 :]
    if len(payload) < size:
        raise _refuse(path, f"it is truncated ({len(payload)} of {size} bytes)")
    if len(payload) > size:
        raise _refuse(path, f"it has {len(payload) - size} bytes more than its header says")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise _refuse(path, "its content does not match its SHA-256 digest (altered or damaged)")
    return payload


def read_checkpoint(
    path: str | Path,
    *,
    required: Collection[str] = (),
    map_location: Any = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Read and verify the checkpoint file ``path`` (see the module docstring).

    Args:
        path: the checkpoint file.
        required: keys the checkpoint dict must hold (else it is a foreign file).
        map_location: ``torch.load``'s device mapping of the tensors.
        warn: receives the one-line warning for a checkpoint without a digest (default: none).

    Returns:
        The checkpoint dict.

    Raises:
        CheckpointError: the file is missing, a folder, unreadable, empty, truncated, altered
            (digest mismatch), of an unknown format, or a torch file that is not a neurodfc
            checkpoint (the message is one line naming the file and the fix).
    """
    import torch

    p = Path(path)
    if p.is_dir():
        raise _refuse(p, "it is a folder, not a checkpoint file")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise _refuse(p, f"it cannot be read ({err.strerror or err})") from None
    if not data:
        raise _refuse(p, "it is empty")
    if data.startswith(MAGIC):
        payload = _payload(p, data)
    elif data.startswith(_ZIP):
        payload = data
    else:
        raise _refuse(p, "it is not a neurodfc checkpoint (unknown format)")
    try:
        obj = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
    except Exception as err:  # a damaged zip, pickle or tensor record
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise _refuse(p, f"it cannot be loaded ({reason[:120]})") from None
    missing = sorted(set(required) - set(obj)) if isinstance(obj, dict) else sorted(required)
    if not isinstance(obj, dict) or missing:
        raise _refuse(p, f"it is a torch file but not a neurodfc checkpoint (no {missing})")
    if payload is data and warn is not None:
        warn(
            f"warning: {p} has no content digest (written by an older neurodfc): resumed "
            "without verifying it; the next checkpoint carries one"
        )
    return obj
