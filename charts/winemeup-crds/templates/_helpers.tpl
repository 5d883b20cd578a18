{{/* Metadata every CRD of this chart shares: labels and the keep policy. */}}
{{- define "winemeup-crds.metadata" -}}
labels:
  app.kubernetes.io/name: {{ .Chart.Name }}
  app.kubernetes.io/instance: {{ .Release.Name }}
  app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
  app.kubernetes.io/managed-by: {{ .Release.Service }}
  app.kubernetes.io/part-of: winemeup
  helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
  {{- with .Values.commonLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- if .Values.keep }}
annotations:
  # Deleting the CRD would delete every WineModel and, through owner references, every runner.
  helm.sh/resource-policy: keep
{{- end }}
{{- end }}
