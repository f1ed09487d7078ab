"""The watcher's scans: the catch-up scan at start and a rescan every rescan_s find what no event announced.

`_Scanning` is a part of `Watcher` (watcher.py), split out along this seam; it runs on the watcher's thread.
"""

from __future__ import annotations

import logging
import os
import time

from .watcher_events import IGNORED_DIRS, Folder

__all__ = []

log = logging.getLogger("ase_daemon.watcher")


class _Scanning:
    """Watcher's scans: rescan a folder, walk a tree, reconcile ended jobs."""

    # ---- scanning ----------------------------------------------------------------------------------------------
    def _rescan(self, folder: Folder) -> None:
        period = self.settings.rescan_s
        folder.next_scan = time.monotonic() + period if period > 0 else float("inf")
        if not os.path.isdir(folder.path):
            if folder.observer is not None:
                log.warning("watched folder %s has gone; will look again at every rescan", folder.path)
                self._stop_observer(folder)
            folder.error = "no such folder (yet); retried at every rescan"
            if period <= 0:
                folder.next_scan = time.monotonic() + 60.0
            return
        if folder.observer is None or not folder.observer.is_alive():
            self._stop_observer(folder)
            self._start_observer(folder)
        if not folder.cleaned:
            # temp files a killed daemon left (`.IMG.jpg.xmp.asecritic-*.tmp`): on this thread, the only one that
            # writes sidecars, so none of them can be a write in progress
            from .xmp import remove_stale_temp_files

            removed = remove_stale_temp_files(folder.path, recursive=folder.recursive)
            folder.cleaned = True
            if removed:
                log.info("removed %d stale sidecar temp file(s) in %s", len(removed), folder.path)
        self._scan_tree(folder.path, folder)
        self.stats["scans"] += 1

    def _walk(self, top: str, folder: Folder):
        if folder.recursive:
            for dirpath, dirnames, filenames in os.walk(top, onerror=lambda e: log.debug("scan: %s", e)):
                dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in IGNORED_DIRS]
                for name in filenames:
                    yield os.path.join(dirpath, name)
        else:
            try:
                with os.scandir(top) as it:
                    for entry in it:
                        yield entry.path
            except OSError as e:
                log.debug("scan of %s: %s", top, e)

    def _scan_tree(self, top: str, folder: Folder | None = None) -> None:
        """Find files no event announced: new ones, changed ones (size/mtime differ from their record), and files
        added while the daemon was down. A full scan (of a folder) also forgets records of deleted files."""
        with self._lock:
            folder = folder or self._folder_for(os.path.join(top, "x"))
        if folder is None:
            return
        records = self.store.watched_signatures(folder.path)
        seen = set()
        for path in self._walk(top, folder):
            if self._stopping:
                return
            with self._lock:
                if self._folder_for(path) is not folder or not self.accepts(folder, path):
                    continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            seen.add(path)
            rec = records.get(path)
            if rec is None or (rec[0], rec[1]) != (st.st_size, st.st_mtime_ns):
                self._arrive(path)
        if top == folder.path:
            gone = [p for p in records if p not in seen and not os.path.lexists(p)]
            if gone:
                self.store.delete_watched(gone)

    def _reconcile(self) -> None:
        """Files still marked queued whose job has ended (the daemon died between the job and the sidecar, or the
        worker's notice came while we were stopping): finish them now, from the store."""
        for job_id in self.store.watched_jobs_ended():
            with self._cv:
                self._done.append((job_id, None))
        self._drain_done()
