"""Opening files whose names come from strangers: regular files only, and never waiting on a pipe or device."""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

# O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting for one (for good);
# O_NOCTTY: a terminal device never becomes the process's controlling terminal.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


class NotRegularFile(OSError):
    """The path is a folder, a pipe, a device or a socket, or became one between the look and the open."""

    def __init__(self, path: str, kind: str, *, swapped: bool = False) -> None:
        super().__init__(f"{path} is {kind}")
        self.kind = kind
        self.swapped = swapped  # it was a regular file when looked at, and another one (or none) when opened


def open_regular(path: str) -> tuple[BinaryIO, os.stat_result]:
    """`path` open for reading and its stat, if it is a regular file; else NotRegularFile.

    Looked at twice: `stat` first, so a device or FIFO is never opened at all, then `fstat` on what was opened,
    which must be that same file (a path swapped for a FIFO in between is refused, not waited on). Other
    OSErrors (missing, no permission) pass through.
    """
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        raise NotRegularFile(path, _kind(before))
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino):
            raise NotRegularFile(path, "a file that changed as it was opened", swapped=True)
        os.set_blocking(fd, True)  # a regular file: ordinary reads from here on
    except BaseException:
        os.close(fd)
        raise
    # Outside the `try`: once fdopen has begun, the file object owns the descriptor (and closes it if fdopen
    # fails, a Ctrl-C inside it included). Closing it here too would raise EBADF over that KeyboardInterrupt,
    # and a stop would become a read error.
    return os.fdopen(fd, "rb"), info


def _kind(info: os.stat_result) -> str:
    return "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a pipe, device or socket?)"
