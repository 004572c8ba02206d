{{/* Chart name. */}}
{{- define "mlplatform.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-operator unless overridden; "mlplatform-operator" for release "mlplatform". */}}
{{- define "mlplatform.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "mlplatform.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades. */}}
{{- define "mlplatform.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlplatform.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mlplatform.labels" -}}
helm.sh/chart: {{ include "mlplatform.chart" . }}
{{ include "mlplatform.selectorLabels" . }}
app.kubernetes.io/part-of: mlplatform
app.kubernetes.io/component: operator
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mlplatform.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlplatform.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mlplatform.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The operator config file, as mounted: config.yaml from .Values.config ({} = defaults). */}}
{{- define "mlplatform.config" -}}
{{- if .Values.config }}
{{- toYaml .Values.config }}
{{- else }}
{{- "{}" }}
{{- end }}
{{- end }}

{{/* Name of the leader-election Lease (and of its Role's resourceNames). */}}
{{- define "mlplatform.leaseName" -}}
{{- default (include "mlplatform.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* A whole number of seconds, for the operator's int flags: fails on anything else. */}}
{{- define "mlplatform.seconds" -}}
{{- $value := index .values .key }}
{{- if or (kindIs "invalid" $value) (ne (toString $value) (toString (int64 $value))) }}
{{- fail (printf "leaderElection.%s: found %v; allowed: a whole number of seconds" .key $value) }}
{{- end }}
{{- int64 $value }}
{{- end }}

{{/* Combinations the operator would refuse, or that would run two reconcilers at once: fail rendering. */}}
{{- define "mlplatform.validateValues" -}}
{{- $replicas := int64 .Values.replicaCount }}
{{- if ne (toString .Values.replicaCount) (toString $replicas) }}
{{- fail (printf "replicaCount: found %v; allowed: a whole number" .Values.replicaCount) }}
{{- end }}
{{- if .Values.leaderElection.enabled }}
{{- $le := .Values.leaderElection }}
{{- $duration := include "mlplatform.seconds" (dict "values" $le "key" "leaseDuration") | float64 }}
{{- $deadline := include "mlplatform.seconds" (dict "values" $le "key" "renewDeadline") | float64 }}
{{- $retry := include "mlplatform.seconds" (dict "values" $le "key" "retryPeriod") | float64 }}
{{- if lt $retry 1.0 }}
{{- fail (printf "leaderElection.retryPeriod: found %v; allowed: 1 or more" $le.retryPeriod) }}
{{- end }}
{{- if le $deadline (mulf 1.2 $retry) }}
{{- fail (printf "leaderElection.renewDeadline (%v) must be greater than 1.2 x leaderElection.retryPeriod (%v)" $le.renewDeadline $le.retryPeriod) }}
{{- end }}
{{- if le $duration $deadline }}
{{- fail (printf "leaderElection.leaseDuration (%v) must be greater than leaderElection.renewDeadline (%v)" $le.leaseDuration $le.renewDeadline) }}
{{- end }}
{{- else if gt $replicas 1 }}
{{- fail (printf "replicaCount=%d with leaderElection.enabled=false: every replica would reconcile, and they would fight over the same objects. Set replicaCount=1, or keep leader election on." $replicas) }}
{{- end }}
{{- if not (has .Values.podAntiAffinity (list "soft" "hard" "")) }}
{{- fail (printf "podAntiAffinity: found %q; allowed: soft, hard or \"\"" (toString .Values.podAntiAffinity)) }}
{{- end }}
{{- end }}

{{/* The pod's affinity: .Values.affinity, plus the podAntiAffinity preset unless it sets its own. */}}
{{- define "mlplatform.affinity" -}}
{{- $affinity := deepCopy (.Values.affinity | default dict) }}
{{- if and (gt (int64 .Values.replicaCount) 1) .Values.podAntiAffinity (not (hasKey $affinity "podAntiAffinity")) }}
{{- $term := dict "labelSelector" (dict "matchLabels" (include "mlplatform.selectorLabels" . | fromYaml)) "topologyKey" "kubernetes.io/hostname" }}
{{- if eq .Values.podAntiAffinity "hard" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- else }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- end }}
{{- if $affinity }}
{{- toYaml $affinity }}
{{- end }}
{{- end }}
