"""runtime/prometheus.py: what an instant query's answer means (a value, or no data), and its errors, against a
Prometheus-shaped HTTP server on loopback (the real Prometheus is exercised by e2e/test_serving_signals.py)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from mlplatform.runtime.prometheus import Prometheus, PrometheusError, _value


@pytest.mark.parametrize(("data", "value"), [
    ({"resultType": "vector", "result": [{"metric": {}, "value": [1733475600.0, "0.25"]}]}, 0.25),
    ({"resultType": "vector", "result": []}, None),
    ({"resultType": "vector", "result": [{"metric": {}, "value": [1733475600.0, "NaN"]}]}, None),  # 0/0
    ({"resultType": "vector", "result": [{"metric": {}, "value": [1733475600.0, "+Inf"]}]}, None),
    ({"resultType": "scalar", "result": [1733475600.0, "3"]}, 3.0),
])
def test_an_answer_is_a_value_or_no_data(data, value):
    assert _value(data) == value


class _Handler(BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, dict]] = {}

    def do_GET(self):
        query = parse_qs(urlparse(self.path).query)["query"][0]
        status, body = self.answers[query]
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_query_reads_the_instant_vector(server):
    _Handler.answers = {"up": (200, {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"job": "x"}, "value": [1.0, "1"]}]}})}
    assert Prometheus(server, 2).query("up") == 1.0


def test_bad_promql_is_an_error_naming_prometheus_s_words(server):
    _Handler.answers = {"sum(": (400, {"status": "error", "errorType": "bad_data", "error": "unexpected end of input"})}
    with pytest.raises(PrometheusError, match="HTTP 400.*unexpected end of input"):
        Prometheus(server, 2).query("sum(")


def test_unreachable_is_an_error():
    with pytest.raises(PrometheusError, match="127.0.0.1:9"):
        Prometheus("http://127.0.0.1:9", 1).query("up")
