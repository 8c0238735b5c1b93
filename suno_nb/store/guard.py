"""Is the store's file still the one it opened?  (Never acknowledge what cannot be kept.)

If the database file (or its directory) is deleted or replaced under a running store,
SQLite keeps writing into the unlinked inode and every "committed" write is lost when the
store closes.  :class:`FileGuard` notices: it remembers the ``(st_dev, st_ino)`` of the file
and its WAL as opened and compares them with the paths.  The open connections pin the
original inode, so a file re-created at the same path always has another inode; comparing
with the path is enough.  Once found, the problem stays: the store never acknowledges a
write again.
"""

from __future__ import annotations

import contextlib
import logging
import os

log = logging.getLogger("suno_nb.store")


class FileGuard:
    """Remembers a database file's identity; :meth:`problem` says if it changed."""

    def __init__(self, path: str | None) -> None:
        self._identity: list[tuple[str, tuple[int, int]]] = []
        self._problem: str | None = None
        if path is None:  # an in-memory store: nothing to lose on disk
            return
        for name in (path, path + "-wal"):
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(name)
                self._identity.append((name, (st.st_dev, st.st_ino)))

    @property
    def known_problem(self) -> str | None:
        """The problem found so far, without checking again."""
        return self._problem

    def problem(self) -> str | None:
        """Why writes would be lost (the file deleted or replaced), or None."""
        if self._problem is not None:
            return self._problem
        for name, ident in self._identity:
            try:
                st = os.stat(name)
            except FileNotFoundError:
                found = f"{name} no longer exists"
            except OSError as exc:
                found = f"cannot check {name}: {exc}"
            else:
                if (st.st_dev, st.st_ino) == ident and st.st_nlink > 0:
                    continue
                found = f"{name} is now another file"
            self._problem = f"the store file was deleted or replaced: {found}"
            log.error("%s; refusing every write from now on", self._problem)
            break
        return self._problem
