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
