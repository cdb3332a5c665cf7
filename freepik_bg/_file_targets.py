"""What is at a file's path before it is written: checked before the POST, so that no
credit pays for a write that can only fail (a directory at the name, a file or a broken
link where one of its folders should be)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ._errors import OutputConflictError, SinkError

__all__ = ["A_FILE", "check_file_target", "found_at", "in_the_way", "refuse_in_the_way"]


def check_file_target(path: Path) -> None:
    """Raise `SinkError` if no write could ever create the file ``path``; blocking.

    For a single paid call: a directory at ``path``, a file where a folder above it
    should be, or a folder that cannot be written to would fail the write only after
    the credit, and lose the cutout. Missing folders are fine (the write makes them).
    """
    try:
        found = _stat(path)
        if found is not None and stat.S_ISDIR(found.st_mode):
            raise SinkError(
                f"{path} is a directory: give the path of a file to write, such as "
                f"{path / 'cutout.png'} (nothing was sent)"
            )
        # The nearest folder above that exists is where the write creates something.
        for ancestor in path.parents:
            if (above := _stat(ancestor)) is not None:
                break
            if ancestor.is_symlink():  # the write's mkdir could only fail on it
                raise SinkError(
                    f"{ancestor} is a broken symbolic link, not a directory, so {path} "
                    "cannot be written: fix or remove the link (nothing was sent)"
                )
        else:
            return  # not even the root or the cwd: let the write say what is wrong
        if not stat.S_ISDIR(above.st_mode):
            raise SinkError(
                f"{ancestor} is a file, not a directory, so {path} cannot be written: "
                "move the file away or choose another path (nothing was sent)"
            )
        # access() sees permission bits, ACLs and read-only mounts, and creates nothing.
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise SinkError(
                f"cannot write to {ancestor}: permission denied; choose another path "
                "(nothing was sent)"
            )
    except OSError as exc:  # a name too long, a loop of links: refused before paying too
        raise SinkError(f"cannot write {path}: {exc.strerror} (nothing was sent)") from exc


A_FILE = "a file"


def found_at(path: Path, top: Path | None = None) -> str | None:
    """What is at ``path``: ``None`` for nothing, `A_FILE` for a regular file (links
    followed), else what is in the way ("a directory", "a broken symbolic link", a file
    in place of one of its folders, ...).

    ``top``: the folder the write's own folders are made under; a broken link in place
    of one of those is found too. One ``lstat`` when nothing is there and ``path`` is
    directly in ``top``, the common case before a POST.
    """
    try:
        found = path.lstat()
    except FileNotFoundError:
        return None if top is None else _link_above(path, top)
    except NotADirectoryError:
        # No write can make the folder a file holds the name of (shoes/red.png
        # under a file shoes): found before the POST, not after its credit.
        return f"a file in place of the folder {_file_above(path)}"
    if stat.S_ISLNK(found.st_mode):
        try:
            found = path.stat()
        except OSError:
            return "a broken symbolic link"
    if stat.S_ISREG(found.st_mode):
        return A_FILE
    return "a directory" if stat.S_ISDIR(found.st_mode) else "something other than a file"


def _file_above(path: Path) -> Path:
    """The nearest folder of ``path`` that is something else (a file); its parent if none
    is now (one was when ``lstat`` said "not a directory")."""
    for ancestor in path.parents:
        try:
            found = ancestor.stat()
        except OSError:
            continue  # not there (below the file), or below it too
        if not stat.S_ISDIR(found.st_mode):
            return ancestor
        break
    return path.parent


def _link_above(path: Path, top: Path) -> str | None:
    """A broken symbolic link in place of a folder of ``path`` below ``top``, or ``None``
    (the folders are missing: the write makes them)."""
    for ancestor in path.parents:
        if ancestor == top:
            return None
        try:
            if not stat.S_ISLNK(ancestor.lstat().st_mode) or ancestor.exists():
                return None  # the nearest entry above is a folder (or a link to one)
        except FileNotFoundError:
            continue
        # The write's mkdir could only fail on it ("File exists").
        return f"a broken symbolic link in place of the folder {ancestor}"
    return None


def in_the_way(path: Path, top: Path | None = None) -> str | None:
    """What other than a regular file is at ``path`` ("a directory", ...), or ``None``."""
    found = found_at(path, top)
    return None if found == A_FILE else found


def refuse_in_the_way(path: Path, found: str | None) -> None:
    """`OutputConflictError` if ``found`` (what `found_at` saw) is in the way of a write."""
    if found is not None and found != A_FILE:
        # A write there can only fail: say so before the POST, not after the credit.
        raise OutputConflictError(
            f"{found} is in the way at {path}: this item's cutout cannot be "
            "stored under that name; move it away or give the item another name "
            "(nothing was sent for it)"
        )


def _stat(path: Path) -> os.stat_result | None:
    """``path``'s stat (links followed), ``None`` if nothing is there; other errors raise.

    Not `Path.is_dir`/`exists`: newer Pythons make those False on any error, and a
    name too long must be refused, not taken for a folder the write will create.
    """
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
