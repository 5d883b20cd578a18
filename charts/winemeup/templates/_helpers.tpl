{{/*
Names, labels and the derived configuration every template shares.
*/}}

{{/* Chart name, overridable. */}}
{{- define "winemeup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: <release>-<chart>, or the release name when it already contains the
chart name. Truncated at 63 characters because some Kubernetes name fields are limited to that
(DNS-1123 label).
*/}}
{{- define "winemeup.fullname" -}}
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

{{/*
Name of one component's resources: <fullname>-<suffix>. The full name is cut first so that the
suffix always survives (two runners must never truncate to the same name).
Usage: include "winemeup.componentName" (dict "ctx" $ "suffix" "router")
*/}}
{{- define "winemeup.componentName" -}}
{{- $suffix := .suffix }}
{{- $room := sub 62 (len $suffix) | int }}
{{- printf "%s-%s" (include "winemeup.fullname" .ctx | trunc $room | trimSuffix "-") $suffix }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "winemeup.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one workload: name, instance, component. Never anything that changes
between chart versions (a Deployment's selector is immutable).
Usage: include "winemeup.selectorLabels" (dict "ctx" $ "component" "router")
*/}}
{{- define "winemeup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "winemeup.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Common labels of one workload's resources: the selector labels plus chart and version.
Usage: include "winemeup.labels" (dict "ctx" $ "component" "router")
*/}}
{{- define "winemeup.labels" -}}
helm.sh/chart: {{ include "winemeup.chart" .ctx }}
{{ include "winemeup.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: winemeup
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A model name as it may appear in a resource name: random_forest -> random-forest. */}}
{{- define "winemeup.modelSlug" -}}
{{- . | replace "_" "-" }}
{{- end }}

{{/* Component label of one model's runner: runner-random-forest. */}}
{{- define "winemeup.runnerComponent" -}}
{{- printf "runner-%s" (include "winemeup.modelSlug" .) }}
{{- end }}

{{/* Name of one model's runner Deployment/Service/HPA. Usage: (dict "ctx" $ "model" "svr") */}}
{{- define "winemeup.runnerName" -}}
{{- include "winemeup.componentName" (dict "ctx" .ctx "suffix" (include "winemeup.runnerComponent" .model)) }}
{{- end }}

{{/* Names of the other components. */}}
{{- define "winemeup.routerName" -}}
{{- include "winemeup.componentName" (dict "ctx" . "suffix" "router") }}
{{- end }}
{{- define "winemeup.uiName" -}}
{{- include "winemeup.componentName" (dict "ctx" . "suffix" "ui") }}
{{- end }}
{{- define "winemeup.redisName" -}}
{{- include "winemeup.componentName" (dict "ctx" . "suffix" "redis") }}
{{- end }}

{{/* Name of the ServiceAccount the workloads use. */}}
{{- define "winemeup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "winemeup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the API keys. */}}
{{- define "winemeup.keysSecretName" -}}
{{- default (include "winemeup.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}; the tag defaults to the chart's appVersion.
Usage: include "winemeup.image" (dict "ctx" $ "image" .Values.router.image)
*/}}
{{- define "winemeup.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag | toString) }}
{{- end }}
{{- end }}

{{/* Enabled model names, sorted, as a JSON list (read back with fromJsonArray). */}}
{{- define "winemeup.enabledModels" -}}
{{- $enabled := list }}
{{- range $name := keys .Values.models | sortAlpha }}
{{- if (index $.Values.models $name).enabled }}
{{- $enabled = append $enabled $name }}
{{- end }}
{{- end }}
{{- toJson $enabled }}
{{- end }}

{{/* Enabled models placed in a runner, sorted, as a JSON list. */}}
{{- define "winemeup.runnerModels" -}}
{{- $runners := list }}
{{- range $name := include "winemeup.enabledModels" . | fromJsonArray }}
{{- if eq (index $.Values.models $name).placement "runner" }}
{{- $runners = append $runners $name }}
{{- end }}
{{- end }}
{{- toJson $runners }}
{{- end }}

{{/* Enabled models placed inline in the router, sorted, as a JSON list. */}}
{{- define "winemeup.inlineModels" -}}
{{- $inline := list }}
{{- range $name := include "winemeup.enabledModels" . | fromJsonArray }}
{{- if eq (index $.Values.models $name).placement "inline" }}
{{- $inline = append $inline $name }}
{{- end }}
{{- end }}
{{- toJson $inline }}
{{- end }}

{{/*
One runner's effective settings: runnerDefaults merged under the model's own entry.
Usage: include "winemeup.runnerValues" (dict "ctx" $ "model" "svr") | fromYaml
*/}}
{{- define "winemeup.runnerValues" -}}
{{- $defaults := deepCopy .ctx.Values.runnerDefaults }}
{{- $own := index .ctx.Values.models .model }}
{{- $image := dict
  "repository" (printf "%s%s" $defaults.image.repositoryPrefix (include "winemeup.modelSlug" .model))
  "tag" $defaults.image.tag
  "digest" ""
  "pullPolicy" $defaults.image.pullPolicy }}
{{- $image = mergeOverwrite $image (deepCopy (default dict $own.image)) }}
{{- $autoscaling := mergeOverwrite (deepCopy $defaults.autoscaling) (deepCopy (default dict $own.autoscaling)) }}
{{- $resources := $defaults.resources }}
{{- if $own.resources }}{{ $resources = $own.resources }}{{ end }}
{{- toYaml (dict "image" $image "autoscaling" $autoscaling "resources" $resources "replicas" $own.replicas) }}
{{- end }}

{{/* In-cluster base URL of one model's runner. Usage: (dict "ctx" $ "model" "svr") */}}
{{- define "winemeup.runnerUrl" -}}
{{- printf "http://%s.%s.svc:3000" (include "winemeup.runnerName" .) .ctx.Release.Namespace }}
{{- end }}

{{/* The runner URL map the router reads (WINEMEUP_ROUTER_RUNNER_URLS), as JSON. */}}
{{- define "winemeup.runnerUrls" -}}
{{- $urls := dict }}
{{- range $name := include "winemeup.runnerModels" . | fromJsonArray }}
{{- $_ := set $urls $name (include "winemeup.runnerUrl" (dict "ctx" $ "model" $name)) }}
{{- end }}
{{- toJson $urls }}
{{- end }}

{{/* The per-model placement map the router reads (WINEMEUP_ROUTER_PLACEMENTS), as JSON. */}}
{{- define "winemeup.placements" -}}
{{- $placements := dict }}
{{- range $name := include "winemeup.enabledModels" . | fromJsonArray }}
{{- $_ := set $placements $name (index $.Values.models $name).placement }}
{{- end }}
{{- toJson $placements }}
{{- end }}

{{/* Whether the router needs the image with models baked in ("true" or ""). */}}
{{- define "winemeup.routerNeedsModels" -}}
{{- if include "winemeup.inlineModels" . | fromJsonArray }}true{{ end }}
{{- end }}

{{/* The router image actually deployed. */}}
{{- define "winemeup.routerImage" -}}
{{- if include "winemeup.routerNeedsModels" . }}
{{- include "winemeup.image" (dict "ctx" . "image" .Values.router.inlineImage) }}
{{- else }}
{{- include "winemeup.image" (dict "ctx" . "image" .Values.router.image) }}
{{- end }}
{{- end }}

{{/* Where the router's cache lives: "internal" (chart Redis), "external", or "memory". */}}
{{- define "winemeup.cacheBackend" -}}
{{- if or .Values.redis.external.url .Values.redis.external.existingSecret }}external
{{- else if .Values.redis.enabled }}internal
{{- else }}memory
{{- end }}
{{- end }}

{{/* Whether the chart renders its own Secret ("true" or ""). */}}
{{- define "winemeup.ownSecret" -}}
{{- if or (not .Values.auth.existingSecret) (and .Values.redis.external.url (not .Values.redis.external.existingSecret)) }}true{{ end }}
{{- end }}

{{/* Checks that stop a broken configuration at render time, with a message saying why. */}}
{{- define "winemeup.validate" -}}
{{- $enabled := include "winemeup.enabledModels" . | fromJsonArray }}
{{- if not $enabled }}
{{- fail "models: enable at least one model" }}
{{- end }}
{{- if not (has .Values.router.defaultModel $enabled) }}
{{- fail (printf "router.defaultModel %q is not an enabled model (enabled: %s)" .Values.router.defaultModel (join ", " $enabled)) }}
{{- end }}
{{- if gt (int .Values.router.autoscaling.minReplicas) (int .Values.router.autoscaling.maxReplicas) }}
{{- fail "router.autoscaling.minReplicas must not exceed maxReplicas" }}
{{- end }}
{{- end }}

{{/* Pod-level settings every WineMeUp pod shares. */}}
{{- define "winemeup.podCommon" -}}
serviceAccountName: {{ include "winemeup.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
