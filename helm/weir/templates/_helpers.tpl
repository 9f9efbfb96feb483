{{/* Names: every object is "<release>-weir-<part>", cut to 63 characters. */}}
{{- define "weir.name" -}}
{{- printf "%s-weir" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "weir.labels" -}}
app.kubernetes.io/name: weir
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "weir.selector" -}}
app.kubernetes.io/name: weir
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "weir.image" -}}
{{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) | quote }}
{{- end -}}

{{/* The registry the runtime pods fetch approved versions from. */}}
{{- define "weir.registryUrl" -}}
{{- if .Values.registry.enabled -}}
{{ printf "http://%s-registry:%d" (include "weir.name" .) (int .Values.registry.port) }}
{{- else -}}
{{ .Values.registry.url }}
{{- end -}}
{{- end -}}

{{/* Non-root, read-only root filesystem, nothing extra. */}}
{{- define "weir.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "weir.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The versions of a model: stable, and canary when set. Yields "role uri" lines. */}}
{{- define "weir.versions" -}}
stable {{ .uri }}
{{- if .canary }}
canary {{ .canary.uri }}
{{- end }}
{{- end -}}

{{/* The autoscaler's targets: one per model version, scaled on its own load. */}}
{{- define "weir.autoscalerToml" -}}
{{- $root := . -}}
{{- $scrape := not .Values.autoscaler.prometheus.url -}}
{{- range $model := .Values.models }}
{{- $replicas := default (dict "min" 1 "max" 10) $model.replicas }}
{{- range $line := splitList "\n" (include "weir.versions" $model) }}
{{- $role := index (splitList " " $line) 0 }}
{{- $deployment := printf "%s-%s-%s" (include "weir.name" $root) $model.name $role }}
[[target]]
name = {{ printf "%s-%s" $model.name $role | quote }}
scaler = { kind = "kubernetes", namespace = {{ $root.Release.Namespace | quote }}, deployment = {{ $deployment | quote }}, port = {{ $root.Values.runtime.port }} }
{{- if $scrape }}
signal = { kind = "scrape" }
{{- else }}
signal = { kind = "prometheus", url = {{ $root.Values.autoscaler.prometheus.url | quote }}, query = {{ printf "sum(max_over_time(weir_inflight_requests{namespace=\"%s\",service=\"%s\"}[2s]))" $root.Release.Namespace $deployment | quote }} }
{{- end }}
policy = { metric = "concurrency", target = {{ $root.Values.autoscaler.targetConcurrency }}, min_replicas = {{ int $replicas.min }}, max_replicas = {{ int $replicas.max }} }
{{- end }}
{{- end }}
{{- end -}}
