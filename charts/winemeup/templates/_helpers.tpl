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
Name of one component's resources: <fullname>-<suffix>, at most `max` characters (default 63).
The full name is cut first so that the suffix always survives (two runners must never truncate
to the same name).
Usage: include "winemeup.componentName" (dict "ctx" $ "suffix" "router" ["max" 52])
*/}}
{{- define "winemeup.componentName" -}}
{{- $suffix := .suffix }}
{{- $room := sub (sub (.max | default 63) 1) (len $suffix) | int }}
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
{{/*
The Redis StatefulSet (and its Services) stay within 52 characters: the StatefulSet controller
labels each pod with controller-revision-hash=<name>-<10-character hash>, and a label value
over 63 characters means the pod is never created (kubernetes/kubernetes#64023).
*/}}
{{- define "winemeup.redisName" -}}
{{- include "winemeup.componentName" (dict "ctx" . "suffix" "redis" "max" 52) }}
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
{{- $repository := .image.repository }}
{{- with .ctx.Values.global.imageRegistry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .ctx.Chart.AppVersion .image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
Labels of a pod template: the selector labels, part-of, and the component's podLabels. No chart
or version label: a chart upgrade alone must not restart pods (the Redis cache would be lost).
Usage: include "winemeup.podLabels" (dict "ctx" $ "component" "router" "extra" .Values.router.podLabels)
*/}}
{{- define "winemeup.podLabels" -}}
{{ include "winemeup.selectorLabels" . }}
app.kubernetes.io/part-of: winemeup
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
One probe: the chart's default with the values' override merged over it (key by key).
Usage: include "winemeup.probe" (dict "default" (dict ...) "override" .Values.router.probes.readiness)
*/}}
{{- define "winemeup.probe" -}}
{{- toYaml (mergeOverwrite (deepCopy .default) (deepCopy (.override | default dict))) }}
{{- end }}

{{/*
The Secret's data, computed once per render and shared by the Secret, the checksum annotations
and NOTES.txt, so all of them see the same generated values. Keys left empty in the values are
read back from the existing Secret (lookup; kept across `helm upgrade`) or generated. Returns
JSON {"data": {key: base64}, "generated": [key, ...]}.
*/}}
{{- define "winemeup.secretState" -}}
{{- if not (hasKey .Values "__winemeupSecretState") }}
{{- $previous := (lookup "v1" "Secret" .Release.Namespace (include "winemeup.fullname" .)) | default dict }}
{{- $old := $previous.data | default dict }}
{{- $data := dict }}
{{- $generated := list }}
{{- if not .Values.auth.existingSecret }}
{{- $apiKeys := .Values.auth.apiKeys }}
{{- if not $apiKeys }}
{{- $apiKeys = (index $old "api-keys") | default "" | b64dec }}
{{- if not $apiKeys }}{{ $apiKeys = randAlphaNum 40 }}{{ $generated = append $generated "api-keys" }}{{ end }}
{{- end }}
{{- $adminKeys := .Values.auth.adminApiKeys }}
{{- if not $adminKeys }}
{{- $adminKeys = (index $old "admin-api-keys") | default "" | b64dec }}
{{- if not $adminKeys }}{{ $adminKeys = randAlphaNum 40 }}{{ $generated = append $generated "admin-api-keys" }}{{ end }}
{{- end }}
{{- $_ := set $data "api-keys" ($apiKeys | b64enc) }}
{{- $_ := set $data "admin-api-keys" ($adminKeys | b64enc) }}
{{- $_ := set $data "ui-api-key" (splitList "," $apiKeys | first | trim | b64enc) }}
{{- $runnerToken := .Values.auth.runnerToken }}
{{- if not $runnerToken }}
{{- $runnerToken = (index $old "runner-token") | default "" | b64dec }}
{{- if not $runnerToken }}{{ $runnerToken = randAlphaNum 48 }}{{ $generated = append $generated "runner-token" }}{{ end }}
{{- end }}
{{- $_ := set $data "runner-token" ($runnerToken | b64enc) }}
{{- end }}
{{- if and .Values.redis.external.url (not .Values.redis.external.existingSecret) }}
{{- $_ := set $data "redis-url" (.Values.redis.external.url | b64enc) }}
{{- end }}
{{- if and (eq (include "winemeup.cacheBackend" .) "internal") (not .Values.redis.auth.existingSecret) }}
{{- $password := .Values.redis.auth.password }}
{{- if not $password }}
{{- $password = (index $old "redis-password") | default "" | b64dec }}
{{- if not $password }}{{ $password = randAlphaNum 32 }}{{ $generated = append $generated "redis-password" }}{{ end }}
{{- end }}
{{- $_ := set $data "redis-password" ($password | b64enc) }}
{{- end }}
{{- $_ := set .Values "__winemeupSecretState" (dict "data" $data "generated" $generated) }}
{{- end }}
{{- toJson .Values.__winemeupSecretState }}
{{- end }}

{{/*
checksum/secret of the pods: the chart Secret's own data (what the pods really read), plus the
names of any existing Secrets they reference, so a changed key or a switched Secret rolls them.
*/}}
{{- define "winemeup.secretChecksum" -}}
{{- $state := include "winemeup.secretState" . | fromJson }}
{{- toJson (dict "data" $state.data "auth" .Values.auth.existingSecret "redis" .Values.redis.auth.existingSecret "external" .Values.redis.external.existingSecret) | sha256sum }}
{{- end }}

{{/*
An env entry reading the runner token (the secret only the router and its runners share) from
the keys Secret. Usage: include "winemeup.runnerTokenEnv" (dict "ctx" $ "name" "WINEMEUP_RUNNER_TOKEN")
*/}}
{{- define "winemeup.runnerTokenEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "winemeup.keysSecretName" .ctx }}
      key: runner-token
{{- end }}

{{/* Secret and key of the chart Redis's password. */}}
{{- define "winemeup.redisPasswordRef" -}}
name: {{ .Values.redis.auth.existingSecret | default (include "winemeup.fullname" .) }}
key: {{ ternary .Values.redis.auth.existingSecretPasswordKey "redis-password" (ne .Values.redis.auth.existingSecret "") }}
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
{{- $scheduling := dict }}
{{- range $key := list "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" "priorityClassName" }}
{{- $_ := set $scheduling $key ((index $own $key) | default (index $defaults $key)) }}
{{- end }}
{{- toYaml (dict "image" $image "autoscaling" $autoscaling "resources" $resources "replicas" $own.replicas "scheduling" $scheduling "modelUri" ($own.modelUri | default "") "modelSha256" ($own.modelSha256 | default "") "allowInsecureModelUri" ($own.allowInsecureModelUri | default false)) }}
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
{{- if (include "winemeup.secretState" . | fromJson).data }}true{{ end }}
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
{{- range $model := include "winemeup.runnerModels" . | fromJsonArray }}
{{- $a := (include "winemeup.runnerValues" (dict "ctx" $ "model" $model) | fromYaml).autoscaling }}
{{- if and $a.enabled (gt (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- fail (printf "models.%s: autoscaling.minReplicas (%d) must not exceed maxReplicas (%d)" $model (int $a.minReplicas) (int $a.maxReplicas)) }}
{{- end }}
{{- if and $a.enabled $a.keda.enabled (not $.Values.metrics.prometheusRule.enabled) }}
{{- fail (printf "models.%s: autoscaling.keda.enabled needs metrics.prometheusRule.enabled (KEDA queries the in-flight series its recording rule makes)" $model) }}
{{- end }}
{{- end }}
{{- range $model := include "winemeup.runnerModels" . | fromJsonArray }}
{{- $r := include "winemeup.runnerValues" (dict "ctx" $ "model" $model) | fromYaml }}
{{- if and $r.modelUri (not $r.modelSha256) }}
{{- fail (printf "models.%s.modelSha256 is required with modelUri: the runner must not serve an archive it cannot check (sha256sum of the export)" $model) }}
{{- end }}
{{- if and (hasPrefix "http://" $r.modelUri) (not $r.allowInsecureModelUri) }}
{{- fail (printf "models.%s.modelUri is http://: use https://, or set models.%s.allowInsecureModelUri=true to accept a download without TLS" $model $model) }}
{{- end }}
{{- end }}
{{- range $model := include "winemeup.enabledModels" . | fromJsonArray }}
{{- with (index $.Values.models $model).candidate }}
{{- if ne (index $.Values.models $model).placement "runner" }}
{{- fail (printf "models.%s.candidate needs placement: runner (a candidate runs in a runner of its own)" $model) }}
{{- end }}
{{- if not .version }}
{{- fail (printf "models.%s.candidate.version is required: the model store version the candidate runner serves (the rollout names it)" $model) }}
{{- end }}
{{- if hasKey $.Values.router.rollouts.candidates $model }}
{{- fail (printf "models.%s.candidate and router.rollouts.candidates.%s both give %s a candidate: keep one" $model $model $model) }}
{{- end }}
{{- if and .modelSha256 (not .modelUri) }}
{{- fail (printf "models.%s.candidate.modelSha256 is set without models.%s.candidate.modelUri" $model $model) }}
{{- end }}
{{- if and .modelUri (not .modelSha256) }}
{{- fail (printf "models.%s.candidate.modelSha256 is required with modelUri: the runner must not serve an archive it cannot check (sha256sum of the export)" $model) }}
{{- end }}
{{- if and (hasPrefix "http://" (.modelUri | default "")) (not .allowInsecureModelUri) }}
{{- fail (printf "models.%s.candidate.modelUri is http://: use https://, or set models.%s.candidate.allowInsecureModelUri=true to accept a download without TLS" $model $model) }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq .Values.ingress.uiAuth.type "basic" }}
{{- if not .Values.ingress.uiAuth.basicSecret }}
{{- fail "ingress.uiAuth.type=basic needs ingress.uiAuth.basicSecret (a Secret with an htpasswd `auth` key)" }}
{{- end }}
{{- else if eq .Values.ingress.uiAuth.type "external" }}
{{- if not (and .Values.ingress.uiAuth.url .Values.ingress.uiAuth.signin) }}
{{- fail "ingress.uiAuth.type=external needs ingress.uiAuth.url and ingress.uiAuth.signin (the OAuth2 proxy's auth and sign-in URLs)" }}
{{- end }}
{{- end }}
{{- range $name := include "winemeup.inlineModels" . | fromJsonArray }}
{{- if (index $.Values.models $name).modelUri }}
{{- fail (printf "models.%s.modelUri needs placement: runner (inline models come from router.inlineImage)" $name) }}
{{- end }}
{{- end }}
{{- if and .Values.ui.enabled .Values.ingress.enabled }}
{{- $size := .Values.ingress.maxBodySize | toString | lower }}
{{- $number := regexFind "^[0-9]+" $size | default "0" | int }}
{{- $unit := regexFind "[kmg]$" $size }}
{{- $mb := ternary (div $number 1024) (ternary (mul $number 1024) $number (eq $unit "g")) (eq $unit "k") }}
{{- if and (ne $number 0) (ge (int .Values.ui.maxUploadMegabytes) (int $mb)) }}
{{- fail (printf "ui.maxUploadMegabytes (%d) must stay below ingress.maxBodySize (%s): a larger CSV would get a bare 413 from the ingress" (int .Values.ui.maxUploadMegabytes) .Values.ingress.maxBodySize) }}
{{- end }}
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

{{/*
unhealthyPodEvictionPolicy of a PDB (policy/v1, Kubernetes 1.27+; GA in 1.31): AlwaysAllow lets a
node drain evict pods that are not ready anyway, instead of blocking on them.
Usage: include "winemeup.unhealthyPodEvictionPolicy" (dict "ctx" $ "pdb" .Values.router.podDisruptionBudget)
*/}}
{{- define "winemeup.unhealthyPodEvictionPolicy" -}}
{{- if and .pdb.unhealthyPodEvictionPolicy (semverCompare ">=1.27-0" .ctx.Capabilities.KubeVersion.Version) }}
unhealthyPodEvictionPolicy: {{ .pdb.unhealthyPodEvictionPolicy }}
{{- end }}
{{- end }}

{{/*
topologySpreadConstraints of one component; a constraint without a labelSelector gets the
component's selector labels (the usual intent: spread this workload's own pods).
Usage: include "winemeup.topologySpread" (dict "ctx" $ "component" "router" "constraints" list)
*/}}
{{- define "winemeup.topologySpread" -}}
{{- if .constraints }}
{{- $out := list }}
{{- $selector := include "winemeup.selectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml }}
{{- range $c := .constraints }}
{{- $c = deepCopy $c }}
{{- if not $c.labelSelector }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
topologySpreadConstraints:
  {{- toYaml $out | nindent 2 }}
{{- end }}
{{- end }}

{{/* Whether the operator creates the runners ("true" or ""). */}}
{{- define "winemeup.operatorMode" -}}
{{- if eq .Values.runners.managedBy "operator" }}true{{ end }}
{{- end }}

{{/* Name of the operator's Deployment, ServiceAccount, Role, ConfigMap and Lease. */}}
{{- define "winemeup.operatorName" -}}
{{- include "winemeup.componentName" (dict "ctx" . "suffix" "operator") }}
{{- end }}

{{/*
The PromQL KEDA asks for one model: requests waiting on its runner, summed over router pods
(the recording rule in prometheusrule.yaml). Usage: (dict "ctx" $ "model" "svr")
*/}}
{{- define "winemeup.kedaQuery" -}}
{{- printf "sum(namespace_model:winemeup_router_runner_inflight_requests:avg1m_sum{namespace=%q, model=%q})" .ctx.Release.Namespace .model }}
{{- end }}

{{/*
Spec of one runner's KEDA ScaledObject: CPU utilisation plus in-flight requests per pod, with
a fixed replica count while Prometheus cannot be queried. The operator renders the same
(services/operator/reconcile.py). Usage: (dict "ctx" $ "model" m "name" n "autoscaling" a)
*/}}
{{- define "winemeup.kedaSpec" -}}
{{- $a := .autoscaling }}
{{- $k := $a.keda -}}
scaleTargetRef:
  apiVersion: apps/v1
  kind: Deployment
  name: {{ .name }}
minReplicaCount: {{ $a.minReplicas }}
maxReplicaCount: {{ $a.maxReplicas }}
pollingInterval: {{ $k.pollingIntervalSeconds }}
cooldownPeriod: {{ $k.cooldownPeriodSeconds }}
fallback:
  failureThreshold: {{ $k.failureThreshold }}
  replicas: {{ $k.fallbackReplicas }}
advanced:
  horizontalPodAutoscalerConfig:
    behavior:
      scaleDown:
        # A runner holds a model in memory: scale in slowly.
        stabilizationWindowSeconds: 300
triggers:
  - type: cpu
    metricType: Utilization
    metadata:
      value: {{ $a.targetCPUUtilizationPercentage | toString | quote }}
  - type: prometheus
    metricType: AverageValue
    metadata:
      serverAddress: {{ $k.serverAddress | quote }}
      query: {{ include "winemeup.kedaQuery" (dict "ctx" .ctx "model" .model) | quote }}
      threshold: {{ $k.targetInflightPerPod | toString | quote }}
{{- end }}

{{/* The runner container's three probes (the operator's release context carries the same). */}}
{{- define "winemeup.runnerProbes" -}}
{{- $rd := .Values.runnerDefaults -}}
startupProbe:
  {{- include "winemeup.probe" (dict "default" (dict "httpGet" (dict "path" "/livez" "port" "http") "periodSeconds" 2 "failureThreshold" 60) "override" $rd.probes.startup) | nindent 2 }}
readinessProbe:
  {{- include "winemeup.probe" (dict "default" (dict "httpGet" (dict "path" "/readyz" "port" "http") "periodSeconds" 5 "timeoutSeconds" 2 "failureThreshold" 2) "override" $rd.probes.readiness) | nindent 2 }}
livenessProbe:
  {{- include "winemeup.probe" (dict "default" (dict "httpGet" (dict "path" "/livez" "port" "http") "periodSeconds" 10 "timeoutSeconds" 2 "failureThreshold" 3) "override" $rd.probes.liveness) | nindent 2 }}
{{- end }}

{{/* Component label of one model's candidate runner: runner-lightgbm-candidate. */}}
{{- define "winemeup.candidateComponent" -}}
{{- printf "%s-candidate" (include "winemeup.runnerComponent" .) }}
{{- end }}

{{/* Name of one model's candidate runner objects. Usage: (dict "ctx" $ "model" "lightgbm") */}}
{{- define "winemeup.candidateName" -}}
{{- include "winemeup.componentName" (dict "ctx" .ctx "suffix" (include "winemeup.candidateComponent" .model)) }}
{{- end }}

{{/*
One candidate runner's settings: the stable runner's (winemeup.runnerValues) with the
candidate's image merged over the stable image, its own model source (modelUri + modelSha256,
or none: the image's model) and the store version it serves.
Usage: include "winemeup.candidateValues" (dict "ctx" $ "model" "lightgbm") | fromYaml
*/}}
{{- define "winemeup.candidateValues" -}}
{{- $r := include "winemeup.runnerValues" . | fromYaml }}
{{- $c := (index .ctx.Values.models .model).candidate | default dict }}
{{- $_ := set $r "image" (mergeOverwrite $r.image (deepCopy (default dict $c.image))) }}
{{- $_ := set $r "modelUri" ($c.modelUri | default "") }}
{{- $_ := set $r "modelSha256" ($c.modelSha256 | default "") }}
{{- $_ := set $r "allowInsecureModelUri" ($c.allowInsecureModelUri | default false) }}
{{- $_ := set $r "version" ($c.version | default "") }}
{{- toYaml $r }}
{{- end }}

{{/*
The candidates the router serves (WINEMEUP_ROUTER_CANDIDATES), as JSON: router.rollouts.candidates
plus, for each runner model with models.<name>.candidate, {version, url} of its candidate
runner's Service (in both runners.managedBy modes: the operator creates the same Service).
*/}}
{{- define "winemeup.routerCandidates" -}}
{{- $candidates := deepCopy .Values.router.rollouts.candidates }}
{{- range $model := include "winemeup.runnerModels" . | fromJsonArray }}
{{- with (index $.Values.models $model).candidate }}
{{- $url := printf "http://%s.%s.svc:3000" (include "winemeup.candidateName" (dict "ctx" $ "model" $model)) $.Release.Namespace }}
{{- $_ := set $candidates $model (dict "version" .version "url" $url) }}
{{- end }}
{{- end }}
{{- toJson $candidates }}
{{- end }}
