{{- /*
One runner's Deployment, Service, autoscaler (HPA or KEDA ScaledObject) and PDB. runners.yaml
renders it for each model's stable runner and for its candidate (models.<name>.candidate,
issue 16): the candidate gets its own name and component label (selectors never overlap), the
track label `candidate` and WINEMEUP_RUNNER_VERSION, everything else the same.
Usage: include "winemeup.runnerObjects" (dict "ctx" $ "model" m "name" n "component" c
  "r" (runnerValues or candidateValues) "track" ""|"candidate")
*/}}
{{- define "winemeup.runnerObjects" -}}
{{- $ctx := .ctx }}
{{- $rd := $ctx.Values.runnerDefaults }}
{{- $model := .model }}
{{- $r := .r }}
{{- $name := .name }}
{{- $component := .component }}
{{- $image := include "winemeup.image" (dict "ctx" $ctx "image" $r.image) }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "winemeup.labels" (dict "ctx" $ctx "component" $component) | nindent 4 }}
    winemeup.io/tier: runner
    winemeup.io/model: {{ $model }}
    {{- with .track }}
    winemeup.io/track: {{ . }}
    {{- end }}
spec:
  {{- if not $r.autoscaling.enabled }}
  replicas: {{ $r.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "winemeup.selectorLabels" (dict "ctx" $ctx "component" $component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "winemeup.podLabels" (dict "ctx" $ctx "component" $component "extra" $rd.podLabels) | nindent 8 }}
        winemeup.io/tier: runner
        winemeup.io/model: {{ $model }}
        {{- with .track }}
        winemeup.io/track: {{ . }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $ctx.Template.BasePath "/runner-configmap.yaml") $ctx | sha256sum }}
        checksum/secret: {{ include "winemeup.secretChecksum" $ctx }}
        {{- with $rd.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "winemeup.podCommon" $ctx | nindent 6 }}
      terminationGracePeriodSeconds: {{ $rd.terminationGracePeriodSeconds }}
      {{- with $r.scheduling.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- if $r.modelUri }}
      initContainers:
        # Fetches the model's export archive, checks its SHA-256, imports it with
        # import-models.sh (docker/import-models.sh) into the emptyDir the runner reads.
        - name: model-fetch
          image: {{ $image | quote }}
          imagePullPolicy: {{ $r.image.pullPolicy }}
          command:
            - python
            - -m
            - services.runner.fetch_model
            - --model
            - {{ $model | quote }}
            - --uri
            - {{ $r.modelUri | quote }}
            - --sha256
            - {{ $r.modelSha256 | quote }}
            {{- if $r.allowInsecureModelUri }}
            - --allow-insecure-http
            {{- end }}
            - --timeout-seconds
            - {{ $rd.modelFetch.timeoutSeconds | toString | quote }}
          env:
            - name: BENTOML_HOME
              value: /opt/winemeup/fetched
            - name: BENTOML_DO_NOT_TRACK
              value: "True"
            - name: TMPDIR
              value: /tmp
          securityContext:
            {{- toYaml $ctx.Values.containerSecurityContext | nindent 12 }}
          # The fetch's one-line reason becomes the termination message `kubectl describe`
          # and the operator's status show.
          terminationMessagePolicy: FallbackToLogsOnError
          resources:
            {{- toYaml $rd.modelFetch.resources | nindent 12 }}
          volumeMounts:
            - name: model-store
              mountPath: /opt/winemeup/fetched
            - name: model-download
              mountPath: /tmp
            {{- with $rd.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      {{- end }}
      containers:
        - name: runner
          image: {{ $image | quote }}
          imagePullPolicy: {{ $r.image.pullPolicy }}
          securityContext:
            {{- toYaml $ctx.Values.containerSecurityContext | nindent 12 }}
          ports:
            - name: http
              containerPort: 3000
              protocol: TCP
            # Prometheus scrapes here, apart from the API (the NetworkPolicy opens only this
            # port to Prometheus).
            - name: metrics
              containerPort: {{ $rd.metricsPort }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "winemeup.componentName" (dict "ctx" $ctx "suffix" "runner") }}
            {{- with $rd.extraEnvFrom }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          env:
            - name: WINEMEUP_RUNNER_MODEL
              value: {{ $model | quote }}
            {{- with $r.version }}
            # The candidate serves this model store version, not the latest.
            - name: WINEMEUP_RUNNER_VERSION
              value: {{ . | quote }}
            {{- end }}
            # Every call but the probes and /metrics must carry it: only the router has it.
            {{- include "winemeup.runnerTokenEnv" (dict "ctx" $ctx "name" "WINEMEUP_RUNNER_TOKEN") | nindent 12 }}
            {{- with $rd.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with $rd.lifecycle }}
          lifecycle:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- include "winemeup.runnerProbes" $ctx | nindent 10 }}
          resources:
            {{- toYaml $r.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            # BentoML wipes and rewrites its Prometheus multiprocess directory at start-up.
            - name: prometheus-multiproc
              mountPath: /opt/winemeup/bentoml/prometheus_multiproc_dir
            - name: bentoml-tmp
              mountPath: /opt/winemeup/bentoml/tmp
            {{- if $r.modelUri }}
            # The fetched model hides the store baked into the image.
            - name: model-store
              mountPath: /opt/winemeup/bentoml/models
              subPath: models
              readOnly: true
            {{- end }}
            {{- with $rd.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 256Mi
        - name: prometheus-multiproc
          emptyDir:
            sizeLimit: 64Mi
        - name: bentoml-tmp
          emptyDir:
            sizeLimit: 256Mi
        {{- if $r.modelUri }}
        - name: model-store
          emptyDir:
            sizeLimit: {{ $rd.modelFetch.storeSizeLimit }}
        - name: model-download
          emptyDir:
            sizeLimit: {{ $rd.modelFetch.downloadSizeLimit }}
        {{- end }}
        {{- with $rd.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $r.scheduling.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $r.scheduling.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $r.scheduling.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- include "winemeup.topologySpread" (dict "ctx" $ctx "component" $component "constraints" $r.scheduling.topologySpreadConstraints) | nindent 6 }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "winemeup.labels" (dict "ctx" $ctx "component" $component) | nindent 4 }}
    winemeup.io/tier: runner
    winemeup.io/model: {{ $model }}
    {{- with .track }}
    winemeup.io/track: {{ . }}
    {{- end }}
  {{- with $rd.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: ClusterIP
  selector:
    {{- include "winemeup.selectorLabels" (dict "ctx" $ctx "component" $component) | nindent 4 }}
  ports:
    - name: http
      port: 3000
      targetPort: http
      protocol: TCP
    - name: metrics
      port: {{ $rd.metricsPort }}
      targetPort: metrics
      protocol: TCP
{{- if and $r.autoscaling.enabled $r.autoscaling.keda.enabled }}
---
# CPU plus requests waiting on this runner per pod (the router's in-flight gauge, recorded by
# the PrometheusRule); KEDA owns the HPA it creates from this.
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $name }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "winemeup.labels" (dict "ctx" $ctx "component" $component) | nindent 4 }}
    winemeup.io/tier: runner
    winemeup.io/model: {{ $model }}
    {{- with .track }}
    winemeup.io/track: {{ . }}
    {{- end }}
spec:
  {{- include "winemeup.kedaSpec" (dict "ctx" $ctx "model" $model "name" $name "autoscaling" $r.autoscaling) | nindent 2 }}
{{- else if $r.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "winemeup.labels" (dict "ctx" $ctx "component" $component) | nindent 4 }}
    winemeup.io/tier: runner
    winemeup.io/model: {{ $model }}
    {{- with .track }}
    winemeup.io/track: {{ . }}
    {{- end }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $r.autoscaling.minReplicas }}
  maxReplicas: {{ $r.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $r.autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      # A runner holds a model in memory: scale in slowly.
      stabilizationWindowSeconds: 300
{{- end }}
{{- if $rd.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "winemeup.labels" (dict "ctx" $ctx "component" $component) | nindent 4 }}
    winemeup.io/tier: runner
    winemeup.io/model: {{ $model }}
    {{- with .track }}
    winemeup.io/track: {{ . }}
    {{- end }}
spec:
  maxUnavailable: {{ $rd.podDisruptionBudget.maxUnavailable }}
  {{- include "winemeup.unhealthyPodEvictionPolicy" (dict "ctx" $ctx "pdb" $rd.podDisruptionBudget) | nindent 2 }}
  selector:
    matchLabels:
      {{- include "winemeup.selectorLabels" (dict "ctx" $ctx "component" $component) | nindent 6 }}
{{- end }}
{{- end }}
