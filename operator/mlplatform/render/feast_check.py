"""Check a Feast repo's feature_store.yaml: Feast's own config classes accept it, and every store answers.

Standalone: it imports only the standard library, yaml and (lazily) feast, because the operator ships this
file's text in the FeatureStore's ConfigMap and the connectivity-check Job runs it in the Feast image:
`python check_stores.py <repo dir>`. On failure it writes one line naming the store to the termination
message (/dev/termination-log, which the operator reads into the FeatureStore's Ready message) and exits 1.
The tests import the same functions and run the same file against real PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import yaml

# feature_store.yaml keys -> the FeatureStore fields users wrote
STORE_NAMES = {"offline_store": "offlineStore", "online_store": "onlineStore", "registry": "registry"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
TERMINATION_LOG = "/dev/termination-log"


def expand(text: str, env: dict[str, str]) -> str:
    """What os.path.expandvars does (Feast's load_repo_config), with the given env: unknown names are kept."""
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), text)


def config_problems(yaml_text: str, env: dict[str, str]) -> list[str]:
    """Feast's own config classes on the expanded YAML: each store block by its class, then RepoConfig; [] when
    all accept it. Each problem starts with the FeatureStore field it concerns (offlineStore, onlineStore,
    registry), or feature_store.yaml for the rest."""
    from feast.repo_config import (
        RepoConfig,
        get_offline_config_from_type,
        get_online_config_from_type,
        get_registry_config_from_type,
    )

    try:
        raw = yaml.safe_load(expand(yaml_text, env))
    except yaml.YAMLError as e:
        return [f"feature_store.yaml: {_one_line(e)}"]
    loaders = {
        "offline_store": lambda b: get_offline_config_from_type(b["type"])(**b),
        "online_store": lambda b: get_online_config_from_type(b["type"])(**b),
        "registry": lambda b: get_registry_config_from_type(b.get("registry_type", "file"))(**b),
    }
    problems = []
    for key, load in loaders.items():
        block = raw.get(key)
        if not isinstance(block, dict):
            continue
        try:
            load(block)
        except Exception as e:  # noqa: BLE001 - Feast raises import errors, pydantic errors, ValueErrors alike
            problems.append(f"{STORE_NAMES[key]}: Feast refuses it: {_one_line(e)}")
    if problems:
        return problems
    try:
        RepoConfig(**raw)
    except Exception as e:  # noqa: BLE001 - pydantic's ValidationError or Feast's own errors
        return [f"feature_store.yaml: {_one_line(e)}"]
    return []


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:600]


def _probe_postgres(cfg) -> None:
    import psycopg

    with psycopg.connect(host=cfg.host, port=cfg.port, dbname=cfg.database, user=cfg.user, password=cfg.password,
                         sslmode=cfg.sslmode or "prefer", connect_timeout=10) as conn:
        conn.execute("SELECT 1")


def _probe_redis(cfg) -> None:
    from feast.infra.online_stores.redis import RedisOnlineStore

    RedisOnlineStore()._get_client(cfg).ping()


def _probe_sqlite(cfg) -> None:
    import sqlite3

    sqlite3.connect(cfg.path).execute("SELECT 1")


def probe_problems(repo_dir: Path) -> list[str]:
    """Connect to every store the loaded config names; each problem starts with the store's field."""
    from feast.repo_config import load_repo_config

    config = load_repo_config(repo_dir, repo_dir / "feature_store.yaml")
    problems = []
    probes = {
        "offline_store": {"postgres": _probe_postgres},
        "online_store": {"postgres": _probe_postgres, "redis": _probe_redis, "sqlite": _probe_sqlite},
    }
    for attr, by_type in probes.items():
        cfg = getattr(config, attr)
        probe = by_type.get(getattr(cfg, "type", ""))
        if probe is None:
            continue  # file, bigquery, snowflake, redshift, spark, dynamodb: reached at the first materialization
        try:
            probe(cfg)
        except Exception as e:  # noqa: BLE001 - any driver error means this store is not reachable
            problems.append(f"{STORE_NAMES[attr]} ({cfg.type}): unreachable: {_one_line(e)}")
    try:
        from feast import FeatureStore

        FeatureStore(repo_path=str(repo_dir)).registry.list_projects(allow_cache=False)
    except Exception as e:  # noqa: BLE001 - a registry that cannot be opened, whatever the backend says
        problems.append(f"registry ({config.registry.registry_type}): unreachable: {_one_line(e)}")
    return problems


def main(argv: list[str]) -> int:
    repo_dir = Path(argv[1] if len(argv) > 1 else ".").resolve()
    problems = config_problems((repo_dir / "feature_store.yaml").read_text(), dict(os.environ))
    if not problems:
        problems = probe_problems(repo_dir)
    if not problems:
        print("every store answered")
        return 0
    message = "; ".join(problems)
    print(message, file=sys.stderr)
    if os.path.exists(os.path.dirname(TERMINATION_LOG)) and os.access(os.path.dirname(TERMINATION_LOG), os.W_OK):
        try:
            Path(TERMINATION_LOG).write_text(message[:4000])
        except OSError:
            pass
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
