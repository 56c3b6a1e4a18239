"""User errors: which exceptions are the user's (or the machine's) problem rather than a bug, the
one line that says what went wrong, and reading untrusted JSON at a file boundary.

The CLI (hand-written or generated) runs every command through `handle_errors`, which turns a user
error into ``superposition: error: <one line>`` and exit status 2, and a closed stdout pipe
(``superposition show RUN | head``) into a quiet exit. Bugs still raise with their traceback.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ConfigError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
MAX_JSON_BYTES = 256 << 20
"""Larger JSON files than this are refused rather than read (no run or spec file comes near it)."""


def user_message(exc: BaseException) -> str | None:
    """The one-line message of a user or machine error, or None when `exc` is a bug."""
    from .run import RunDirError

    if isinstance(exc, (ConfigError, RunDirError)):
        return _one_line(str(exc))
    if isinstance(exc, MemoryError):
        return "out of memory: the run does not fit this machine; use fewer or smaller models"
    if isinstance(exc, RuntimeError) and _is_allocation_failure(exc):
        return f"out of memory: {_one_line(str(exc))[:300]}; use fewer or smaller models"
    if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
        return os_error_message(exc)
    return None


def os_error_message(exc: OSError) -> str:
    """``PATH: reason`` for an OSError about a file, the reason alone otherwise."""
    reason = exc.strerror or str(exc) or exc.__class__.__name__
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    where = " -> ".join(os.fsdecode(n) if isinstance(n, (str, bytes)) else str(n) for n in names)
    return _one_line(f"{where}: {reason}" if where else reason)


def _is_allocation_failure(exc: RuntimeError) -> bool:
    text = str(exc)
    return any(s in text for s in ("can't allocate memory", "out of memory", "Cannot allocate memory"))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def handle_errors(call: Callable[[], int | None], fail: Callable[[str], Any],
                  interrupted: Callable[[], Any] | None = None) -> int:
    """Run one CLI command. A user error calls ``fail(message)`` (which prints and exits 2); a
    closed stdout ends quietly; Ctrl-C calls `interrupted` and returns 130."""
    try:
        return int(call() or 0)
    except KeyboardInterrupt:
        if interrupted is not None:
            interrupted()
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        fail(message)
        return EXIT_USAGE


def _silence_stdout() -> None:
    """After the reader of stdout went away, point stdout at /dev/null so that Python's final
    flush does not raise again (the recipe of Python's signal documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # pragma: no cover - stdout without a descriptor
        pass


# --- untrusted JSON ---------------------------------------------------------------------------


def parse_json(text: str | bytes, where: str, error: type[ValueError] = ConfigError) -> Any:
    """`text` parsed as standard JSON, or `error` naming `where`: not UTF-8, a syntax error, nested
    too deeply, or NaN/Infinity (not JSON)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{where}: unreadable, not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise error(f"{where}: unreadable, nested too deeply to be a superposition file") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}: unreadable, not valid JSON ({exc.msg} at line {exc.lineno}, "
                    f"column {exc.colno})") from None
    except ValueError as exc:
        raise error(f"{where}: {exc}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not standard JSON")


def read_bytes(path: str | os.PathLike[str], error: type[ValueError] = ConfigError, what: str | None = None,
               limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of the regular file `path` (not a directory, device or FIFO: /dev/zero would never
    end), at most `limit` of them, or `error` naming it; FileNotFoundError passes through so that
    callers can say what is missing."""
    path = Path(path)
    where = f"{what} {path}" if what else str(path)
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{where}: is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{where}: not a regular file")
        if info.st_size > limit:
            raise error(f"{where}: {info.st_size} bytes, too large to be a superposition file")
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"{where}: unreadable ({exc.strerror or exc})") from None
    if len(data) > limit:  # it grew after the check
        raise error(f"{where}: too large to be a superposition file")
    return data


def read_json(path: str | os.PathLike[str], error: type[ValueError] = ConfigError, what: str | None = None) -> Any:
    """The JSON in `path`, or `error` naming the file (see `read_bytes`)."""
    where = f"{what} {path}" if what else str(path)
    return parse_json(read_bytes(path, error, what), where, error)


def expect(value: Any, kind: type | tuple[type, ...], where: str, error: type[ValueError] = ConfigError) -> Any:
    """`value` when it is of `kind` (bool is not a number here), else `error` naming `where`."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    numeric = any(k in (int, float) for k in kinds)
    if not isinstance(value, kinds) or (numeric and isinstance(value, bool) and bool not in kinds):
        names = " or ".join(_type_name(k) for k in kinds)
        raise error(f"{where} must be {names}, got {_describe(value)}")
    return value


def _type_name(kind: type) -> str:
    return {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
            bool: "true or false", type(None): "null"}.get(kind, kind.__name__)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
