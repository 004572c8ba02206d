"""The README's `make dev` walk-through stays true: its `kubectl get ml -A` block has, per kind, exactly the
columns kubectl prints for our CRDs (the printer columns of mlplatform.api.KINDS), and exactly the
examples that `make dev` applies, each Ready (or expected not to be, annotated so)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mlplatform.api import GROUP, KINDS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
EXAMPLES = REPO / "examples"
EXPECTS = "mlplatform.dev/example-expects"


def walkthrough() -> list[list[str]]:
    """The tables of the console block that follows `==> kubectl get ml -A` in the README: per table, its lines."""
    text = README.read_text()
    match = re.search(r"```console\n(?:.*\n)*?==> kubectl get ml -A\n((?:.*\n)*?)```", text)
    assert match, "README: no console block with the output of `==> kubectl get ml -A`"
    tables, current = [], []
    for line in match.group(1).splitlines():
        if not line.strip():
            if current:
                tables.append(current)
            current = []
        elif not line.startswith("Ready after"):
            current.append(line)
    if current:
        tables.append(current)
    return tables


def header_of(kind) -> list[str]:
    return ["NAMESPACE", "NAME", *(c["name"].upper() for c in kind.printer_columns if not c.get("priority"))]


def example_resources() -> dict[str, set[tuple[str, str]]]:
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("apiVersion", "").startswith(f"{GROUP}/"):
                found.setdefault(doc["kind"], set()).add((doc["metadata"]["namespace"], doc["metadata"]["name"]))
    return found


def test_walkthrough_columns_are_the_printer_columns_of_each_kind():
    tables = walkthrough()
    assert len(tables) == len(KINDS), f"one table per kind, as kubectl prints them: {[t[0] for t in tables]}"
    by_kind = {}
    for table in tables:
        names = table[1].split()[1] if len(table) > 1 else ""
        kind = next(k for k in KINDS.values() if names.startswith(f"{k.singular}.{GROUP}/"))
        assert table[0].split() == header_of(kind), kind.kind
        by_kind[kind.kind] = table
    assert sorted(by_kind) == sorted(KINDS)


def test_walkthrough_lists_exactly_the_examples_and_each_is_ready():
    expected = example_resources()
    expect_failure = {(d["metadata"]["namespace"], d["metadata"]["name"])
                      for path in EXAMPLES.glob("*.yaml") for d in yaml.safe_load_all(path.read_text())
                      if d and (d["metadata"].get("annotations") or {}).get(EXPECTS) == "NotReady"}
    for table in walkthrough():
        header = table[0].split()
        rows = [row.split() for row in table[1:]]
        kind = next(k for k in KINDS.values() if rows[0][1].startswith(f"{k.singular}.{GROUP}/"))
        listed = {(row[0], row[1].split("/", 1)[1]) for row in rows}
        assert listed == expected[kind.kind], kind.kind
        status_column = header.index("READY") if "READY" in header else header.index("PHASE")
        for row in rows:
            key = (row[0], row[1].split("/", 1)[1])
            if key not in expect_failure:
                assert row[status_column] in ("True", "Succeeded"), f"{kind.kind} {key} is shown as {row[status_column]}"


@pytest.mark.parametrize("mutation", ["drop a column", "rename an example"])
def test_the_walkthrough_check_catches_a_stale_readme(monkeypatch, tmp_path, mutation):
    text = README.read_text()
    if mutation == "drop a column":
        stale = text.replace("READY   FRESH", "READY", 1)
        check = test_walkthrough_columns_are_the_printer_columns_of_each_kind
    else:
        stale = text.replace("featureview.mlplatform.dev/driver-stats", "featureview.mlplatform.dev/driver-statz", 1)
        check = test_walkthrough_lists_exactly_the_examples_and_each_is_ready
    assert stale != text
    (tmp_path / "README.md").write_text(stale)
    monkeypatch.setitem(globals(), "README", tmp_path / "README.md")
    with pytest.raises(AssertionError):
        check()
