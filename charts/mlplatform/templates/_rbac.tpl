{{/*
The operator's rules: exactly the requests operator/mlplatform/kube.py makes, verb by verb.
Rendered into the ClusterRole (all namespaces) or, with watchNamespace, into a Role in that
namespace. Keep in step with manifests/clusterrole.yaml (tests/test_install_manifests.py checks
both against the calls). The leader-election Lease is not here: role.yaml grants it in the release
namespace only. Kueue's discovery document (GET /apis/kueue.x-k8s.io) needs no rule: the
built-in system:discovery role grants it to every authenticated client.
*/}}
{{- define "mlplatform.operatorRules" -}}
# The custom resources: listed and watched (the cache), never written except their status.
- apiGroups: ["mlplatform.dev"]
  resources: ["featureviews", "modeldeployments", "trainingjobs", "batchpredictions"]
  verbs: ["list", "watch"]
# Status: a merge patch of the status subresource, written only when it changed.
- apiGroups: ["mlplatform.dev"]
  resources: ["featureviews/status", "modeldeployments/status", "trainingjobs/status", "batchpredictions/status"]
  verbs: ["patch"]
# Children carry ownerReferences with blockOwnerDeletion: clusters that run the
# OwnerReferencesPermissionEnforcement admission plugin (e.g. OpenShift) require this.
- apiGroups: ["mlplatform.dev"]
  resources: ["featureviews/finalizers", "modeldeployments/finalizers", "trainingjobs/finalizers",
                "batchpredictions/finalizers"]
  verbs: ["update"]
# Children: listed and watched by label, server-side applied (a PATCH; one that creates the object
# is also authorized as create), pruned (delete). Deployments and Jobs are also read by name: their
# absence from the cache is confirmed before acting on it.
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# A canary's stable pod template, kept while the canary runs (ModelDeployment).
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["leaderworkerset.x-k8s.io"]
  resources: ["leaderworkersets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# ModelDeployment autoscaling.engine keda, and prometheus.podMonitors (served where installed).
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Gateway API (optional CRDs): the HTTPRoute of a ModelDeployment with spec.gateway.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Read-only: the children's pods (watched, for status), a model's PersistentVolumeClaim, a
# TrainingJob's Kueue LocalQueue.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "create", "patch"]  # model.cache claims: applied, read; deleted by the garbage collector
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["localqueues"]
  verbs: ["get"]
- apiGroups: ["kueue.x-k8s.io"]
  resources: ["workloads"]
  verbs: ["list", "watch"]  # a run's Workload is read; all of our Jobs' are watched (admission, eviction)
# Events (core/v1): the warnings of pods are listed, events on the custom resources are created.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list", "create"]
{{- end }}
