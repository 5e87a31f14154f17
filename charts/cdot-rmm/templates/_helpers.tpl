{{/* Chart name, truncated to 63 characters. */}}
{{- define "cdot-rmm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: RELEASE-CHART unless the release name already contains the chart name. */}}
{{- define "cdot-rmm.fullname" -}}
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

{{- define "cdot-rmm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cdot-rmm.labels" -}}
helm.sh/chart: {{ include "cdot-rmm.chart" . }}
app.kubernetes.io/name: {{ include "cdot-rmm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cdot-rmm
{{- end }}

{{/* Selector labels; pass (dict "ctx" $ "component" "operator"). */}}
{{- define "cdot-rmm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cdot-rmm.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "cdot-rmm.operatorName" -}}
{{- printf "%s-operator" (include "cdot-rmm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cdot-rmm.agentServiceName" -}}
{{- printf "%s-agent" (include "cdot-rmm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cdot-rmm.collectorName" -}}
{{- printf "%s-collector" (include "cdot-rmm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cdot-rmm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cdot-rmm.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespace whose API-token Secrets may grant other namespaces. */}}
{{- define "cdot-rmm.systemNamespace" -}}
{{- default .Release.Namespace .Values.operator.systemNamespace }}
{{- end }}

{{/* Secret name and key of DATABASE_URL. */}}
{{- define "cdot-rmm.databaseSecretName" -}}
{{- if .Values.database.url }}
{{- printf "%s-database" (include "cdot-rmm.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- required "database.existingSecret (a Secret with the PostgreSQL URL) or database.url is required" .Values.database.existingSecret }}
{{- end }}
{{- end }}

{{- define "cdot-rmm.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* URL scheme of the main listener. */}}
{{- define "cdot-rmm.scheme" -}}
{{- if .Values.operator.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* Agent API URL the in-cluster collector enrolls with. */}}
{{- define "cdot-rmm.agentUrl" -}}
{{- printf "https://%s.%s.svc:%d" (include "cdot-rmm.agentServiceName" .) .Release.Namespace (int .Values.operator.agentService.port) }}
{{- end }}

{{/* Names of the agent listener's certificate: in-cluster DNS names plus agentHostnames. */}}
{{- define "cdot-rmm.agentHostnames" -}}
{{- $svc := include "cdot-rmm.agentServiceName" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- concat $names .Values.operator.agentHostnames | uniq | join "," }}
{{- end }}

{{/* RBAC rules of one section of files/rbac-rules.yaml, verbatim. */}}
{{- define "cdot-rmm.rules" -}}
{{- $all := .ctx.Files.Get "files/rbac-rules.yaml" | fromYaml }}
{{- if hasKey $all "Error" }}{{ fail (printf "files/rbac-rules.yaml: %s" $all.Error) }}{{ end }}
{{- $rules := required (printf "files/rbac-rules.yaml has no section %s" .section) (get $all .section) }}
{{- toYaml $rules }}
{{- end }}
