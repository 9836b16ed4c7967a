{{/*
The controller's pod template, shared by the Deployment and the DaemonSet.
*/}}

{{/* The `portcullis serve` command line; see `portcullis serve --help`. */}}
{{- define "portcullis.args" -}}
- serve
- --ingress-class={{ .Values.ingressClass.name }}
- --controller-name={{ .Values.ingressClass.controllerValue }}
- --election-id={{ include "portcullis.electionId" . }}
{{- with include "portcullis.publishService" . }}
- --publish-service={{ . }}
{{- end }}
{{- with .Values.publishStatusAddress }}
- --publish-status-address={{ join "," . }}
{{- end }}
{{- range .Values.watchNamespaces }}
- --watch-namespace={{ . }}
{{- end }}
{{- if .Values.watchIngressWithoutClass }}
- --watch-ingress-without-class
{{- end }}
{{- with .Values.defaultCertificate }}
- --default-certificate={{ . }}
{{- end }}
{{- if .Values.strictSNI }}
- --strict-sni
{{- end }}
{{- with .Values.trustedProxies }}
- --trusted-proxies={{ join "," . }}
{{- end }}
- --log-format={{ .Values.logFormat }}
- --shutdown-delay={{ .Values.shutdownDelaySeconds }}s
- --drain-timeout={{ .Values.drainTimeoutSeconds }}s
{{- if ne (int .Values.containerPorts.http) 80 }}
- --http-addr=0.0.0.0:{{ .Values.containerPorts.http }}
{{- end }}
{{- if ne (int .Values.containerPorts.https) 443 }}
- --https-addr=0.0.0.0:{{ .Values.containerPorts.https }}
{{- end }}
{{- if ne (int .Values.containerPorts.admin) 10254 }}
- --admin-addr=0.0.0.0:{{ .Values.containerPorts.admin }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The default affinity: spread a Deployment's replicas over nodes when possible. */}}
{{- define "portcullis.affinity" -}}
{{- if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- else if eq .Values.kind "Deployment" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "portcullis.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end }}

{{- define "portcullis.podTemplate" -}}
metadata:
  labels:
    {{- include "portcullis.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "portcullis.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  # Longer than --shutdown-delay plus --drain-timeout, so that a pod is never killed
  # while it drains.
  terminationGracePeriodSeconds: {{ include "portcullis.terminationGracePeriodSeconds" . }}
  containers:
    - name: controller
      image: {{ include "portcullis.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- include "portcullis.args" . | nindent 8 }}
      env:
        # The leader-election identity, and the namespace of its Lease.
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: RUST_LOG
          value: {{ .Values.logLevel | quote }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.containerPorts.http }}
          protocol: TCP
          {{- if .Values.hostPort.enabled }}
          hostPort: {{ .Values.hostPort.http }}
          {{- end }}
        - name: https
          containerPort: {{ .Values.containerPorts.https }}
          protocol: TCP
          {{- if .Values.hostPort.enabled }}
          hostPort: {{ .Values.hostPort.https }}
          {{- end }}
        - name: admin
          containerPort: {{ .Values.containerPorts.admin }}
          protocol: TCP
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "portcullis.affinity" . | trim }}
  affinity:
    {{- . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
