"""One process's rules, reloaded when the replies file changes (a stat per check, a reload thread)."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from weixin.rules.checker import rules_from_bytes, unreadable
from weixin.rules.model import RulesError, RuleSet

log = logging.getLogger("replies")

# A request looks at the replies file (one stat) at most this often: an edit reaches a busy worker within
# this much plus the time the file takes to load, and an idle worker on its first request.
CHECK_INTERVAL_SECONDS = 0.5
# How long the request that notices an edit waits for the new rules (the server's setting; handle.py). A usual
# file loads in milliseconds, so that request already answers from the new rules; a file of thousands of rules
# (a second or more) finishes loading in the background while requests answer from the old rules, so that no
# request waits long enough to matter to WeChat's 5 s or to uWSGI's harakiri.
RELOAD_WAIT_SECONDS = 1.0
# A file's times are only as fine as its filesystem's clock (a second or two on some): an edit of the same size
# within that time of the last read could leave the stat unchanged. While the file read last is this recent, each
# check compares its bytes too.
RECENT_EDIT_NS = 2_000_000_000


@dataclass(frozen=True)
class _FileVersion:
    """The replies file as last read: what stat said before the read, a digest of the bytes, and whether it was
    modified so recently that the stat alone cannot tell a later edit."""

    stat: tuple[int, int, int, int] | None  # see _stat_signature; None when the file was missing
    digest: bytes | None  # None when it could not be read
    recent: bool


def _stat_signature(path: Path) -> tuple[tuple[int, int, int, int] | None, bool]:
    """(st_mtime_ns, st_ctime_ns, st_size, st_ino) of the file, or None; and whether it changed in the last few
    seconds. The inode changes when a new file is renamed over it; ctime when it is written in place, even by a
    tool that puts back an older mtime (cp -p)."""
    now_ns = time.time_ns()
    try:
        stat = os.stat(path)
    except OSError:
        return None, False
    changed_ns = max(stat.st_mtime_ns, stat.st_ctime_ns)
    return (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino), now_ns - changed_ns < RECENT_EDIT_NS


class LiveRules:
    """One process's current rules, reloaded when the file changes; an invalid edit keeps the last good rules
    (the error is logged with its line numbers).

    Every process checks for itself: uWSGI forks its workers from the master, which loaded the file at
    start-up, so a worker, a respawned one too, has only the rules it loads itself; and no thread of the master
    survives the fork.
    - `current()` (every request) stats the file at most every `check_interval` s. When it changed, the file is
      loaded again; with `background` the load runs in a thread and the request waits for it up to `reload_wait`
      s (see RELOAD_WAIT_SECONDS), so the first request an idle worker takes after an edit answers from the new
      rules. Without `background` the load runs in the request (tests, scripts).
    - `after_fork()` (uWSGI's postfork hook, index.py) loads the file in a new worker before its first request
      when it changed since the master read it.
    """

    def __init__(
        self,
        path: Path | str,
        check_interval: float = CHECK_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
        reload_wait: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.check_interval = check_interval
        self.clock = clock
        self.background = background
        self.reload_wait = reload_wait
        self.reloading: threading.Thread | None = None
        self._lock = threading.Lock()
        self._read_last: _FileVersion | None = None
        data = self._read_if_changed(at_start_up=True)
        assert data is not None
        self.rules = rules_from_bytes(data, self.path)  # at start-up an invalid file is fatal
        self._next_check = clock() + check_interval

    def current(self) -> RuleSet:
        """The rules to answer with; looks at the file at most every `check_interval` s (see the class)."""
        now = self.clock()
        if now < self._next_check or not self._lock.acquire(blocking=False):
            return self.rules
        try:
            self._next_check = now + self.check_interval
            started = self._reload_if_changed()
        finally:
            self._lock.release()
        if started is not None and self.reload_wait > 0:
            started.join(self.reload_wait)
        return self.rules

    def _reload_if_changed(self) -> threading.Thread | None:
        """Reload the file when it changed: with `background` in a new thread (returned), else here."""
        # While an earlier edit is still loading, it is not read again: the next check after it sees the rest.
        if self.reloading is not None and self.reloading.is_alive():
            return None
        data = self._read_if_changed()
        if data is None:
            return None
        if not self.background:
            self._reload(data)
            return None
        self.reloading = threading.Thread(target=self._reload, args=(data,), name="replies-reload", daemon=True)
        self.reloading.start()
        return self.reloading

    def after_fork(self) -> None:
        """In a newly forked worker: load the file now if it changed since the master read it, before the worker
        takes a request. A lock or a reload thread of the master's is meaningless here; start afresh."""
        self._lock = threading.Lock()
        self.reloading = None
        data = self._read_if_changed()
        if data is not None:
            self._reload(data)
        self._next_check = self.clock() + self.check_interval

    def _read_if_changed(self, at_start_up: bool = False) -> bytes | None:
        """The file's bytes when they may differ from those read last, else None: a stat, and a read only after
        an edit (or while the last one is recent). The stat comes first, so an edit during the read shows up
        at the next check. At start-up a missing or unreadable file raises RulesError; later it is logged once
        and the rules stay."""
        signature, recent = _stat_signature(self.path)
        last = self._read_last
        if last is not None and signature == last.stat and not last.recent:
            return None
        try:
            data = self.path.read_bytes()
        except OSError as error:
            problem = unreadable(self.path, error)
            if at_start_up:
                raise problem from None
            if last is None or last.digest is not None or signature != last.stat:
                log.error("replies file cannot be read; keeping the last good rules:\n%s", problem)
            self._read_last = _FileVersion(signature, None, recent)
            return None
        digest = hashlib.blake2b(data, digest_size=16).digest()
        self._read_last = _FileVersion(signature, digest, recent)
        if last is not None and digest == last.digest:
            return None  # touched, or renamed over with the same content
        return data

    def _reload(self, data: bytes) -> None:
        try:
            self.rules = rules_from_bytes(data, self.path)
        except RulesError as error:
            log.error("replies file changed but is invalid; keeping the last good rules:\n%s", error)
            return
        log.info("replies file reloaded: %s (%d keyword rules)", self.path, len(self.rules.keywords))

