{{/*
Template language: this chart keeps to the subset of Helm templating that the CI renderer in
test/deploy/helm-template.ts implements (see docs/deploying.md): actions with whitespace-trim markers,
if / else if / else, with, range (lists, and maps as $k, $v), define / include, variables,
and the functions listed in that file. Anything outside it fails the test loudly.
*/}}

{{/* Chart name, overridable with nameOverride. */}}
{{- define "mop-serve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, plus the chart name unless the release name already
contains it. 63 characters at most (DNS label).
*/}}
{{- define "mop-serve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mop-serve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mop-serve.labels" -}}
helm.sh/chart: {{ include "mop-serve.chart" . }}
{{ include "mop-serve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "mop-serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mop-serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mop-serve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mop-serve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image: image.tag, else the chart's appVersion (+ "-cuda" for the GPU image). */}}
{{- define "mop-serve.image" -}}
{{- if .Values.image.tag }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- else if .Values.gpu.enabled }}
{{- printf "%s:%s-cuda" .Values.image.repository .Chart.AppVersion }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/* The Secret holding the admin token: an existing one, or the chart's own. */}}
{{- define "mop-serve.adminSecretName" -}}
{{- if .Values.admin.existingSecret }}
{{- .Values.admin.existingSecret }}
{{- else }}
{{- printf "%s-admin" (include "mop-serve.fullname" .) }}
{{- end }}
{{- end }}

{{/* Whether the admin API (/admin/*: re-prune, activate) is turned on. */}}
{{- define "mop-serve.adminEnabled" -}}
{{- if or .Values.admin.token .Values.admin.existingSecret }}true{{ end }}
{{- end }}

{{/* The Secret holding the API key(s) for /v1: an existing one, or the chart's own. */}}
{{- define "mop-serve.apiKeySecretName" -}}
{{- if .Values.apiKey.existingSecret }}
{{- .Values.apiKey.existingSecret }}
{{- else }}
{{- printf "%s-api-key" (include "mop-serve.fullname" .) }}
{{- end }}
{{- end }}

{{/* Whether /v1 asks for an API key (MOP_API_KEY). */}}
{{- define "mop-serve.apiKeyEnabled" -}}
{{- if or .Values.apiKey.value .Values.apiKey.existingSecret }}true{{ end }}
{{- end }}

{{/* The port /admin is reached on: its own (admin.port), else the API Service's. */}}
{{- define "mop-serve.adminServicePort" -}}
{{- if .Values.admin.port }}
{{- .Values.admin.port | int64 }}
{{- else }}
{{- .Values.service.port | int64 }}
{{- end }}
{{- end }}

{{/* Selector that scopes alert and recording expressions to this release's scrape job. */}}
{{- define "mop-serve.promSelector" -}}
job="{{ include "mop-serve.fullname" . }}",namespace="{{ .Release.Namespace }}"
{{- end }}

{{/* Seconds the pod gets after deletion: preStop sleep + the server's drain + time to exit. */}}
{{- define "mop-serve.terminationGracePeriodSeconds" -}}
{{- add .Values.lifecycle.preStopSleepSeconds .Values.server.shutdownGraceSeconds .Values.lifecycle.exitMarginSeconds }}
{{- end }}

{{/* The model store's claim: an existing one, or the chart's own. */}}
{{- define "mop-serve.storeClaimName" -}}
{{- .Values.modelStore.existingClaim | default (printf "%s-store" (include "mop-serve.fullname" .)) }}
{{- end }}

{{/* The store claim's access mode: as set, else ReadWriteMany when several pods mount it. */}}
{{- define "mop-serve.storeAccessMode" -}}
{{- if .Values.modelStore.accessMode }}
{{- .Values.modelStore.accessMode }}
{{- else if or .Values.autoscaling.enabled (gt (int64 .Values.replicaCount) 1) }}
{{- print "ReadWriteMany" }}
{{- else }}
{{- print "ReadWriteOnce" }}
{{- end }}
{{- end }}

{{/* The prune target of the store's pre-install hook: its own, else the server's start-up target. */}}
{{- define "mop-serve.prepopulateTarget" -}}
{{- .Values.modelStore.prepopulate.target | default .Values.server.pruneTarget }}
{{- end }}
