"""`mlplatform`: crds, docs, validate, render, run."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from .api import GROUP, KINDS
from .api.validation import Problem, Resource, validate_document
from .config import ConfigError, load_config

# Relative to the working directory: run from the repository root.
DEFAULT_CRD_DIRS = [Path("crds"), Path("charts/mlplatform/crds")]


@dataclass
class Document:
    source: str  # "path#index", for messages
    body: Any


def _read_stream(text: str, source: str) -> Iterator[Document]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        yield Document(source, exc)
        return
    index = 0
    for body in docs:
        if body is None:
            continue
        index += 1
        yield Document(f"{source}#{index}", body)


def read_documents(target: str) -> Iterator[Document]:
    if target == "-":
        yield from _read_stream(sys.stdin.read(), "<stdin>")
        return
    path = Path(target)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"{target}: no such file or directory")
    for file in files:
        yield from _read_stream(file.read_text(), str(file))


# Files that configure kustomize rather than hold Kubernetes objects (kustomize's own names for them).
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


@dataclass
class Validated:
    resources: list[tuple[Document, Resource]] = field(default_factory=list)  # ours, valid
    errors: list[str] = field(default_factory=list)
    # In document order: ("valid", line) for ours, ("other", line) for what is not ours (verbose only).
    report: list[tuple[str, str]] = field(default_factory=list)


def _is_ours(body: dict) -> bool:
    """Our group (any version: a wrong version is reported), or our kind with no group or a near-miss
    one (v1, mlplatform/v1alpha1): reported too. Other groups' kinds, even with our names, are not ours."""
    group = body["apiVersion"].rpartition("/")[0]
    return group == GROUP or (body["kind"] in KINDS and (group == "" or group.startswith("mlplatform")))


def _missing_type(body: dict) -> list[Problem]:
    problems = []
    for key, example in (("apiVersion", "v1 or mlplatform.dev/v1alpha1"), ("kind", "Namespace or ModelDeployment")):
        value = body.get(key)
        if value is None:
            problems.append(Problem(key, "required field is missing: every document must be a Kubernetes object"))
        elif not isinstance(value, str) or not value:
            problems.append(Problem(key, f"found {value!r}; allowed: a string such as {example}"))
    return problems


def _passed_over(doc: Document) -> tuple[str | None, str]:
    """(error, note) for an object that is not ours: passed over."""
    return None, f"skipped ({doc.body['apiVersion']} {doc.body['kind']}: not an {GROUP} kind)"


def _validated(targets: list[str], check_other=_passed_over) -> Validated:
    """Our documents validated into resources; other objects given to check_other; kustomization files
    skipped; a document that is no Kubernetes object (no apiVersion or kind) is an error."""
    out = Validated()
    for target in targets:
        try:
            documents = list(read_documents(target))
        except FileNotFoundError as exc:
            out.errors.append(str(exc))
            continue
        for doc in documents:
            if isinstance(doc.body, Exception):
                out.errors.append(f"{doc.source}: not YAML: {doc.body}")
                continue
            if isinstance(doc.body, dict):
                if Path(doc.source.rpartition("#")[0]).name in KUSTOMIZATION_FILES:
                    out.report.append(("other", f"{doc.source}: skipped (kustomize configuration)"))
                    continue
                missing = _missing_type(doc.body)
                if missing:
                    out.errors += [_problem_line(doc, problem) for problem in missing]
                    continue
                if not _is_ours(doc.body):
                    error, note = check_other(doc)
                    if error:
                        out.errors.append(f"{doc.source} {_what(doc)}: {error}")
                    else:
                        out.report.append(("other", f"{doc.source} {_what(doc)}: {note}"))
                    continue
            resource, problems = validate_document(doc.body)
            out.errors += [_problem_line(doc, problem) for problem in problems]
            if resource:
                out.resources.append((doc, resource))
                out.report.append(("valid", f"{doc.source} {resource.kind}/{resource.name}: valid"))
    return out


def _problem_line(doc: Document, problem: Problem) -> str:
    return f"{doc.source} {_what(doc)}: {problem}"


def _what(doc: Document) -> str:
    body = doc.body if isinstance(doc.body, dict) else {}
    name = (body.get("metadata") or {}).get("name") if isinstance(body.get("metadata"), dict) else None
    return f"{body.get('kind') or '?'}/{name or '?'}"


def _kubernetes_validate():
    """kubernetes-validate when installed (a test extra, not a dependency of the CLI), else None."""
    try:
        import kubernetes_validate
    except ImportError:
        return None
    return kubernetes_validate


def _schema_checker():
    """check_other for `validate`: an object that is not ours is checked against the Kubernetes schemas
    (strict: unknown fields refused, as kubectl does) when kubernetes-validate is installed and knows its
    kind; else passed over."""
    checker = None
    loaded = False

    def check(doc: Document) -> tuple[str | None, str]:
        nonlocal checker, loaded
        if not loaded:  # imported on the first object that is not ours only
            checker, loaded = _kubernetes_validate(), True
        body = doc.body
        what = f"{body['apiVersion']} {body['kind']}"
        if checker is None:
            return None, f"skipped ({what}: not an {GROUP} kind; install kubernetes-validate to schema-check it)"
        try:
            checked = checker.validate(body, checker.latest_version(), strict=True)
        except checker.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            return f"{path + ': ' if path else ''}{exc.message} (Kubernetes {exc.version} schema)", ""
        except checker.SchemaNotFoundError:
            return None, f"skipped ({what}: not an {GROUP} kind, and not a built-in Kubernetes kind)"
        except Exception as exc:  # noqa: BLE001 - a problem of the checker's schemas is not the document's
            return None, f"skipped ({what}: kubernetes-validate could not check it: {getattr(exc, 'message', exc)})"
        return None, f"valid (Kubernetes {checked} schema)"

    return check


def cmd_validate(args) -> int:
    from .render.checks import config_problems

    config = _load_config_or_exit(args.config)
    result = _validated(args.filename, _schema_checker())
    for doc, resource in result.resources:
        # The built-in configuration names no Prometheus: signals are checked against a given configuration only.
        problems = config_problems(resource, config, signals=args.config is not None)
        result.errors += [_problem_line(doc, problem) for problem in problems]
    for line in result.errors:
        print(line, file=sys.stderr)
    if result.errors:
        return 1
    for what, line in result.report:
        if what == "valid" or args.verbose:
            print(line)
    return 0


def _parse_artifacts(pairs: list[str]) -> dict[str, str]:
    artifacts = {}
    for pair in pairs:
        name, sep, uri = pair.partition("=")
        if not sep or not name or not uri:
            raise SystemExit(f"--artifact: expected TRAININGJOB=URI, found {pair!r}")
        artifacts[name] = uri
    return artifacts


def _load_config_or_exit(path: str | None):
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"--config: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


class _NoAliasDumper(yaml.SafeDumper):
    """Shared dicts (the same labels on a pod template and its selector) are printed in full, never as
    YAML anchors and aliases (&id001 / *id001) that a reader or a diff cannot follow."""

    def ignore_aliases(self, data) -> bool:
        return True


def cmd_render(args) -> int:
    from .render import RenderError, render_offline

    config = _load_config_or_exit(args.config)
    artifacts = _parse_artifacts(args.artifact)
    validated = _validated(args.filename)
    resources, errors = validated.resources, validated.errors
    outputs = []
    for doc, resource in resources:
        try:
            rendered = render_offline(resource, config, namespace=args.namespace, artifacts=artifacts)
        except RenderError as exc:
            errors.append(f"{doc.source} {resource.kind}/{resource.name}: {exc}")
            continue
        header = f"# {resource.kind} {resource.namespace or args.namespace}/{resource.name} ({doc.source})\n"
        header += "".join(f"# note: {note}\n" for note in rendered.notes)
        if not rendered.objects:
            outputs.append(header)
        for i, obj in enumerate(rendered.objects):
            outputs.append((header if i == 0 else "") + yaml.dump(obj, Dumper=_NoAliasDumper, sort_keys=False, width=1000))
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        return 1  # nothing half-rendered: a reviewer sees either all children or the problems
    sys.stdout.write("---\n".join(outputs))
    return 0


def _report_staleness(problems: list[str], stale_message: str, fresh_message: str) -> int:
    """`--check` of a generated file: exit 1 listing what is stale, else 0."""
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(stale_message, file=sys.stderr)
        return 1
    print(fresh_message)
    return 0


def cmd_docs(args) -> int:
    from . import docs

    path = Path(args.output)
    if args.check:
        return _report_staleness(docs.stale(path), "API docs are stale: run `mlplatform docs` (make docs) and commit "
                                 "the result", f"{path} is up to date")
    print(f"wrote {docs.write(path)}")
    return 0


def cmd_crds(args) -> int:
    from . import crds

    directories = [Path(d) for d in args.output_dir] if args.output_dir else DEFAULT_CRD_DIRS
    if args.check:
        return _report_staleness(crds.stale(directories), "CRDs are stale: run `mlplatform crds` and commit the "
                                 "result", "CRDs are up to date")
    for path in crds.write(directories):
        print(f"wrote {path}")
    return 0


def _lease_settings(args):
    from .runtime.leader import LeaseSettings

    if not args.leader_elect:
        return None
    settings = LeaseSettings(name=args.leader_elect_lease_name,
                             namespace=args.leader_elect_namespace or _own_namespace(),
                             lease_duration=args.leader_elect_lease_duration,
                             renew_deadline=args.leader_elect_renew_deadline,
                             retry_period=args.leader_elect_retry_period)
    problems = settings.problems()
    if problems:
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        sys.exit(2)
    return settings


def _own_namespace() -> str:
    """POD_NAMESPACE (downward API), else the service account's namespace in a pod, else default."""
    in_pod = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return os.environ.get("POD_NAMESPACE") or (in_pod.read_text().strip() if in_pod.exists() else "default")


def cmd_run(args) -> int:
    from .operator_main import RunOptions, run_operator
    from .runtime.workers import WorkerBounds

    config = _load_config_or_exit(args.config)
    worker_problems = WorkerBounds(args.min_workers, args.workers, args.max_workers).problems()
    if worker_problems:
        print("\n".join(f"error: {p}" for p in worker_problems), file=sys.stderr)
        return 2
    for flag, value in (("--relist-seconds", args.relist_seconds), ("--cache-sync-timeout", args.cache_sync_timeout)):
        if value <= 0:
            print(f"error: {flag}: found {value:g}; allowed: more than 0 seconds", file=sys.stderr)
            return 2
    if args.resync_seconds < 0:
        print(f"error: --resync-seconds: found {args.resync_seconds:g}; allowed: 0 (never) or more seconds",
              file=sys.stderr)
        return 2
    options = RunOptions(namespace=args.namespace, metrics_port=args.metrics_port, health_port=args.health_port,
                         bind_address=args.bind_address, workers=args.workers, min_workers=args.min_workers,
                         max_workers=args.max_workers, resync_seconds=args.resync_seconds,
                         relist_seconds=args.relist_seconds, cache_sync_timeout=args.cache_sync_timeout,
                         stuck_after_seconds=args.stuck_after_seconds, leader_election=_lease_settings(args),
                         verbose=args.verbose)
    return run_operator(config, options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlplatform", description="ML platform operator and its tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("crds", help="generate crds/*.yaml from the API models")
    p.add_argument("--check", action="store_true", help="exit non-zero when the committed CRDs are stale")
    p.add_argument("--output-dir", action="append", help="directory to write (repeatable; default crds/ and the chart's)")
    p.set_defaults(func=cmd_crds)

    p = sub.add_parser("docs", help="generate docs/api.md from the API models")
    p.add_argument("--check", action="store_true", help="exit non-zero when the committed docs/api.md is stale")
    p.add_argument("--output", default="docs/api.md", help="file to write or check (default docs/api.md)")
    p.set_defaults(func=cmd_docs)

    p = sub.add_parser("validate", help="check manifests against the v1alpha1 API", description=(
        f"Validate the {GROUP} documents of files or folders (e.g. a GitOps folder). Other Kubernetes documents "
        "are schema-checked when kubernetes-validate is installed and knows the kind, else passed over; "
        "kustomization.yaml files are skipped. A document without apiVersion or kind is an error."))
    p.add_argument("-f", "--filename", action="append", required=True, help="FILE, DIR or - (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also list the documents that are not ours: schema-checked or skipped")
    p.add_argument("--config", help="operator configuration YAML whose presets are checked against (default: "
                   "the built-in one): model.format, runtime.parallelism, nodesPerReplica; with a given configuration also "
                   "the model signals: Prometheus targets and rollout.canary.analysis need its prometheus.url")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("render", help="print the child objects the operator will apply")
    p.add_argument("-f", "--filename", action="append", required=True, help="FILE, DIR or - (repeatable)")
    p.add_argument("--config", help="operator configuration YAML")
    p.add_argument("-n", "--namespace", default="default", help="namespace for manifests that name none")
    p.add_argument("--artifact", action="append", default=[], metavar="TRAININGJOB=URI",
                   help="preview a model.fromTrainingJob as if that job's run produced URI (also NAME=URI for a "
                   "BatchPrediction's model.fromModelDeployment: as if that ModelDeployment served URI)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("run", help="run the operator")
    p.add_argument("-n", "--namespace", help="watch one namespace (default: all)")
    p.add_argument("--config", help="operator configuration YAML")
    p.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics port")
    p.add_argument("--health-port", type=int, default=8081,
                   help="port of /healthz (workers not stuck) and /readyz (caches synced)")
    p.add_argument("--bind-address", default="127.0.0.1", help="address of the metrics and health endpoints "
                   "(0.0.0.0 in a pod)")
    p.add_argument("--workers", type=int, default=4, help="reconciles in parallel at start; then the count follows "
                   "the queue (more while keys wait on API round trips, fewer once the operator's CPU is the limit)")
    p.add_argument("--min-workers", type=int, default=2, help="the fewest reconciles in parallel")
    p.add_argument("--max-workers", type=int, default=12, help="the most reconciles in parallel (equal to "
                   "--min-workers and --workers: a fixed count)")
    p.add_argument("--resync-seconds", type=float, default=3600.0,
                   help="every cached resource is reconciled again this often (client-go's resync: no API call; "
                   "0: never)")
    p.add_argument("--relist-seconds", type=float, default=600.0,
                   help="each kind is listed again this often; the listing replaces its cache content")
    p.add_argument("--cache-sync-timeout", type=float, default=120.0,
                   help="seconds the first listing of every kind may take; past it the operator exits (its "
                   "restart lists again) rather than lead with a cache that never syncs")
    p.add_argument("--stuck-after-seconds", type=float, default=300.0,
                   help="/healthz fails while a worker has been in one reconcile longer than this")
    p.add_argument("--leader-elect", action="store_true",
                   help="run as one of several replicas: only the holder of a coordination.k8s.io Lease reconciles")
    p.add_argument("--leader-elect-lease-name", default="mlplatform-operator", help="name of the Lease")
    p.add_argument("--leader-elect-namespace", help="namespace of the Lease (default: the pod's namespace, "
                   "POD_NAMESPACE, else default)")
    p.add_argument("--leader-elect-lease-duration", type=int, default=15,
                   help="seconds a standby waits after the leader's last renewal before taking over")
    p.add_argument("--leader-elect-renew-deadline", type=int, default=10,
                   help="seconds the leader retries a renewal before it stops leading (and exits)")
    p.add_argument("--leader-elect-retry-period", type=int, default=2, help="seconds between lease attempts")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
