{{/*
Names, labels and the checks that values.schema.json cannot express.
*/}}

{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name, with the
chart name appended unless the release name already contains it. Truncated to 63
characters because some names end up in labels.
*/}}
{{- define "portcullis.fullname" -}}
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

{{- define "portcullis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the controller's pods; never change them in an upgrade. */}}
{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ include "portcullis.chart" . }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ include "portcullis.imageTag" . | quote }}
app.kubernetes.io/part-of: portcullis
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "portcullis.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "portcullis.image" -}}
{{- $image := printf "%s:%s" .Values.image.repository (include "portcullis.imageTag" .) }}
{{- if .Values.image.digest }}
{{- $image = printf "%s@%s" $image .Values.image.digest }}
{{- end }}
{{- $image }}
{{- end }}

{{- define "portcullis.electionId" -}}
{{- .Values.electionId | default (printf "%s-leader" (include "portcullis.fullname" .) | trunc 63 | trimSuffix "-") }}
{{- end }}

{{/* NAMESPACE/NAME of the Service whose address goes into Ingress status, or "". */}}
{{- define "portcullis.publishService" -}}
{{- if .Values.publishService.enabled }}
{{- if .Values.publishService.pathOverride }}
{{- .Values.publishService.pathOverride }}
{{- else if .Values.service.enabled }}
{{- printf "%s/%s" .Release.Namespace (include "portcullis.fullname" .) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pod's grace period: given, or long enough for the delay and the drain. */}}
{{- define "portcullis.terminationGracePeriodSeconds" -}}
{{- $shutdown := add .Values.shutdownDelaySeconds .Values.drainTimeoutSeconds }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $shutdown 10 }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* The rules in one of files/rbac/*.yaml, indented for a `rules:` list. */}}
{{- define "portcullis.rbacRules" -}}
{{- $path := printf "files/rbac/%s" .file }}
{{- $rules := .root.Files.Get $path | trim }}
{{- if not $rules }}
{{- fail (printf "%s is missing or empty: the chart's RBAC rules come from it" $path) }}
{{- end }}
{{- $rules }}
{{- end }}

{{/*
Combinations of values that are each valid alone but not together. Included by the
controller's template, so every render runs them.
*/}}
{{- define "portcullis.validate" -}}
{{- $v := .Values }}
{{- if and (eq $v.kind "DaemonSet") $v.autoscaling.enabled }}
{{- fail "autoscaling.enabled needs kind: Deployment (a DaemonSet runs one pod per node)" }}
{{- end }}
{{- if and (include "portcullis.publishService" .) $v.publishStatusAddress }}
{{- fail "publishStatusAddress needs publishService.enabled=false (Portcullis publishes either a Service's address or fixed addresses)" }}
{{- end }}
{{- $shutdown := add $v.shutdownDelaySeconds $v.drainTimeoutSeconds }}
{{- if le (int (include "portcullis.terminationGracePeriodSeconds" .)) (int $shutdown) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be longer than shutdownDelaySeconds + drainTimeoutSeconds (%d), or the pod is killed before it has drained" $v.terminationGracePeriodSeconds $shutdown) }}
{{- end }}
{{- if and $v.service.enabled (eq $v.service.type "ClusterIP") }}
{{- if $v.service.externalTrafficPolicy }}
{{- fail "service.externalTrafficPolicy applies only to service.type LoadBalancer or NodePort" }}
{{- end }}
{{- if or $v.service.nodePorts.http $v.service.nodePorts.https }}
{{- fail "service.nodePorts apply only to service.type LoadBalancer or NodePort" }}
{{- end }}
{{- end }}
{{- if and $v.serviceMonitor.enabled (not $v.adminService.enabled) }}
{{- fail "serviceMonitor.enabled needs adminService.enabled: the ServiceMonitor scrapes that Service" }}
{{- end }}
{{- if $v.autoscaling.enabled }}
{{- if gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas) }}
{{- fail "autoscaling.minReplicas must not be greater than autoscaling.maxReplicas" }}
{{- end }}
{{- if and (kindIs "invalid" $v.autoscaling.targetCPUUtilizationPercentage) (kindIs "invalid" $v.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and (not (kindIs "invalid" $v.autoscaling.targetCPUUtilizationPercentage)) (not (dig "requests" "cpu" "" $v.resources)) }}
{{- fail "autoscaling.targetCPUUtilizationPercentage needs resources.requests.cpu (utilization is measured against the request)" }}
{{- end }}
{{- if and (not (kindIs "invalid" $v.autoscaling.targetMemoryUtilizationPercentage)) (not (dig "requests" "memory" "" $v.resources)) }}
{{- fail "autoscaling.targetMemoryUtilizationPercentage needs resources.requests.memory (utilization is measured against the request)" }}
{{- end }}
{{- end }}
{{- if and $v.podDisruptionBudget.enabled (not (kindIs "invalid" $v.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- end }}
