"""The operator process: kopf watches feed a cache and a work queue; worker threads reconcile.

kopf provides the watch streams (with server-side label selectors for children), login and the
liveness endpoint. Every event, of a custom resource or of one of its children, enqueues that
resource's key; one level-triggered reconcile per kind does the rest. No handler writes kopf's
progress annotations or adds a finalizer: children go with their owner through owner references.
"""

from __future__ import annotations

import logging
import threading
import time

import kopf

from .api import GROUP, KINDS, VERSION
from .cache import Cache
from .config import OperatorConfig
from .controllers import RECONCILERS
from .controllers.base import Context, InvalidSpec, report_invalid
from .controllers.modeldeployment import dependents
from .kube import CHILD_KINDS, Kube, KubeError, make_api_client
from .metrics import Metrics
from .render.common import OWNER_LABEL, RenderError
from .workqueue import WorkQueue

log = logging.getLogger("mlplatform")

# Children change in bursts (a rollout touches pods many times a second): coalesce them.
CHILD_EVENT_DELAY_SECONDS = 0.25
WORKERS = 4
NAMESPACE_TERMINATING = "because it is being terminated"
# Reconciles wait this long after start, so that the watches' initial listings have filled the cache
# and the first reconciles see the children that already exist (no status flapping after a restart).
INITIAL_SYNC_SECONDS = 3.0


def _plural_group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def build_registry(ctx: Context) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    def on_resource(event, **_):
        obj = event["object"]
        kind = obj.get("kind")
        meta = obj["metadata"]
        key = (kind, meta["namespace"], meta["name"])
        if event["type"] == "DELETED":
            ctx.cache.drop_resource(key)
            ctx.queue.discard(key)
            ctx.metrics.forget(*key)
        else:
            ctx.cache.put_resource(kind, obj)
            ctx.queue.add(key)
        if kind in ("FeatureView", "TrainingJob"):
            for dependent in dependents(ctx, kind, meta["namespace"], meta["name"]):
                ctx.queue.add(dependent)

    def on_child(event, **_):
        obj = event["object"]
        owner = ctx.cache.put_child(obj["kind"], obj, deleted=event["type"] == "DELETED")
        if owner is not None:
            ctx.queue.add(owner, delay=CHILD_EVENT_DELAY_SECONDS)

    for kind in KINDS.values():
        kopf.on.event(GROUP, VERSION, kind.plural, registry=registry, id=f"watch-{kind.plural}")(_async(on_resource))
    watched_children = list(CHILD_KINDS.items()) + [(("v1", "Pod"), "pods")]
    for (api_version, _kind), plural in watched_children:
        group, version = _plural_group_version(api_version)
        kopf.on.event(group, version, plural, labels={OWNER_LABEL: kopf.PRESENT}, registry=registry,
                      id=f"watch-{plural}")(_async(on_child))

    @kopf.on.login(registry=registry)
    def login(**kwargs):
        return kopf.login_via_client(**kwargs)  # kubeconfig, else the in-cluster service account

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_):
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.posting.enabled = False  # our Events are posted by the reconcilers, on condition flips
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60
        for (api_version, _kind), plural in watched_children:
            group, version = _plural_group_version(api_version)
            settings.watching.label_selectors[group, version, plural] = OWNER_LABEL  # server-side filter

    return registry


def _async(handler):
    """Event handlers only touch memory: run them on the event loop, not in kopf's thread pool."""
    async def wrapper(**kwargs):
        handler(**kwargs)
    wrapper.__name__ = handler.__name__
    return wrapper


def worker(ctx: Context, stop: threading.Event) -> None:
    stop.wait(INITIAL_SYNC_SECONDS)
    while not stop.is_set():
        key = ctx.queue.get(timeout=0.5)
        if key is None:
            continue
        kind = key[0]
        started = time.perf_counter()
        try:
            body = ctx.cache.resource(key)
            if body is None:
                continue
            try:
                RECONCILERS[kind](ctx, key, body)
            except (InvalidSpec, RenderError) as err:
                report_invalid(ctx, kind, body, str(err))  # retrying cannot help; a spec change will
            ctx.queue.forget(key)
            ctx.metrics.reconciles.labels(kind, "success").inc()
        except KubeError as err:
            if err.status == 403 and NAMESPACE_TERMINATING in err.message:
                ctx.queue.forget(key)  # the resource goes with its namespace; nothing to converge
                continue
            _retry(ctx, key, err)
        except Exception as err:  # noqa: BLE001 - any failure is retried with backoff, and counted
            _retry(ctx, key, err)
        finally:
            ctx.metrics.latency.labels(kind).observe(time.perf_counter() - started)
            ctx.queue.done(key)


def _retry(ctx: Context, key, err: Exception) -> None:
    delay = ctx.queue.add_after_failure(key)
    ctx.metrics.reconciles.labels(key[0], "error").inc()
    ctx.metrics.errors.labels(key[0]).inc()
    log.warning("reconcile of %s %s/%s failed, retrying in %.1fs: %s", *key, delay, err,
                exc_info=log.isEnabledFor(logging.DEBUG))


def run_operator(config: OperatorConfig, namespace: str | None = None, metrics_port: int = 8080,
                 health_port: int = 8081, bind_address: str = "127.0.0.1", verbose: bool = False) -> int:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf").setLevel(logging.INFO if verbose else logging.WARNING)
    kube = Kube(make_api_client(pool_size=WORKERS + 4))
    metrics = Metrics()
    metrics.count_api_calls(lambda: kube.requests)
    ctx = Context(kube=kube, cache=Cache(), config=config, queue=WorkQueue(), metrics=metrics)
    metrics.serve(metrics_port, bind_address)
    stop = threading.Event()
    threads = [threading.Thread(target=worker, args=(ctx, stop), name=f"reconcile-{i}", daemon=True)
               for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    log.info("mlplatform operator watching %s; metrics on %s:%d", namespace or "all namespaces", bind_address,
             metrics_port)
    try:
        kopf.run(
            registry=build_registry(ctx),
            standalone=True,
            clusterwide=namespace is None,
            namespaces=[namespace] if namespace else (),
            liveness_endpoint=f"http://{bind_address}:{health_port}/healthz",
        )
    finally:
        stop.set()
        ctx.queue.shutdown()
        for thread in threads:
            thread.join(timeout=5)
    return 0
