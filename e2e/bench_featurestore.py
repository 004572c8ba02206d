"""Figures of a team FeatureStore on Debian's PostgreSQL and Redis (e2e/stores.py), with the operator's rendering.

    .venv/bin/python e2e/bench_featurestore.py [--rows 1000000] [--drivers 100000] [--reads 2000]

1. Materialization: a seeded events table of --rows rows (--drivers entities) materialized into Redis by exactly
   the command of the materialization Job (`materialize_command`, from the rendered repo): wall time.
2. Online reads: p50/p99 of `POST /get-online-features` (one entity, two features) against `feast serve` on
   loopback (`serve_command`, the feature server's command), beside a bare Redis GET on the same machine.
Prints the figures; asserts nothing about them (a benchmark, not a test). Leaves nothing running.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "e2e"))
sys.path.insert(0, str(ROOT / "operator"))

import stores  # noqa: E402 - e2e/stores.py, importable once the lines above ran
from mlplatform.api.featurestore import FeatureStoreSpec  # noqa: E402
from mlplatform.api.featureview import FeatureViewSpec  # noqa: E402
from mlplatform.config import FeastConfig  # noqa: E402
from mlplatform.render.feast import FEAST_REPO_MOUNT, FEAST_WORK_DIR, feast_repo_files, materialize_command, serve_command  # noqa: E402
from mlplatform.render.feast_stores import OFFLINE_PASSWORD_ENV, ONLINE_PASSWORD_ENV, REGISTRY_URL_ENV  # noqa: E402


def seed(pg: stores.Postgres, rows: int, drivers: int) -> float:
    import psycopg

    now = datetime.now(timezone.utc).replace(microsecond=0)
    per = rows // drivers
    started = time.perf_counter()
    with psycopg.connect(pg.dsn) as conn:
        conn.execute("CREATE TABLE driver_events (driver_id bigint, event_timestamp timestamptz, "
                     "created timestamptz, conv_rate real, trips bigint)")
        with conn.cursor().copy("COPY driver_events FROM STDIN") as copy:
            buf = io.StringIO()
            for d in range(drivers):
                for i in range(per):
                    ts = (now - timedelta(hours=per - i)).isoformat()
                    buf.write(f"{d}\t{ts}\t{ts}\t{(d % 997) / 997:.4f}\t{d * 10 + i}\n")
                if buf.tell() > 4_000_000:
                    copy.write(buf.getvalue())
                    buf = io.StringIO()
            copy.write(buf.getvalue())
        conn.execute("ANALYZE driver_events")
    return time.perf_counter() - started


def repo(pg: stores.Postgres, redis: stores.Redis, directory: Path) -> Path:
    store = FeatureStoreSpec.model_validate({
        "offlineStore": {"type": "postgres", "postgres": {
            "host": "127.0.0.1", "port": pg.port, "database": "features", "user": "feast", "sslMode": "disable",
            "passwordSecretRef": {"name": "pg", "key": "password"}}},
        "onlineStore": {"type": "redis", "redis": {"connectionString": redis.connection_string,
                                                   "passwordSecretRef": {"name": "redis", "key": "password"}}},
        "registry": {"type": "sql", "urlSecretRef": {"name": "registry", "key": "url"}},
    })
    view = FeatureViewSpec.model_validate({
        "entities": [{"name": "driver", "joinKey": "driver_id", "valueType": "INT64"}],
        "features": [{"name": "conv_rate", "dtype": "FLOAT32"}, {"name": "trips", "dtype": "INT64"}],
        "source": {"postgres": {"table": "driver_events"}, "timestampField": "event_timestamp",
                   "createdTimestampField": "created"},
        "ttl": "3650d",
    })
    directory.mkdir(parents=True)
    for name, text in feast_repo_files("bench", "drivers", view, FeastConfig(), store).items():
        (directory / name).write_text(text)
    return directory


def percentile(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--drivers", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    stores.ensure_installed()
    tmp = Path(tempfile.mkdtemp(prefix="mlplatform-bench-fs-"))
    pg, redis, server = stores.Postgres(), stores.Redis(), None
    try:
        pg.start()
        redis.start()
        bin_dir = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "FEAST_USAGE": "False",
               OFFLINE_PASSWORD_ENV: stores.PG_PASSWORD, ONLINE_PASSWORD_ENV: stores.REDIS_PASSWORD,
               REGISTRY_URL_ENV: pg.sqlalchemy_url()}
        seconds_seed = seed(pg, args.rows, args.drivers)
        mount = repo(pg, redis, tmp / "mount")
        command = materialize_command()
        script = command[2].replace(FEAST_REPO_MOUNT, str(mount)).replace(FEAST_WORK_DIR, str(tmp / "work"))
        started = time.perf_counter()
        done = subprocess.run([command[0], command[1], script], env=env, capture_output=True, text=True, timeout=3600)
        seconds_materialize = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"materialization failed:\n{done.stdout}\n{done.stderr}")

        import redis as redis_py

        client = redis_py.Redis(host="127.0.0.1", port=redis.port, password=stores.REDIS_PASSWORD)
        keys = client.dbsize()
        port = stores.free_port()
        command = serve_command(port)
        script = (command[2].replace(FEAST_REPO_MOUNT, str(mount)).replace(FEAST_WORK_DIR, str(tmp / "serve"))
                  .replace("--host 0.0.0.0", "--host 127.0.0.1"))
        server = subprocess.Popen([command[0], command[1], script], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        deadline = time.monotonic() + 120
        while True:
            try:
                conn.request("GET", "/health")
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("feast serve did not answer")
                conn.close()
                time.sleep(0.5)
        rng = random.Random(7)
        served = []
        for _ in range(args.reads + 50):
            body = json.dumps({"features": ["drivers:conv_rate", "drivers:trips"],
                               "entities": {"driver_id": [rng.randrange(args.drivers)]}})
            t = time.perf_counter()
            conn.request("POST", "/get-online-features", body=body, headers={"Content-Type": "application/json"})
            answer = json.loads(conn.getresponse().read())
            served.append(time.perf_counter() - t)
            assert answer["results"][1]["values"][0] is not None, answer
        served = served[50:]  # warm-up
        client.set("bench:key", b"x" * 64)
        bare = []
        for _ in range(args.reads + 50):
            t = time.perf_counter()
            client.get("bench:key")
            bare.append(time.perf_counter() - t)
        bare = bare[50:]
        print(f"machine: {os.cpu_count()} CPUs; PostgreSQL {pg_version(pg)}; {redis_version(client)}; feast 0.67.0")
        print(f"seeded {args.rows} rows ({args.drivers} drivers) with COPY in {seconds_seed:.1f} s")
        print(f"materialization (feast apply + materialize-incremental, the Job's command): {seconds_materialize:.1f} s "
              f"for {args.rows} rows -> {keys} Redis keys")
        print(f"online read, feast serve on loopback (POST /get-online-features, 1 entity, 2 features, {args.reads} "
              f"requests): p50 {percentile(served, 50) * 1000:.2f} ms, p99 {percentile(served, 99) * 1000:.2f} ms")
        print(f"bare Redis GET on loopback (redis-py, {args.reads} requests): p50 {percentile(bare, 50) * 1000:.3f} ms, "
              f"p99 {percentile(bare, 99) * 1000:.3f} ms")
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
        redis.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def pg_version(pg: stores.Postgres) -> str:
    import psycopg

    with psycopg.connect(pg.dsn) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def redis_version(client) -> str:
    return f"Redis {client.info('server')['redis_version']}"


if __name__ == "__main__":
    main()
