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

{{/* The runtime Deployments, one per model version: the only objects the autoscaler may scale.
Yields their names, one a line. */}}
{{- define "weir.runtimeDeployments" -}}
{{- $root := . -}}
{{- range $model := .Values.models }}
{{- range $line := splitList "\n" (include "weir.versions" $model) }}
{{ printf "%s-%s-%s" (include "weir.name" $root) $model.name (index (splitList " " $line) 0) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Credentials. Tokens live in Secrets mounted as files: nothing secret goes into args or env
values, where `kubectl describe`, the API server's audit log and /proc/PID/cmdline show them. */}}

{{/* The Secret holding the registry's identities file (key identities.toml); empty when the
registry runs anonymous or is not part of the release. Refuses contradictory values. */}}
{{- define "weir.registryIdentitiesSecret" -}}
{{- $auth := .Values.registry.auth -}}
{{- if and $auth.allowAnonymous $auth.existingSecret -}}
{{- fail "registry.auth.allowAnonymous and registry.auth.existingSecret exclude each other: an anonymous registry reads no identities" -}}
{{- end -}}
{{- if and .Values.registry.enabled (not $auth.allowAnonymous) -}}
{{- default (printf "%s-registry-identities" (include "weir.name" .)) $auth.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* "SECRET KEY" of the token the runtime pods present to the registry, or empty (anonymous or
external registry without runtime.registryToken.existingSecret). With the user's own identities
Secret the chart cannot know a reader token: it asks for one instead of starting pods that
cannot fetch their models. */}}
{{- define "weir.runtimeTokenSecret" -}}
{{- if .Values.runtime.registryToken.existingSecret -}}
{{ .Values.runtime.registryToken.existingSecret }} token
{{- else if include "weir.registryIdentitiesSecret" . -}}
{{- if .Values.registry.auth.existingSecret -}}
{{- fail (printf "registry.auth.existingSecret=%s: set runtime.registryToken.existingSecret to a Secret whose key token holds a reader token of that identities file" .Values.registry.auth.existingSecret) -}}
{{- end -}}
{{ include "weir.registryIdentitiesSecret" . }} runtime-token
{{- end -}}
{{- end -}}

{{/* "SECRET KEY" of the admin-role token the router presents to the registry for its shared
state (weir route --registry-token-file), or empty (shared state off, anonymous registry, or an
external registry without router.sharedState.tokenSecret). As for the runtime token, the chart
cannot pick a token out of the user's own identities file: it asks for one. */}}
{{- define "weir.routerTokenSecret" -}}
{{- $shared := .Values.router.sharedState -}}
{{- if $shared.enabled -}}
{{- if $shared.tokenSecret.name -}}
{{ $shared.tokenSecret.name }} {{ default "token" $shared.tokenSecret.key }}
{{- else if include "weir.registryIdentitiesSecret" . -}}
{{- if .Values.registry.auth.existingSecret -}}
{{- /* The runtime's token first, so the messages come in one order whatever renders first. */ -}}
{{- $_ := include "weir.runtimeTokenSecret" . -}}
{{- fail (printf "registry.auth.existingSecret=%s: set router.sharedState.tokenSecret.name (and .key) to a Secret holding a token with the admin role in that identities file, or router.sharedState.enabled=false" .Values.registry.auth.existingSecret) -}}
{{- end -}}
{{ include "weir.registryIdentitiesSecret" . }} router-token
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Registry modes. PostgreSQL: the database lives outside the pod. */}}
{{- define "weir.registryPostgres" -}}
{{- if or .Values.registry.database.url .Values.registry.database.existingSecret }}true{{ end -}}
{{- end -}}

{{/* Stateless: PostgreSQL and S3 artifacts, so nothing lives in the pod and several replicas
(a Deployment) may serve at once. Otherwise one StatefulSet pod owns a volume (SQLite, local
artifacts or both). */}}
{{- define "weir.registryStateless" -}}
{{- if and (include "weir.registryPostgres" .) .Values.registry.artifacts.s3.bucket }}true{{ end -}}
{{- end -}}

{{/* The registry's pod count: registry.replicas, else 2 when stateless and 1 otherwise. Refuses
several pods on one SQLite file or artifacts volume. */}}
{{- define "weir.registryReplicas" -}}
{{- $replicas := .Values.registry.replicas -}}
{{- if include "weir.registryStateless" . -}}
{{ int (default 2 $replicas) }}
{{- else if and (not (kindIs "invalid" $replicas)) (gt (int $replicas) 1) -}}
{{- fail (printf "registry.replicas=%d needs the stateless registry: a PostgreSQL database (registry.database.url or .existingSecret) and S3 artifacts (registry.artifacts.s3.bucket); with SQLite or the artifacts volume the registry is one StatefulSet pod" (int $replicas)) -}}
{{- else -}}
1
{{- end -}}
{{- end -}}

{{/* weir registry --artifacts: s3://BUCKET[/PREFIX], or the volume's folder. */}}
{{- define "weir.registryArtifacts" -}}
{{- $s3 := .Values.registry.artifacts.s3 -}}
{{- if $s3.bucket -}}
{{- $prefix := trimAll "/" $s3.prefix -}}
{{- if $prefix -}}
s3://{{ $s3.bucket }}/{{ $prefix }}
{{- else -}}
s3://{{ $s3.bucket }}
{{- end -}}
{{- else -}}
/data/artifacts
{{- end -}}
{{- end -}}

{{/* The registry's own ServiceAccount (IRSA), or empty: the namespace's default. */}}
{{- define "weir.registryServiceAccount" -}}
{{- $s3 := .Values.registry.artifacts.s3 -}}
{{- if and $s3.bucket $s3.serviceAccount.annotations -}}
{{ printf "%s-registry" (include "weir.name" .) }}
{{- end -}}
{{- end -}}

{{/* The Secret holding the router's admin token (key token). */}}
{{- define "weir.routerAdminSecret" -}}
{{- default (printf "%s-router-admin" (include "weir.name" .)) .Values.router.admin.existingSecret -}}
{{- end -}}

{{/* A generated token: the value already in the release's Secret (so an upgrade keeps it, and
a token edited there survives), else a new random one. `lookup` answers nothing under `helm
template` and --dry-run=client, which then show fresh random values. Takes (dict "secret" NAME
"key" KEY "root" $). */}}
{{- define "weir.keptToken" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret | default dict -}}
{{- $data := dig "data" dict $existing -}}
{{- if hasKey $data .key -}}
{{ index $data .key | b64dec }}
{{- else -}}
{{ randAlphaNum 40 }}
{{- end -}}
{{- end -}}

{{/* The port of an http(s) URL: explicit, else the scheme's. */}}
{{- define "weir.urlPort" -}}
{{- $url := urlParse . -}}
{{- $parts := splitList ":" $url.host -}}
{{- if and (gt (len $parts) 1) (regexMatch "^[0-9]+$" (last $parts)) -}}
{{ last $parts }}
{{- else if eq $url.scheme "https" -}}
443
{{- else if hasPrefix "postgres" $url.scheme -}}
5432
{{- else -}}
80
{{- end -}}
{{- end -}}
