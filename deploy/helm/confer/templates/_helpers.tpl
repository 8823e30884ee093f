{{/* The release's base name; the pods' DNS names are built from it, so keep it short. */}}
{{- define "confer.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "confer.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The Confer nodes' pods. */}}
{{- define "confer.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node
{{- end -}}

{{- define "confer.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{/* The headless Service that gives each pod a stable DNS name (cluster.node_url). */}}
{{- define "confer.headless" -}}
{{- printf "%s-nodes" (include "confer.fullname" .) -}}
{{- end -}}

{{- define "confer.signingKeySecret" -}}
{{- .Values.existingSigningKeySecret | default (printf "%s-signing-key" (include "confer.fullname" .)) -}}
{{- end -}}

{{- define "confer.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s-redis:6379/0" (include "confer.fullname" .) -}}
{{- else -}}
{{- required "set redis.url to your Redis (redis://host:6379/0), or redis.enabled=true" .Values.redis.url -}}
{{- end -}}
{{- end -}}
