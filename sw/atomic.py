"""One way to write a file so that readers see the old file or the new one, never a part: a
temporary file beside it, flushed to disk, then renamed over it. Artifacts, reports, timelines
and the format files all go through :func:`replace_file`."""

from __future__ import annotations

import os
import tempfile
import typing
from pathlib import Path

# typing's generics, not collections.abc's: a run-time alias must work on Python 3.8 boards
Content = typing.Union[bytes, typing.Callable[[typing.BinaryIO], typing.Any]]


def replace_file(path: Path, data: Content) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) as ``path``. An error
    (``OSError`` included) leaves ``path`` as it was and no temporary file behind."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); outputs and artifacts are meant to be shared
        # and copied to a board: the permissions a plain open() would give.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
