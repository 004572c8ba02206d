"""The only module that talks HTTP to Prometheus: instant queries (GET /api/v1/query), with a timeout.
A value is a float, or None when the query returned no sample (or NaN: 0/0, a canary with no requests)."""

from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.parse
import urllib.request


class PrometheusError(Exception):
    """The query could not be answered: unreachable, timed out, or refused (bad PromQL)."""


class Prometheus:
    def __init__(self, url: str, timeout_seconds: float):
        self.url = url.rstrip("/")
        self.timeout = timeout_seconds

    def query(self, promql: str) -> float | None:
        """The instant query's single value (the first sample of a vector, or a scalar); None: no data."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as response:  # noqa: S310 - an http(s) URL
                body = json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:300]
            raise PrometheusError(f"HTTP {err.code} from {self.url}: {detail}") from err
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as err:
            raise PrometheusError(f"{self.url}: {getattr(err, 'reason', err)}") from err
        if body.get("status") != "success":
            raise PrometheusError(f"{self.url}: {body.get('errorType')}: {body.get('error')}")
        return _value(body.get("data") or {})


def _value(data: dict) -> float | None:
    result = data.get("result")
    if data.get("resultType") == "scalar" and result:
        sample = result
    elif isinstance(result, list) and result:
        sample = result[0].get("value")
    else:
        return None
    value = float(sample[1])
    return None if math.isnan(value) or math.isinf(value) else value


_clients: dict[tuple[str, float], Prometheus] = {}
_lock = threading.Lock()


def client_for(url: str, timeout_seconds: float) -> Prometheus:
    with _lock:
        key = (url, timeout_seconds)
        if key not in _clients:
            _clients[key] = Prometheus(url, timeout_seconds)
        return _clients[key]
