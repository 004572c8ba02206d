"""One informer per watched kind, in the shape of client-go's reflector: list, then watch from the list's
resourceVersion; a watch that expires (HTTP 410) or the periodic relist (`relist_seconds`) lists again and
*replaces* the kind's cache content, so objects deleted during a gap are dropped and their owners reconciled.
`synced` is set once the first listing is in the cache: workers wait for every informer's.

The informer is the cache's only writer. A failing handler (`on_change`) is a bug of ours, not a watch
problem: it is logged as an error, `on_handler_error` is told (it counts it and enqueues the object's keys
again), and the watch goes on."""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

from .cache import Cache, Change
from .kube import Kube, KubeError, WatchExpired

log = logging.getLogger("mlplatform.runtime.informer")

LIST_PAGE_SIZE = 100  # objects per list request: a page of pods or Deployments decoded is ~20 MiB at 500
WATCH_TIMEOUT_SECONDS = 300
MAX_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class Watched:
    api_version: str
    kind: str
    plural: str
    label_selector: str | None = None
    optional: bool = False  # a kind whose CRD may be absent: "not served" counts as listed (empty)


class Informer:
    def __init__(self, kube: Kube, cache: Cache, watched: Watched, namespace: str | None,
                 on_change: Callable[[Change], None], relist_seconds: float,
                 on_relist: Callable[[str, str], None] = lambda kind, reason: None,
                 on_handler_error: Callable[[Change, Exception], None] = lambda change, err: None):
        self.kube = kube
        self.cache = cache
        self.watched = watched
        self.namespace = namespace
        self.on_change = on_change
        self.on_relist = on_relist
        self.on_handler_error = on_handler_error
        self.relist_seconds = relist_seconds
        self.synced = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"informer-{watched.plural}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        reason = "initial"
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._relist(reason)
                failures = 0
                reason = self._watch_until_relist(version)
            except WatchExpired as err:
                log.info("watch of %s expired (%s): listing again", self.watched.plural, err)
                reason = "expired"
            except Exception as err:  # noqa: BLE001 - the API server may be restarting: list again, backing off
                if self.watched.optional and isinstance(err, KubeError) and err.status == 404:
                    # Not served (CRD absent): nothing of this kind exists, which the empty cache says truly;
                    # workers need not wait for it. Listed again later, in case the CRD gets installed.
                    self.synced.set()
                    reason = "error"
                    self._stop.wait(MAX_RETRY_SECONDS)
                    continue
                failures += 1
                delay = min(MAX_RETRY_SECONDS, 0.5 * 2 ** min(failures, 6)) * random.uniform(0.8, 1.2)
                log.warning("informer %s: %s; listing again in %.1fs", self.watched.plural, err, delay)
                reason = "error"
                self._stop.wait(delay)

    def _relist(self, reason: str) -> str:
        listing = {"version": ""}
        changes = self.cache.replace(self.watched.kind, self._pages(listing))
        self.on_relist(self.watched.kind, reason)
        log.debug("listed %s (%s): %d changes", self.watched.plural, reason, len(changes))
        for change in changes:
            self._deliver(change)
        self.synced.set()
        return listing["version"]

    def _pages(self, listing: dict) -> Iterator[dict]:
        """The listing's objects, a page at a time, so that the cache trims each page before the next
        is read (a restart over thousands of pods never holds them all untrimmed)."""
        w = self.watched
        token = None
        while True:
            page = self.kube.list_page(w.api_version, w.plural, self.namespace, w.label_selector, token,
                                       LIST_PAGE_SIZE)
            meta = page.get("metadata") or {}
            listing["version"] = meta.get("resourceVersion", listing["version"])
            for item in page.get("items") or []:
                yield {"apiVersion": w.api_version, "kind": w.kind, **item}
            token = meta.get("continue")
            if not token:
                return

    def _deliver(self, change: Change) -> None:
        try:
            self.on_change(change)
        except Exception as err:  # noqa: BLE001 - a handler bug must not end the watch or lose the change
            log.error("handling a change of %s %s/%s failed; enqueued again: %s", change.kind,
                      change.obj["metadata"].get("namespace"), change.obj["metadata"].get("name"), err, exc_info=True)
            self.on_handler_error(change, err)

    def _watch_until_relist(self, version: str) -> str:
        """Watch from version, re-watching from the last version seen after each server timeout or
        dropped connection, until the relist period is over. Returns the reason to list again."""
        w = self.watched
        relist_at = time.monotonic() + self.relist_seconds * random.uniform(0.9, 1.1)
        while not self._stop.is_set():
            remaining = relist_at - time.monotonic()
            if remaining <= 0:
                return "periodic"
            try:
                for event in self.kube.watch(w.api_version, w.plural, self.namespace, w.label_selector, version,
                                             int(min(WATCH_TIMEOUT_SECONDS, max(remaining, 1)))):
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event.get("type") == "BOOKMARK":
                        continue
                    obj = {"apiVersion": w.api_version, "kind": w.kind, **obj}
                    change = (self.cache.remove(w.kind, obj) if event["type"] == "DELETED"
                              else self.cache.upsert(w.kind, obj))
                    if change is not None:
                        self._deliver(change)
                    if self._stop.is_set():
                        break
            except WatchExpired:
                raise
            except Exception as err:  # noqa: BLE001 - a dropped connection: watch again from the last version
                log.info("watch of %s interrupted (%s); watching again from %s", w.plural, err, version)
                self._stop.wait(1.0)
        return "stopped"
