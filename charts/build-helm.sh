#!/usr/bin/env bash
# Build the helm CLI from its Go module into a per-user cache (outside the repo)
# and print the binary's path on stdout. Idempotent: a cached binary is reused.
#
#   HELM_VERSION   helm.sh/helm/v3 version to build (default below)
#   MLPLATFORM_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/mlplatform)
#
# Needs `go` (>= the version helm's go.mod asks for) and the Go module proxy.
# A cold build takes a few minutes on 2 cores; progress goes to stderr.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE="${MLPLATFORM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mlplatform}"
BIN_DIR="$CACHE/bin/helm-$HELM_VERSION"
HELM="$BIN_DIR/helm"

# Reuse the cached binary only if it reports the full version (i.e. was built with the ldflags below).
if [[ -x "$HELM" ]] && [[ "$("$HELM" version --template '{{.Version}}' 2>/dev/null)" == "$HELM_VERSION" ]]; then
  echo "$HELM"
  exit 0
fi

GO="${GO:-$(command -v go || true)}"
if [[ -z "$GO" && -x /usr/local/go/bin/go ]]; then
  GO=/usr/local/go/bin/go
fi
if [[ -z "$GO" ]] || ! command -v "$GO" >/dev/null; then
  echo "build-helm.sh: 'go' not found${GO:+ ($GO)}; install Go to build helm $HELM_VERSION, or set MLPLATFORM_HELM" >&2
  exit 1
fi

mkdir -p "$BIN_DIR"
# Build into a temporary GOBIN and move into place, so a half-finished build is
# never taken for a good one (concurrent callers each build; the last rename wins).
TMP="$(mktemp -d "$BIN_DIR/.build.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
echo "build-helm.sh: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION (this may take a few minutes)" >&2
start=$(date +%s)
export GOWORK=off GOFLAGS="-buildvcs=false" CGO_ENABLED=0
# helm's Makefile stamps its version and the Kubernetes version it defaults to (.Capabilities.KubeVersion,
# chart kubeVersion checks, lint deprecations) from its k8s.io/client-go; without them helm assumes 1.20.
GOMOD="$(cd "$TMP" && "$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
CLIENT_GO="$(awk '$1 == "k8s.io/client-go" { print $2; exit }' "$GOMOD")"   # v0.MINOR.PATCH
K8S_MINOR="$(echo "$CLIENT_GO" | cut -d. -f2)"
if [[ ! "$K8S_MINOR" =~ ^[0-9]+$ ]]; then
  echo "build-helm.sh: could not read k8s.io/client-go's version from $GOMOD" >&2
  exit 1
fi
LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  LDFLAGS+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$K8S_MINOR"
done
(cd "$TMP" && GOBIN="$TMP" "$GO" install -trimpath -ldflags="$LDFLAGS" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION") >&2
mv -f "$TMP/helm" "$HELM"
echo "build-helm.sh: built $HELM in $(( $(date +%s) - start ))s" >&2
echo "$HELM"
