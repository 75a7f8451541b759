"""Files of run folders: the one atomic writer, temp-file cleanup and the run-folder lock.

Every file neurodfc writes into a run or sweep folder goes through :func:`atomic_write`: the
content goes to a temp file ``.<name>.<random>.tmp`` in the same folder, is flushed to disk
(``fsync``) and renamed over the target (``os.replace``, atomic on POSIX), and the folder entry
is synced. A reader therefore sees the old file or the new one, never a partial one; a process
killed in the middle leaves at most a temp file, which :func:`clean_temp_files` removes at the
next start (under the lock, so never a temp file that a live writer is still filling).

:func:`hold_lock` takes an exclusive ``fcntl.flock`` on a lock file: training holds the lock
of its run folder for its whole lifetime, so that a second process training into the same
folder is refused instead of mixing two runs' files. The operating system drops the lock when
the holder dies (``kill -9`` included); a stale lock file is therefore harmless.

This module imports nothing from neurodfc (the lowest layers use it).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"
"""Suffix of the temp files of :func:`atomic_write` (their prefix is ``.<target name>.``)."""

NETCDF_LOCK = threading.RLock()
"""Serialises netCDF reads and writes within the process: the netCDF/HDF5 C libraries are not
thread-safe, and an ensemble's members (:mod:`neurodfc.ensemble`) write from their own threads."""


class RunDirError(ValueError):
    """A run or sweep folder cannot be used: it exists without ``--resume``, holds another
    config or a damaged checkpoint, is locked by another process, or cannot be written."""


class LockHeldError(RunDirError):
    """Another live process holds the lock of the folder."""


def _fsync_file(path: Path) -> None:
    """Flush the content of the file ``path`` to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Flush the entries of ``folder`` (the rename) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover (not POSIX)
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover (file systems without directory fsync)
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Write the file ``path`` atomically (see the module docstring).

    Args:
        path: the target file; its folder must exist.
        write: ``write(tmp)`` writes the whole content to the temp file ``tmp`` (a path in
            the same folder).

    Returns:
        ``path`` as a ``Path``; the file follows the umask like one made by ``open``.

    Raises:
        OSError: the folder cannot be written (full disk, read-only, ...): the temp file is
            removed and a previous ``path`` is left exactly as it was.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     p = atomic_write(Path(tmp) / "a.txt", lambda t: t.write_text("hello"))
        ...     p.read_text(), sorted(q.name for q in Path(tmp).iterdir())
        ('hello', ['a.txt'])
    """
    p = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=TEMP_SUFFIX, dir=p.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, p)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename in (name, tmp):
            err.filename = str(p)  # name the file the user knows, not the temp file
        raise
    _fsync_dir(p.parent)
    return p


def atomic_write_bytes(data: bytes, path: str | Path) -> Path:
    """Write ``data`` to the file ``path`` with :func:`atomic_write`.

    Args:
        data: the whole content.
        path: the target file (its folder must exist).
    """
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` (UTF-8) to the file ``path`` with :func:`atomic_write`.

    Args:
        text: the whole content.
        path: the target file (its folder must exist).
    """
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def clean_temp_files(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Remove the temp files that :func:`atomic_write` left in ``folder`` for the targets
    ``names`` (a writer killed before its rename). Call it only while holding the folder's
    lock, so that no live writer owns them.

    Args:
        folder: the run folder.
        names: file names of the targets (``checkpoint.pt`` ...).

    Returns:
        The removed files.
    """
    removed: list[Path] = []
    base = Path(folder)
    for name in names:
        for tmp in base.glob(f".{name}.*{TEMP_SUFFIX}"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def _holder(path: Path) -> str:
    """Who holds the lock ``path``, as written into it by the holder."""
    try:
        text = path.read_text().strip()
    except OSError:
        return "another process"
    return f"process {text}" if text else "another process"


def _open_locked(path: Path, blocking: bool) -> int:
    """Open ``path`` and take its exclusive lock; returns the descriptor."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            raise LockHeldError(
                f"{path.parent} is in use: {_holder(path)} holds its lock ({path.name}); wait "
                "for it to finish (or stop it), or choose another --out"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # the previous holder removes the file on release: make sure ours is still the one
        # at `path`, else another process may lock a fresh file at the same time
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def hold_lock(path: str | Path, *, blocking: bool = False, remove: bool = True) -> Iterator[Path]:
    """Hold an exclusive lock on the file ``path`` (created if missing) while in the block.

    Args:
        path: the lock file; its folder must exist.
        blocking: wait for the lock; else a held lock raises :class:`LockHeldError` at once.
        remove: delete the lock file when leaving the block (the folder stays as it was).

    Raises:
        LockHeldError: another process (or another open file in this one) holds the lock and
            ``blocking`` is False; the message names the holder's process id.
        OSError: the lock file cannot be created (a read-only folder, ...).
    """
    p = Path(path)
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover (not POSIX: no locking)
        yield p
        return
    fd = _open_locked(p, blocking)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield p
    finally:
        if remove:
            p.unlink(missing_ok=True)
        os.close(fd)  # releases the lock
