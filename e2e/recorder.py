"""Every state the API server holds of one object, recorded by a watch in a background thread: for e2e
assertions that must hold in every state ("Ready never left True"), not only in the ones a poll lands on."""

from __future__ import annotations

import threading
import time

from kubernetes import watch


class Recorder:
    """Every state the API server holds of one object, as a watch delivers them (from the resourceVersion of a
    first list, so none is missed), in a background thread until stopped."""

    def __init__(self, list_call, *args, name: str):
        """list_call: a list method returning dicts (CustomObjectsApi.list_namespaced_custom_object serves any
        group's kinds that way, apps/v1 deployments included), then its positional arguments."""
        self.states: list[dict] = []
        self.error: Exception | None = None
        self._stopping = False
        self._watch = watch.Watch()
        listed = list_call(*args, field_selector=f"metadata.name={name}")
        for item in listed.get("items") or []:
            self.states.append(item)
        version = listed["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._run, args=(list_call, args, name, version), daemon=True)
        self._thread.start()

    def _run(self, list_call, args, name, version):
        try:
            for event in self._watch.stream(list_call, *args, field_selector=f"metadata.name={name}",
                                            resource_version=version, timeout_seconds=300):
                self.states.append(event["object"])
        except Exception as err:  # noqa: BLE001 - a watch cut by stop(); anything earlier fails the test
            self.error = None if self._stopping else err

    def stop(self) -> list[dict]:
        time.sleep(1)  # the last events in flight
        self._stopping = True
        self._watch.stop()
        assert self.error is None, f"the watch ended early: {self.error}"
        return list(self.states)
