"""`-o/--output` for every command: a file written whole or not at all, or stdout, or a device."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from reconcile.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

STDOUT = "-"

_FIXES = {
    errno.ENOTDIR: "a part of the path is a file, not a directory: choose another path",
    errno.EISDIR: "give a file name",
    errno.EACCES: "choose a directory you may write to",
    errno.EPERM: "choose a directory you may write to",
    errno.EROFS: "choose a writable file system",
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EFBIG: "write to a file system that takes larger files",
}


def output_error(path: str, error: OSError) -> ConfigError:
    """The one-line error of a failed write to `path` ("-" is stdout), with the OS reason."""
    name = "stdout" if path == STDOUT else f"-o {path if path.isprintable() else ascii(path)}"
    reason = os.strerror(error.errno) if error.errno else str(error)
    fix = _FIXES.get(error.errno or 0, "choose another file")
    if path == STDOUT:
        fix = fix.replace("write elsewhere", "redirect elsewhere")
    elif error.errno == errno.ENOENT:
        fix = f"create the directory {Path(path).parent} first or choose another path"
    return ConfigError(f"{name}: cannot write: {reason}; {fix}")


class _Guarded(io.RawIOBase):
    """Writes through to `target`; an OSError becomes `output_error`.

    Only the writes are guarded, so an error of the work that produces the output (a database
    or Lago failing) keeps its own message and exit code.
    """

    def __init__(self, target: BinaryIO, path: str) -> None:
        super().__init__()
        self._target = target
        self._path = path

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        size = view.nbytes
        with self._guard():
            while view:
                # An unbuffered file may take part of it (a file size limit, a full disk):
                # the rest is written again, and fails with the reason.
                written = self._target.write(view)
                if not written:  # never loop on a sink that takes nothing
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                view = view[written:]
        return size

    def flush(self) -> None:
        if not self.closed:
            with self._guard():
                self._target.flush()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            if self._path != STDOUT:
                raise output_error(self._path, BrokenPipeError(errno.EPIPE, "")) from None
            raise  # the reader of stdout went away (`| head`): the CLI ends quietly
        except OSError as error:
            if self._path == STDOUT:
                _discard_stdout()
            raise output_error(self._path, error) from None


def _discard_stdout() -> None:
    """Point fd 1 at /dev/null: what stdout still buffers would fail again at exit."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@contextlib.contextmanager
def _writing(target: BinaryIO, path: str) -> Iterator[BinaryIO]:
    """A buffered, guarded writer over `target`, flushed on success and left closed."""
    sink = io.BufferedWriter(_Guarded(target, path))
    try:
        yield sink
    except BaseException:
        with contextlib.suppress(Exception):  # the work's error is the one to report
            sink.close()
        raise
    sink.close()  # flushes: a write error surfaces here, as output_error


@contextlib.contextmanager
def open_output(path: str) -> Iterator[BinaryIO]:
    """Stdout for "-"; otherwise a file that only appears, whole, once writing succeeded.

    A regular file is written to a hidden temporary file beside it, synced, then renamed over
    it; on any error the temporary file is removed and nothing at `path` changes. A device or
    a pipe (/dev/null, /dev/full, a FIFO) is written directly. Opening happens on entry, so an
    unwritable path fails before the work. Raises ConfigError (exit 2) naming `path` and the
    OS reason when it cannot be opened, written, synced or renamed.
    """
    if path == STDOUT:
        with _writing(sys.stdout.buffer, path) as sink:
            yield sink
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        if target.exists() and not target.is_file() and not target.is_dir():
            device: BinaryIO | None = target.open("wb", buffering=0)
        else:
            device = None
            if target.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
            # Created with the usual permissions (0666 less the umask), unlike a mkstemp file.
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise output_error(path, error) from None
    if device is not None:
        # A device or a pipe: written straight into, never replaced.
        with device, _writing(device, path) as sink:
            yield sink
        return
    try:
        with os.fdopen(descriptor, "wb", buffering=0) as file:
            with _writing(file, path) as sink:
                yield sink
            try:
                os.fsync(file.fileno())  # the rename must not publish a file still in cache
            except OSError as error:
                raise output_error(path, error) from None
        try:
            partial.replace(target)
        except OSError as error:
            raise output_error(path, error) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
