{{- define "portcullis.name" -}}{{ .Release.Name }}-portcullis{{- end -}}
{{- define "portcullis.labels" -}}
app.kubernetes.io/name: portcullis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}
{{- define "portcullis.selector" -}}
app.kubernetes.io/name: portcullis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "portcullis.env" -}}
- name: PORTCULLIS_CONFIG
  value: /etc/portcullis/portcullis.toml
- name: PORTCULLIS_DATABASE__URL
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.database.name }}, key: {{ .Values.secrets.database.urlKey }}}
- name: PORTCULLIS_SECRETS__KEK
  valueFrom:
    secretKeyRef: {name: {{ .Values.secrets.kek.name }}, key: {{ .Values.secrets.kek.key }}}
{{- if .Values.secrets.tls }}
- name: PORTCULLIS_SERVER__TLS_CERT_FILE
  value: /etc/portcullis/tls/tls.crt
- name: PORTCULLIS_SERVER__TLS_KEY_FILE
  value: /etc/portcullis/tls/tls.key
{{- else }}
- name: PORTCULLIS_SERVER__PLAINTEXT
  value: "true"
{{- end }}
{{- end -}}
