{{/* Names. Every object is "<fullname>-<component>". */}}
{{- define "recipe-mesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "recipe-mesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>"; call with (list $ "component"). */}}
{{- define "recipe-mesh.component" -}}
{{- printf "%s-%s" (include "recipe-mesh.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{- define "recipe-mesh.labels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: {{ include "recipe-mesh.name" $ }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
{{ include "recipe-mesh.selectorLabels" . }}
{{- end -}}

{{- define "recipe-mesh.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "recipe-mesh.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "recipe-mesh.image" -}}
{{- $ := index . 0 -}}
{{- printf "%s/%s:%s" $.Values.image.repository (index . 1) (default $.Chart.AppVersion $.Values.image.tag) -}}
{{- end -}}

{{/* The OTLP endpoint the services export to: otel.endpoint, else the in-chart Jaeger. */}}
{{- define "recipe-mesh.otelEndpoint" -}}
{{- if .Values.otel.endpoint -}}
{{- .Values.otel.endpoint -}}
{{- else if .Values.jaeger.enabled -}}
{{- printf "http://%s:4317" (include "recipe-mesh.component" (list . "jaeger")) -}}
{{- end -}}
{{- end -}}

{{/* Pod annotations shared by every pod of the chart's services. */}}
{{- define "recipe-mesh.meshAnnotations" -}}
{{- if .Values.mesh.enabled }}
linkerd.io/inject: enabled
config.linkerd.io/default-inbound-policy: {{ .Values.mesh.defaultInboundPolicy }}
{{- /* The proxy as a native sidecar (Kubernetes 1.29+) starts before the service and stops
after it: on SIGTERM a plain sidecar proxy refuses new requests at once, which would cut the
calls the sender makes while it drains its jobs in flight. */}}
config.beta.linkerd.io/proxy-enable-native-sidecar: "true"
{{- end }}
{{- end -}}

{{/* The container securityContext every container of the chart gets (docs/deploy.md). */}}
{{- define "recipe-mesh.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "recipe-mesh.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* topologySpreadConstraints for a component; call with (list $ "component"). */}}
{{- define "recipe-mesh.topologySpread" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
{{- if $.Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: {{ $.Values.topologySpread.maxSkew }}
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "recipe-mesh.selectorLabels" (list $ $component) | nindent 8 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Linkerd identity of a ServiceAccount in the release namespace. */}}
{{- define "recipe-mesh.identity" -}}
{{- $ := index . 0 -}}
{{- printf "%s.%s.serviceaccount.identity.linkerd.%s" (index . 1) $.Release.Namespace $.Values.mesh.trustDomain -}}
{{- end -}}

{{/* Environment shared by every service (ConfigMap data). Call with (list $ "component"). */}}
{{- define "recipe-mesh.commonEnv" -}}
{{- $ := index . 0 -}}
AWS_REGION: {{ $.Values.aws.region | quote }}
{{- with $.Values.aws.endpointUrl }}
AWS_ENDPOINT_URL: {{ . | quote }}
{{- end }}
LOG_FORMAT: {{ $.Values.logging.format | quote }}
RUST_LOG: {{ $.Values.logging.rustLog | quote }}
{{- with (include "recipe-mesh.otelEndpoint" $) }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
OTEL_SERVICE_NAME: {{ index . 1 | quote }}
OTEL_RESOURCE_ATTRIBUTES: {{ printf "service.namespace=%s,k8s.namespace.name=%s%s" $.Release.Name $.Release.Namespace (ternary (printf ",%s" $.Values.otel.resourceAttributes) "" (ne $.Values.otel.resourceAttributes "")) | quote }}
OTEL_TRACES_SAMPLER: {{ $.Values.otel.sampler | quote }}
{{- with $.Values.otel.samplerArg }}
OTEL_TRACES_SAMPLER_ARG: {{ . | quote }}
{{- end }}
{{- if $.Values.otel.disabled }}
OTEL_SDK_DISABLED: "true"
{{- end }}
{{- end -}}

{{- define "recipe-mesh.sourceUrl" -}}
{{- printf "s3://%s" .Values.aws.bucket -}}
{{- end -}}

{{- define "recipe-mesh.jobsQueueUrl" -}}
{{- printf "sqs://%s?dlq=%s" .Values.aws.jobsQueue .Values.aws.jobsDeadLetterQueue -}}
{{- end -}}

{{/*
One service's Deployment. Call with a dict:
  root: $, component: "sender", admin: 9092, grpc: 0 (or 50051), args: list, values: .Values.sender
*/}}
{{- define "recipe-mesh.deployment" -}}
{{- $ := .root -}}
{{- $v := .values -}}
{{- $name := include "recipe-mesh.component" (list $ .component) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "recipe-mesh.labels" (list $ .component) | nindent 4 }}
spec:
  {{- if not (and $v.autoscaling $v.autoscaling.enabled) }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "recipe-mesh.selectorLabels" (list $ .component) | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "recipe-mesh.labels" (list $ .component) | nindent 8 }}
      annotations:
        checksum/config: {{ .configChecksum }}
        {{- include "recipe-mesh.meshAnnotations" $ | nindent 8 }}
        {{- if $.Values.metrics.podAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .admin | quote }}
        prometheus.io/path: /metrics
        {{- end }}
    spec:
      serviceAccountName: {{ $name }}
      # The services never call the Kubernetes API; IRSA, Pod Identity and Linkerd project
      # their own tokens.
      automountServiceAccountToken: false
      {{- with $.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      securityContext:
        {{- include "recipe-mesh.podSecurityContext" $ | nindent 8 }}
      {{- include "recipe-mesh.topologySpread" (list $ .component) | nindent 6 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "recipe-mesh.image" (list $ .component) }}
          imagePullPolicy: {{ $.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          envFrom:
            - configMapRef:
                name: {{ $name }}
          ports:
            {{- if .grpc }}
            - name: grpc
              containerPort: {{ .grpc }}
              protocol: TCP
            {{- end }}
            - name: admin
              containerPort: {{ .admin }}
              protocol: TCP
          # httpGet on the admin port: Linkerd authorizes kubelet probes by itself only for
          # httpGet probes on a Server without routes (docs/mesh.md).
          startupProbe:
            httpGet: {path: /livez, port: admin}
            periodSeconds: 2
            failureThreshold: 30
          livenessProbe:
            httpGet: {path: /livez, port: admin}
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /readyz, port: admin}
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          {{- with $v.preStopSleepSeconds }}
          # Keeps serving until the endpoint's removal has reached the callers' proxies, so no
          # call is sent to a server that stopped listening (the image has no shell: the
          # kubelet's sleep action, Kubernetes 1.30+).
          lifecycle:
            preStop:
              sleep:
                seconds: {{ . }}
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "recipe-mesh.containerSecurityContext" $ | nindent 12 }}
{{- end -}}

{{/* A CPU HorizontalPodAutoscaler. Call with a dict: root, component, values (autoscaling). */}}
{{- define "recipe-mesh.hpa" -}}
{{- $name := include "recipe-mesh.component" (list .root .component) -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "recipe-mesh.labels" (list .root .component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ .values.minReplicas }}
  maxReplicas: {{ .values.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ .values.targetCPUUtilizationPercentage }}
{{- end -}}
