"""Pinned versions of the local control plane (one place to change them).

After changing a pin, regenerate the wrapper modules with gen_gomod.py and
commit e2e/controlplane/go/*/go.mod and go.sum.
"""

KUBERNETES = "v1.36.3"          # module k8s.io/kubernetes
ETCD = "v3.6.16"                # module go.etcd.io/etcd/server/v3
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
KWOK = "v0.8.0"                 # module sigs.k8s.io/kwok
CLI_UTILS = "v0.37.2"           # module sigs.k8s.io/cli-utils (the kstatus helper, a tool; go/cli-utils/go.mod pins the same)
PROMETHEUS = "v0.316.0"         # module github.com/prometheus/prometheus (promtool, a tool; needs Go >= 1.26.7)
GATEWAY_API = "v1.6.3"          # module sigs.k8s.io/gateway-api (standard CRDs only; e2e/controlplane/gateway_api.py)
PROMETHEUS_RELEASE = "3.16.0"   # the Prometheus release that module version is (v0.3YY.Z = 3.YY.Z)
KUEUE = "v0.17.0"               # module sigs.k8s.io/kueue (the Kueue manager, a tool; go/kueue/go.mod pins the same)
LWS = "v0.9.0"                  # module sigs.k8s.io/lws (the LeaderWorkerSet controller, a tool; go/lws/go.mod pins the same;
                                # v0.9.0 counts a group ready only when its workers are)
KEDA = "v2.21.0"                # module github.com/kedacore/keda/v2 (operator + metrics API server, tools; go/keda/go.mod
                                # pins the same; v2.21.1 needs Go >= 1.27.4)

KUBE_COMMANDS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]


def staging_version(k8s: str) -> str:
    """k8s.io/kubernetes v1.Y.Z publishes its staging modules as v0.Y.Z."""
    major, minor, patch = k8s.lstrip("v").split(".")[:3]
    assert major == "1", k8s
    return f"v0.{minor}.{patch}"


def cache_key() -> str:
    return f"k8s-{KUBERNETES}"
