"""The SQLite file and its directory, made safe to open.

A database in a directory other users can write is a target: a symbolic link planted as
``storycheck.db`` (or as its ``-wal``/``-shm``/``-journal`` companion) would make storycheck
write wherever the link points, and a loose mode lets others read the results or swap the
file. So, before SQLite opens anything:

* a symbolic link in place of the database or a companion file is refused (give the real
  path); a new database file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW``, mode 0600, so
  nothing planted between the check and the creation is followed;
* a directory of ours that anyone may write is tightened (group and others lose write),
  one we do not own is refused; a directory with the sticky bit (``/tmp``) is left as it is:
  others cannot replace our files there, and links they plant are refused below;
* a database or companion file of ours that group may write or others may read or write is
  tightened to 0600 (SQLite gives its WAL and shared-memory files the database's mode); one we do not own
  that others may write is refused.

Every tightening is returned as a notice (and logged as a warning) for the caller to show.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from storycheck_tui import logs
from storycheck_tui.errors import DatabaseError

COMPANIONS = ("-wal", "-shm", "-journal")
DB_PERMISSIONS = "DB_PERMISSIONS"


def prepare(p: Path) -> list[str]:
    """Check (and create, if missing) the database file ``p``; returns the notices of what was
    tightened. Raises :class:`DatabaseError` (one line) for what cannot be made safe."""
    display = str(p)
    notices: list[str] = []
    uid = os.geteuid()
    directory = p.parent
    try:
        dst = os.stat(directory)
    except OSError as exc:
        raise DatabaseError(f"{display}: cannot open database: directory {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(dst.st_mode):
        raise DatabaseError(f"{display}: cannot create database: {directory} is not a directory")
    if dst.st_mode & 0o002 and not dst.st_mode & stat.S_ISVTX:  # sticky (/tmp): others cannot swap our files
        if dst.st_uid == uid:
            mode = stat.S_IMODE(dst.st_mode) & ~0o022
            os.chmod(directory, mode)
            notices.append(f"directory {directory} was writable by other users: now {mode:o}")
        else:
            raise DatabaseError(f"{display}: cannot open database: directory {directory} is writable by other "
                                f"users (any of them could replace the database): use a directory only you can write")
    for path in (p, *(Path(str(p) + suffix) for suffix in COMPANIONS)):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DatabaseError(f"{display}: cannot open database: {path}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            raise DatabaseError(f"{display}: cannot open database: {path} is a symbolic link (refusing to follow it: "
                                f"give the real path of the database)")
        if not stat.S_ISREG(st.st_mode):
            raise DatabaseError(f"{display}: cannot open database: {path} is not a regular file")
        if st.st_mode & 0o027:
            if st.st_uid == uid:
                os.chmod(path, 0o600)
                notices.append(f"{path} was readable or writable by other users "
                               f"(mode {stat.S_IMODE(st.st_mode):o}): now 600")
            elif st.st_mode & 0o022:
                raise DatabaseError(f"{display}: cannot open database: {path} belongs to another user and others "
                                    f"may write it")
    if not os.path.lexists(p):
        try:
            os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
        except FileExistsError:  # created (or planted) since the check: judge it again
            return notices + prepare(p)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise DatabaseError(f"{display}: cannot open database: {p} is a symbolic link") from None
            raise DatabaseError(f"{display}: cannot create database: {exc.strerror}") from None
    for notice in notices:
        logs.event(logging.WARNING, DB_PERMISSIONS, f"{display}: {notice}")
    return notices


__all__ = ["prepare", "COMPANIONS"]
