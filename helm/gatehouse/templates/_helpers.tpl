{{/*
Names and labels.
*/}}
{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* RELEASE-CHART, or RELEASE when it already contains the chart name; 63 characters at most. */}}
{{- define "gatehouse.fullname" -}}
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

{{- define "gatehouse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ include "gatehouse.chart" . }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gatehouse
{{- end }}

{{/* Selects the proxy pods only (the PostgreSQL and demo backend pods carry other components). */}}
{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gatehouse.proxySelectorLabels" -}}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/component: proxy
{{- end }}

{{- define "gatehouse.proxyLabels" -}}
{{ include "gatehouse.labels" . }}
app.kubernetes.io/component: proxy
{{- end }}

{{- define "gatehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gatehouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gatehouse.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
Secrets and the database.
*/}}
{{/* The Secret holding GATEHOUSE_JWT_SECRET (and DATABASE_URL for database.type=external). */}}
{{- define "gatehouse.secretName" -}}
{{- default (include "gatehouse.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "gatehouse.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "gatehouse.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.postgresql.secretName" -}}
{{- default (include "gatehouse.postgresql.fullname" .) .Values.postgresql.auth.existingSecret }}
{{- end }}

{{/* "true" when the pods would keep accounts in SQLite files of their own. */}}
{{- define "gatehouse.usesSqlite" -}}
{{- if eq .Values.database.type "sqlite" }}true{{ end }}
{{- end }}

{{/*
The most pods that may run at once: replicaCount, or the HPA's maximum.
*/}}
{{- define "gatehouse.maxPods" -}}
{{- if .Values.autoscaling.enabled }}
{{- max (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- else }}
{{- int .Values.replicaCount }}
{{- end }}
{{- end }}

{{/*
Ports, read from the config's listen / admin_listen ("0.0.0.0:8080", "[::]:8080").
*/}}
{{- define "gatehouse.listenPort" -}}
{{- regexFind "[0-9]+$" (toString .Values.config.listen) }}
{{- end }}

{{- define "gatehouse.adminPort" -}}
{{- if .Values.config.admin_listen }}
{{- regexFind "[0-9]+$" (toString .Values.config.admin_listen) }}
{{- end }}
{{- end }}

{{/* The container port the probes and Prometheus use: admin when admin_listen is set. */}}
{{- define "gatehouse.probePortName" -}}
{{- if .Values.config.admin_listen }}admin{{ else }}http{{ end }}
{{- end }}

{{/* The admin listener is plain HTTP; `listen` is HTTPS when config.tls is set. */}}
{{- define "gatehouse.probeScheme" -}}
{{- if and (not .Values.config.admin_listen) .Values.config.tls }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* The Ingress host names: ingress.hosts, or every host of config.services plus the control host. */}}
{{- define "gatehouse.ingressHosts" -}}
{{- $hosts := list }}
{{- if .Values.ingress.hosts }}
{{- $hosts = .Values.ingress.hosts }}
{{- else }}
{{- range .Values.config.services }}
{{- range .hosts }}
{{- $hosts = append $hosts (lower .) }}
{{- end }}
{{- end }}
{{- if .Values.ingress.controlHost }}
{{- $hosts = append $hosts .Values.ingress.controlHost }}
{{- end }}
{{- end }}
{{- toJson (uniq $hosts) }}
{{- end }}

{{/*
Render-time checks: a values file that cannot work fails `helm install` / `helm template` with a
sentence saying what to change, instead of pods that crash or silently lose data.
*/}}
{{- define "gatehouse.validate" -}}
{{- $type := .Values.database.type }}
{{- if not (has $type (list "postgresql" "external" "sqlite")) }}
{{- fail (printf "database.type must be postgresql, external or sqlite (got %q)" $type) }}
{{- end }}
{{- if and (eq $type "sqlite") (gt (int (include "gatehouse.maxPods" .)) 1) }}
{{- fail (printf "database.type=sqlite keeps accounts in a file inside each pod, so up to %d pods would each have their own accounts and revocations: set replicaCount: 1 and autoscaling.enabled: false, or use a shared PostgreSQL (database.type: postgresql for the in-cluster one, or external)" (int (include "gatehouse.maxPods" .))) }}
{{- end }}
{{- $configDb := "" }}
{{- if and .Values.config.database .Values.config.database.url }}
{{- $configDb = toString .Values.config.database.url }}
{{- end }}
{{- if and (eq $type "sqlite") $configDb (not (hasPrefix "sqlite:" $configDb)) }}
{{- fail (printf "database.type=sqlite but config.database.url is %q: for PostgreSQL set database.type: external (and the URL in database.external.url or existingSecret, not in the ConfigMap)" $configDb) }}
{{- end }}
{{- if and (eq $type "external") (not .Values.existingSecret) (not .Values.database.external.url) }}
{{- fail "database.type=external needs the PostgreSQL URL: set database.external.url (stored in the chart's Secret) or existingSecret (a Secret with a DATABASE_URL key)" }}
{{- end }}
{{- if and .Values.database.external.url (not (regexMatch "^postgres(ql)?://" .Values.database.external.url)) }}
{{- fail "database.external.url must start with postgres:// or postgresql://" }}
{{- end }}
{{- if and .Values.jwtSecret (lt (len .Values.jwtSecret) 32) }}
{{- fail "jwtSecret must be at least 32 bytes (or leave it empty to have one generated and kept across upgrades)" }}
{{- end }}
{{- if and .Values.existingSecret .Values.jwtSecret }}
{{- fail "set either existingSecret or jwtSecret, not both: with existingSecret the chart creates no Secret of its own" }}
{{- end }}
{{- if and .Values.existingSecret .Values.database.external.url }}
{{- fail "set either existingSecret (with a DATABASE_URL key) or database.external.url, not both" }}
{{- end }}
{{- range $key, $address := dict "listen" .Values.config.listen "admin_listen" (.Values.config.admin_listen | default "") }}
{{- if and $address (regexMatch "^(127\\.|localhost|\\[::1\\])" (toString $address)) }}
{{- fail (printf "config.%s is %s, a loopback address: the kubelet's probes, the Service and Prometheus reach the pod IP, so bind 0.0.0.0:PORT" $key $address) }}
{{- end }}
{{- end }}
{{- if not (include "gatehouse.listenPort" .) }}
{{- fail "config.listen must be HOST:PORT, e.g. 0.0.0.0:8080" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- end }}
