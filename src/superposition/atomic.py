"""Atomic file writes: a temporary file beside the target, fsync, then rename over it.

A crash or kill at any moment leaves either the old file or the new one under the final name,
never a half-written file; a temporary file a killed writer left behind is named
``.NAME.*.tmp`` and `remove_temporaries` deletes them (call it only while holding the lock of the
folder, so that nobody else is writing). Files get the usual permissions (0666 minus the umask),
not the owner-only mode of `tempfile.mkstemp`.

A write that fails (read-only filesystem, full disk, no permission) raises `OSError` whose
``filename`` is the target (not the temporary name) and whose ``strerror`` says it could not be
written; nothing is left behind. JSON is always standard JSON: NaN and infinity are refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_error(exc: OSError, path: Path) -> OSError:
    """`exc` restated about `path`, the file the caller meant to write."""
    reason = exc.strerror or exc.__class__.__name__
    return OSError(exc.errno, f"cannot write ({reason}); nothing was left half-written", str(path))


@contextmanager
def temporary_beside(path: Path) -> Iterator[str]:
    """A temporary file name in `path`'s folder, fsynced and renamed onto `path` when the block
    succeeds and removed when it fails."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_error(exc, path) from None
    os.close(fd)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_file(name: str) -> None:
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - not POSIX
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(handle)`` on a temporary file, fsync it, and rename it onto `path`."""
    with temporary_beside(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()


def atomic_write_to(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(name)`` with a temporary file name (for writers that want a path, such as
    pandas' ``to_parquet`` or safetensors' ``save_file``), fsync it and rename it onto `path`."""
    with temporary_beside(path) as tmp:
        write(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def to_json(obj: Any) -> str:
    """Standard JSON (no NaN, no infinity: those raise ValueError), indented, with a newline."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, to_json(obj).encode())


def remove_temporaries(folder: Path, names: Iterable[str] | None = None) -> list[Path]:
    """Delete the temporary files that killed atomic writes left in `folder` (of the files
    `names`, or of any file); returns what was deleted. Only call it while no one else writes
    there (hold the folder's lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    patterns = [f".{name}.*.tmp" for name in names] if names is not None else [".*.tmp"]
    found = sorted({p for pattern in patterns for p in folder.glob(pattern)})
    for leftover in found:
        leftover.unlink(missing_ok=True)
    return found


@contextmanager
def directory_lock(path: Path, busy: Callable[[], Exception]) -> Iterator[None]:
    """Hold an exclusive lock on the directory `path` (an flock on the directory itself, so no lock
    file is left; the kernel releases it when the process dies); when another process holds it,
    raise ``busy()`` at once. Not POSIX: no cross-process exclusion."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy() from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
