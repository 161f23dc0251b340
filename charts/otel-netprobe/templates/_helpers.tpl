{{/* Names, labels and the values every template derives from. */}}

{{- define "netprobe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "netprobe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "netprobe.collectorName" -}}
{{- printf "%s-collector" (include "netprobe.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "netprobe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "netprobe.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; "component" says which part of the install it is. */}}
{{- define "netprobe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "netprobe.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: otel-netprobe
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "netprobe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netprobe.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
An image reference from {registry, repository, tag, digest}: `registry/repository@digest` when a
digest is given (it wins over the tag: a digest pins the exact image a tag may later move off),
else `registry/repository:tag` (`.default` when the tag is empty). Call with
(dict "image" <values> "default" <tag>).
*/}}
{{- define "netprobe.imageRef" -}}
{{- $i := .image -}}
{{- $repo := $i.repository -}}
{{- with $i.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .) $repo }}{{ end -}}
{{- if $i.digest -}}
{{- printf "%s@%s" $repo $i.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .default $i.tag) -}}
{{- end -}}
{{- end -}}

{{- define "netprobe.image" -}}
{{- include "netprobe.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) -}}
{{- end -}}

{{/*
Refuses settings that leave the kubelet's probes (and `helm test`, and the ServiceMonitor)
nothing to ask: the probes are HTTP GETs of /healthz on the node's address, so the server must
be on and listen there. Refused rather than turned into exec probes: an exec probe would start a
second copy of the agent's binary every few seconds, and a server nobody can reach also leaves
/metrics unscraped.
*/}}
{{- define "netprobe.checkProbes" -}}
{{- $http := dig "http" dict (.Values.agent.config | default dict) -}}
{{- if eq (toString (dig "enabled" true $http)) "false" -}}
{{- fail "agent.config.http.enabled: false leaves the liveness and readiness probes (GET /healthz), helm test and the ServiceMonitor nothing to ask; keep the server on (bind it to the node's address with agent.listenOn: hostIP)" -}}
{{- end -}}
{{- $listen := toString (dig "listen" "0.0.0.0:9464" $http) -}}
{{- if or (hasPrefix "127." $listen) (hasPrefix "[::1]" $listen) (hasPrefix "localhost" $listen) -}}
{{- fail (printf "agent.config.http.listen: %s is loopback, which the kubelet's probes (GET /healthz on the node's address) cannot reach; use agent.listenOn: hostIP to serve on the node's address only" $listen) -}}
{{- end -}}
{{- if and (eq .Values.agent.listenOn "hostIP") (not (has (regexReplaceAll ":[0-9]+$" $listen "") (list "0.0.0.0" "[::]"))) -}}
{{- fail (printf "agent.listenOn: hostIP sets the listen address itself; agent.config.http.listen (%s) may only choose the port, as 0.0.0.0:PORT or [::]:PORT" $listen) -}}
{{- end -}}
{{- end -}}

{{/* The agent's HTTP port (/metrics, /healthz), from agent.config.http.listen when given. */}}
{{- define "netprobe.agentPort" -}}
{{- $listen := dig "http" "listen" "0.0.0.0:9464" (.Values.agent.config | default dict) -}}
{{- last (splitList ":" $listen) -}}
{{- end -}}

{{/* The Collector's OTLP port for the agents' protocol. */}}
{{- define "netprobe.collectorOtlpPort" -}}
{{- if eq .Values.collector.protocol "grpc" -}}4317{{- else -}}4318{{- end -}}
{{- end -}}

{{/*
The agent's configuration file: agent.config, plus the endpoint of this release's Collector and
the cluster name. The agent validates the result at start (and `check-config` in the chart tests).
*/}}
{{- define "netprobe.agentConfig" -}}
{{- $cfg := deepCopy (.Values.agent.config | default dict) -}}
{{- $otlp := $cfg.otlp | default dict -}}
{{- if and .Values.collector.enabled (not $otlp.endpoint) -}}
{{- $_ := set $otlp "endpoint" (printf "http://%s.%s.svc:%s" (include "netprobe.collectorName" .) .Release.Namespace (include "netprobe.collectorOtlpPort" .)) -}}
{{- $_ := set $otlp "protocol" .Values.collector.protocol -}}
{{- end -}}
{{- if .Values.agent.clusterName -}}
{{- $_ := set $otlp "cluster_name" .Values.agent.clusterName -}}
{{- end -}}
{{- if $otlp -}}
{{- $_ := set $cfg "otlp" $otlp -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* GOMEMLIMIT: 80 % of the Collector's memory limit (Mi or Gi). */}}
{{- define "netprobe.goMemLimit" -}}
{{- $limits := .Values.collector.resources.limits | default dict -}}
{{- if not $limits.memory -}}
{{- fail "collector.resources.limits.memory is required (e.g. 512Mi): the Collector's memory_limiter works in percentages of it and GOMEMLIMIT is 80 % of it; without a limit the Collector grows until the node kills it" -}}
{{- end -}}
{{- $mem := toString $limits.memory -}}
{{- $mib := 0 -}}
{{- if hasSuffix "Gi" $mem -}}
{{- $mib = mul (trimSuffix "Gi" $mem | atoi) 1024 -}}
{{- else if hasSuffix "Mi" $mem -}}
{{- $mib = trimSuffix "Mi" $mem | atoi -}}
{{- end -}}
{{- if le $mib 0 -}}
{{- fail (printf "collector.resources.limits.memory: %q must be a whole number of Mi or Gi (GOMEMLIMIT is derived from it)" $mem) -}}
{{- end -}}
{{- printf "%dMiB" (div (mul $mib 80) 100) -}}
{{- end -}}

{{- /* The agent's affinity (YAML, empty for none): the user's agent.affinity with the image's
architectures ANDed in. The node-local Collector uses it too, to run on exactly the agents'
nodes. */ -}}
{{- define "netprobe.agentAffinity" -}}
{{- $affinity := deepCopy (.Values.agent.affinity | default dict) }}
{{- with .Values.agent.architectures }}
{{- /* Only nodes of an architecture the image has: elsewhere the pod would crash-loop
  with "exec format error". ANDed into every term of the user's own required node
  affinity (terms are ORed), so theirs still applies. */}}
{{- $arch := dict "key" "kubernetes.io/arch" "operator" "In" "values" . }}
{{- $node := $affinity.nodeAffinity | default dict }}
{{- $required := $node.requiredDuringSchedulingIgnoredDuringExecution | default dict }}
{{- $terms := list }}
{{- range ($required.nodeSelectorTerms | default (list dict)) }}
{{- $exprs := append (.matchExpressions | default list) $arch }}
{{- $terms = append $terms (merge (dict "matchExpressions" $exprs) (omit . "matchExpressions")) }}
{{- end }}
{{- $_ := set $required "nodeSelectorTerms" $terms }}
{{- $_ := set $node "requiredDuringSchedulingIgnoredDuringExecution" $required }}
{{- $_ := set $affinity "nodeAffinity" $node }}
{{- end }}
{{- with $affinity }}{{ toYaml . }}{{ end }}
{{- end }}
