{{/* Names. The webhook configuration is cluster-scoped and named once per cluster. */}}
{{- define "swiftfed.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "swiftfed.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "swiftfed.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "swiftfed.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "swiftfed.operatorName" -}}
{{- printf "%s-operator" (include "swiftfed.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "swiftfed.webhookService" -}}
{{- printf "%s-webhook" (include "swiftfed.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "swiftfed.webhookConfiguration" -}}swiftfed-sidecar-injector{{- end -}}

{{- define "swiftfed.webhookCertSecret" -}}
{{- if .Values.certManager.enabled -}}
{{- printf "%s-webhook-cert" (include "swiftfed.fullname" .) -}}
{{- else -}}
{{- .Values.webhook.secretName -}}
{{- end -}}
{{- end -}}

{{- define "swiftfed.certificate" -}}
{{- printf "%s-webhook" (include "swiftfed.fullname" .) -}}
{{- end -}}

{{- define "swiftfed.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "swiftfed.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "swiftfed.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "swiftfed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "swiftfed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "swiftfed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "swiftfed.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "swiftfed.sidecarImage" -}}
{{- printf "%s:%s" .Values.sidecar.image.repository (default .Chart.AppVersion .Values.sidecar.image.tag) -}}
{{- end -}}

{{/* Namespaces the webhook never touches: the system ones and the operator's own, so the
     operator can always start even while no replica serves the webhook. */}}
{{- define "swiftfed.excludedNamespaces" -}}
- key: kubernetes.io/metadata.name
  operator: NotIn
  values: [kube-system, kube-public, kube-node-lease, {{ .Release.Namespace | quote }}]
{{- end -}}
