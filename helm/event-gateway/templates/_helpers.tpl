{{/* Names ------------------------------------------------------------------------------------- */}}

{{- define "event-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "event-gateway.fullname" -}}
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

{{/* A workload's name: the full name, plus the role in split mode. Takes (dict "root" $ "role" ROLE). */}}
{{- define "event-gateway.workloadName" -}}
{{- if eq .role "all" }}
{{- include "event-gateway.fullname" .root }}
{{- else }}
{{- printf "%s-%s" (include "event-gateway.fullname" .root | trunc 52 | trimSuffix "-") .role }}
{{- end }}
{{- end }}

{{- define "event-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "event-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "event-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "event-gateway.secretName" -}}
{{- default (include "event-gateway.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{- define "event-gateway.instancesSecretName" -}}
{{- default (printf "%s-instances" (include "event-gateway.fullname" .)) .Values.instances.existingSecret }}
{{- end }}

{{- define "event-gateway.hasInstances" -}}
{{- if or .Values.instances.existingSecret .Values.instances.items }}true{{ end }}
{{- end }}

{{- define "event-gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Labels ------------------------------------------------------------------------------------ */}}

{{- define "event-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "event-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "event-gateway.labels" -}}
helm.sh/chart: {{ include "event-gateway.chart" . }}
{{ include "event-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: event-gateway
{{- end }}

{{/* A role's selector labels. Takes (dict "root" $ "role" ROLE). */}}
{{- define "event-gateway.roleSelectorLabels" -}}
{{ include "event-gateway.selectorLabels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "event-gateway.roleLabels" -}}
{{ include "event-gateway.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{/* Pods that serve the admin API: the all-in-one pods, or the api role's. */}}
{{- define "event-gateway.apiComponent" -}}
{{- if eq .Values.mode "split" }}api{{ else }}all{{ end }}
{{- end }}

{{/* Whether the pollers read their StatefulSet when they stop, to tell a scale-down from a restart
(poller.leaveGroupOnShutdown=if-scaled-down). Takes the root. */}}
{{- define "event-gateway.pollersReadTheirStatefulSet" -}}
{{- $poller := .Values.poller }}
{{- if and (eq .Values.mode "split") $poller.staticMembership (eq $poller.leaveGroupOnShutdown "if-scaled-down") }}true{{ end }}
{{- end }}

{{/* The pod template of one role. Takes (dict "root" $ "role" ROLE "spec" .Values.ROLE). ---------- */}}
{{- define "event-gateway.podTemplate" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $servesApi := or (eq .role "all") (eq .role "api") }}
{{- $loadsInstances := and (include "event-gateway.hasInstances" $root) $servesApi }}
{{- $readsStatefulSet := and (eq .role "poller") (include "event-gateway.pollersReadTheirStatefulSet" $root) }}
metadata:
  labels:
    {{- include "event-gateway.roleSelectorLabels" . | nindent 4 }}
    {{- with $values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- if not $values.secret.existingSecret }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- end }}
    {{- if $loadsInstances }}
    checksum/instances: {{ include (print $root.Template.BasePath "/secret-instances.yaml") $root | sha256sum }}
    {{- end }}
    {{- with $values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "event-gateway.serviceAccountName" $root }}
  # Only a poller that reads its StatefulSet when it stops calls the Kubernetes API.
  automountServiceAccountToken: {{ if $readsStatefulSet }}true{{ else }}false{{ end }}
  {{- with $values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml $values.podSecurityContext | nindent 4 }}
  containers:
    - name: gateway
      image: {{ include "event-gateway.image" $root }}
      imagePullPolicy: {{ $values.image.pullPolicy }}
      args:
        - run
        - --role
        - {{ .role }}
        {{- if $loadsInstances }}
        - --instances
        - {{ $values.instances.mountPath }}
        {{- end }}
        {{- range .spec.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      envFrom:
        - configMapRef:
            name: {{ include "event-gateway.fullname" $root }}
      env:
        - name: GATEWAY_ADMIN_TOKEN
          valueFrom:
            secretKeyRef:
              name: {{ include "event-gateway.secretName" $root }}
              key: {{ $values.secret.adminTokenKey }}
        - name: GATEWAY_SECRET_KEY
          valueFrom:
            secretKeyRef:
              name: {{ include "event-gateway.secretName" $root }}
              key: {{ $values.secret.secretKeyKey }}
        - name: GATEWAY_SECRET_KEY_PREVIOUS
          valueFrom:
            secretKeyRef:
              name: {{ include "event-gateway.secretName" $root }}
              key: {{ $values.secret.previousSecretKeysKey }}
              optional: true
        {{- if and (eq .role "poller") .spec.staticMembership }}
        - name: GATEWAY_GROUP_INSTANCE_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: GATEWAY_LEAVE_GROUP_ON_SHUTDOWN
          value: {{ .spec.leaveGroupOnShutdown | quote }}
        {{- if $readsStatefulSet }}
        - name: GATEWAY_KUBERNETES_STATEFULSET
          value: {{ include "event-gateway.workloadName" . | quote }}
        {{- end }}
        {{- end }}
        {{- with .spec.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        {{- if $servesApi }}
        - name: http
          containerPort: {{ $values.ports.api }}
          protocol: TCP
        {{- end }}
        - name: metrics
          containerPort: {{ $values.ports.metrics }}
          protocol: TCP
      startupProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: {{ $values.probes.startup.periodSeconds }}
        failureThreshold: {{ $values.probes.startup.failureThreshold }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: {{ $values.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ $values.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ $values.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        periodSeconds: {{ $values.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ $values.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ $values.probes.readiness.failureThreshold }}
      resources:
        {{- toYaml .spec.resources | nindent 8 }}
      securityContext:
        {{- toYaml $values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if $loadsInstances }}
        - name: instances
          mountPath: {{ $values.instances.mountPath }}
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ $values.tmpVolume.sizeLimit }}
    {{- if $loadsInstances }}
    - name: instances
      secret:
        secretName: {{ include "event-gateway.instancesSecretName" $root }}
    {{- end }}
  {{- with $values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
