#!/usr/bin/env bash
# `make demo`: a simulated Kubernetes node built from network namespaces on this machine, the real
# agent attached inside it, real traffic on every path, and the counts it saw.
#
#   usage: [PIPELINE=collector] bash scripts/demo.sh PATH/TO/otel-netprobe PATH/TO/demo-cluster
#          (root; ~30 s)
#
# PIPELINE picks where the agent's OTLP goes; the lab, the traffic and the PromQL answers are the
# same either way:
#   direct     (default) OTLP/HTTP straight into VictoriaMetrics: nothing else to run, fast.
#   collector  what a cluster install runs: OTLP/gRPC into the real OpenTelemetry Collector
#              (otelcol-netprobe, built by `make setup`) running collector-config/otelcol.yaml,
#              whose Prometheus exporter a real Prometheus scrapes every second (honor_labels,
#              as the chart's ServiceMonitor does); the PromQL is asked of that Prometheus.
#
# Lab (every name is prefixed with npdemo<pid>- so runs never collide; nothing is created or changed
# in the root namespace and no packet leaves the lab):
#
#   pod0 10.244.0.11 ─┐                                   node                          outside
#   pod1 10.244.0.12 ─┼─ vethpod0..2 ── br0 10.244.0.1 ── (forwarding) ── eth0 10.99.0.1 ── eth0 10.99.0.2
#   pod2 10.244.0.13 ─┘                                   agent here
#                                                         kube-apiserver + etcd on its 127.0.0.1:6443
#                                                         VictoriaMetrics on its 127.0.0.1:8428
#                                                         (collector: the Collector, Prometheus :9090)
#
# The node's Kubernetes API is the real kube-apiserver with etcd (built by `make setup`), started on
# the node's loopback by demo-cluster (otel-netprobe/examples/demo-cluster: the test suite's harness,
# tests/common/kubeapi/). The pods are real API objects there — Deployments checkout and web (each
# with its ReplicaSet), StatefulSet db, pods bound to the node with their addresses in their status,
# and Service web (ClusterIP 10.96.0.10:80 -> web's 8080 and its EndpointSlice, translated by
# nftables in the node as kube-proxy would) — and the chart is installed into it (`helm install`):
# the agent reads the API with a token of the chart's own ServiceAccount, so it names both ends of
# every flow with exactly a cluster install's permissions. The agent also pushes its metrics over OTLP/HTTP
# (every second) into a VictoriaMetrics started inside the node namespace (installed by `make
# setup`); the demo ends with PromQL queries on it, by address and by workload. Connections too:
# db drops the first SYN of each connection to :5432 (nftables), so handshakes take ~1 s and the
# drops carry the kernel's reason; connects to a closed port are refused; UDP to a closed port is
# dropped and answered by ICMP errors. Each count is set against the kernels' own counters.
# Everything started here is stopped, and every namespace deleted, on exit, on failure and on Ctrl-C.
set -euo pipefail

BIN=${1:-}
CLUSTER_BIN=${2:-}
if [ -z "$BIN" ] || [ ! -x "$BIN" ] || [ -z "$CLUSTER_BIN" ] || [ ! -x "$CLUSTER_BIN" ]; then
  echo "usage: $0 PATH/TO/otel-netprobe PATH/TO/demo-cluster  (executables; see make demo)" >&2
  exit 2
fi
BIN=$(readlink -f "$BIN")
CLUSTER_BIN=$(readlink -f "$CLUSTER_BIN")
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root (it creates network namespaces and loads eBPF programs)" >&2
  exit 2
fi
for tool in ip iperf3 ping socat curl ss nft; do
  command -v "$tool" >/dev/null 2>&1 || { echo "demo: '$tool' is missing (run: make setup)" >&2; exit 2; }
done
command -v python3 >/dev/null 2>&1 || { echo "demo: 'python3' is missing" >&2; exit 2; }
TOOLS_DIR="${NETPROBE_TOOLS_DIR:-$HOME/.cache/otel-netprobe}"
TOOLS_BIN="$TOOLS_DIR/bin"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PIPELINE=${PIPELINE:-direct}
case "$PIPELINE" in
  direct) NEEDED=(kube-apiserver etcd victoria-metrics) ;;
  collector) NEEDED=(kube-apiserver etcd otelcol-netprobe prometheus) ;;
  *) echo "demo: PIPELINE=$PIPELINE: use direct (the default) or collector" >&2; exit 2 ;;
esac
for tool in "${NEEDED[@]}"; do
  if [ ! -x "$TOOLS_BIN/$tool" ]; then
    echo "demo: $tool is missing at $TOOLS_BIN/$tool (run: make setup)" >&2
    exit 2
  fi
done
# demo-cluster installs the chart with the Helm v4 SDK from this venv.
if [ ! -x "$TOOLS_DIR/venv/bin/python" ]; then
  echo "demo: the Helm SDK's venv is missing at $TOOLS_DIR/venv (run: make setup)" >&2
  exit 2
fi
VM="$TOOLS_BIN/victoria-metrics"
if [ "$PIPELINE" = collector ]; then BACKEND_NAME="the Collector, Prometheus"; else BACKEND_NAME=VictoriaMetrics; fi

PREFIX="npdemo$$-"
NODE="${PREFIX}node"
OUTSIDE="${PREFIX}outside"
PODS=("${PREFIX}pod0" "${PREFIX}pod1" "${PREFIX}pod2")
POD_IP=(10.244.0.11 10.244.0.12 10.244.0.13)
POD_IP6=(fd00:244::11 fd00:244::12 fd00:244::13)
NODE_BR=10.244.0.1
NODE_BR6=fd00:244::1
NODE_UP=10.99.0.1
OUTSIDE_IP=10.99.0.2
OUTSIDE_IP6=fd00:99::2
LISTEN=127.0.0.1:9464
URL="http://$LISTEN"
POLL=500ms
VM_URL="http://127.0.0.1:8428"   # inside the node namespace
PROM_URL="http://127.0.0.1:9090" # inside the node namespace (PIPELINE=collector)
COLLECTOR_CONFIG="$ROOT/collector-config/otelcol.yaml"
API_URL=https://127.0.0.1:6443    # inside the node namespace
CLUSTER_IP=10.96.0.10

WORK=$(mktemp -d "/tmp/${PREFIX}XXXXXX")
AGENT_LOG="$WORK/agent.log"
CREATED_NS=()   # namespaces to delete
BG_PIDS=()      # servers and receivers to stop
AGENT_PID=""
API_PID=""
API_LOG="$WORK/demo-cluster.log"
VM_PID=""
VM_DATA=""
VM_LOG="$WORK/victoria-metrics.log"
COL_PID=""
COL_LOG="$WORK/otelcol.log"
PROM_PID=""
PROM_LOG="$WORK/prometheus.log"
STEP="starting"
T0=$SECONDS

say() { printf '\n== %s ==\n' "$*"; }
info() { printf '   %s\n' "$*"; }
step() { STEP="$*"; printf -- '-- %s\n' "$*"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# --- tear-down ------------------------------------------------------------------------------------
stop_pid() { # PID [grace-seconds]: SIGTERM, wait, then SIGKILL
  local pid=$1 grace=${2:-1} i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "   (pid $pid ignored SIGTERM; sending SIGKILL)"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local pid ns
  if [ -n "$AGENT_PID" ]; then
    stop_pid "$AGENT_PID" 5
    AGENT_PID=""
  fi
  # After the agent (whose last export on shutdown goes to it): VictoriaMetrics, then its data.
  if [ -n "$VM_PID" ]; then
    stop_pid "$VM_PID" 5
    VM_PID=""
  fi
  if [ -n "$VM_DATA" ]; then
    rm -rf "$VM_DATA"
    VM_DATA=""
  fi
  if [ -n "$COL_PID" ]; then
    stop_pid "$COL_PID" 5
    COL_PID=""
  fi
  if [ -n "$PROM_PID" ]; then
    stop_pid "$PROM_PID" 5
    PROM_PID=""
  fi
  # demo-cluster stops kube-apiserver and etcd on SIGTERM and removes their data (under $WORK).
  if [ -n "$API_PID" ]; then
    stop_pid "$API_PID" 30
    API_PID=""
  fi
  for pid in "${BG_PIDS[@]}"; do stop_pid "$pid" 1; done
  BG_PIDS=()
  # Anything still inside a lab namespace was started by this script (a child of a child).
  for ns in "${CREATED_NS[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  CREATED_NS=()
  rm -rf "$WORK"
}

on_exit() {
  local rc=$? vm_lines
  # A second Ctrl-C (or make's SIGTERM) must not cut the clean-up short.
  trap - EXIT
  trap '' INT TERM HUP
  set +e
  if [ "$rc" -eq 130 ] || [ "$rc" -eq 143 ]; then
    echo "demo: stopped by a signal during step: $STEP" >&2
  elif [ "$rc" -ne 0 ]; then
    echo
    echo "demo: FAILED (exit $rc) during step: $STEP" >&2
    if [ -s "$AGENT_LOG" ]; then
      echo "demo: last lines of the agent's log:" >&2
      tail -n 20 "$AGENT_LOG" | sed 's/^/   | /' >&2
    fi
    if [[ "$STEP" == *"Kubernetes API"* ]] && [ -s "$API_LOG" ]; then
      echo "demo: last lines of demo-cluster's output (kube-apiserver and etcd's logs are in it on a failure):" >&2
      tail -n 40 "$API_LOG" | sed 's/^/   | /' >&2
    fi
    if [[ "$STEP" == *Collector* ]] && [ -s "$COL_LOG" ]; then
      echo "demo: last lines of the Collector's log:" >&2
      tail -n 10 "$COL_LOG" | sed 's/^/   | /' >&2
    fi
    if [[ "$STEP" == *VictoriaMetrics* ]] && [ -s "$VM_LOG" ]; then
      # Its info lines (start-up, one per force_flush) say nothing about a failure.
      vm_lines=$(grep -vE '^[0-9TZ:.-]+[[:space:]]+info[[:space:]]' "$VM_LOG" | tail -n 10)
      if [ -n "$vm_lines" ]; then
        echo "demo: last warnings and errors in VictoriaMetrics' log:" >&2
        printf '%s\n' "$vm_lines" | sed 's/^/   | /' >&2
      fi
    fi
  fi
  echo
  echo "-- cleaning up: stopping the agent, $BACKEND_NAME, the Kubernetes API and traffic tools, deleting the ${PREFIX}* namespaces"
  cleanup
  exit "$rc"
}
trap on_exit EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT
trap 'echo; echo "demo: terminated" >&2; exit 143' TERM

# Poll CMD... until it succeeds or DEADLINE seconds pass (no blind sleeps).
wait_for() {
  local what=$1 deadline=$2; shift 2
  local end=$((SECONDS + deadline))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$end" ]; then
      echo "demo: timed out after ${deadline}s waiting for $what" >&2
      return 1
    fi
    sleep 0.1
  done
}

bg_in() { # NS CMD...: start a server/receiver in NS in the background and remember it
  local ns=$1; shift
  ip netns exec "$ns" "$@" </dev/null >>"$WORK/tools.log" 2>&1 &
  BG_PIDS+=("$!")
}
listening() { # NS tcp|udp PORT
  local flag=-Hltn
  [ "$2" = udp ] && flag=-Hlun
  [ -n "$(ip netns exec "$1" ss "$flag" "sport = :$3")" ]
}

# --- 1. the lab -----------------------------------------------------------------------------------
# Namespaces a killed (SIGKILL) earlier run may have left behind: delete them if their run is gone.
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^npdemo[0-9]+-' || true); do
  owner=${ns#npdemo}; owner=${owner%%-*}
  if ! kill -0 "$owner" 2>/dev/null && [ -z "$(ip netns pids "$ns" 2>/dev/null)" ]; then
    ip netns del "$ns" 2>/dev/null && echo "-- removed namespace $ns left by an earlier, killed run"
  fi
done

say "Building a simulated Kubernetes node in network namespaces (${PREFIX}*)"
step "creating namespaces"
for ns in "$NODE" "$OUTSIDE" "${PODS[@]}"; do
  ip netns add "$ns"
  CREATED_NS+=("$ns")
  in_ns "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  ip -n "$ns" link set lo up
done

# The Kubernetes API takes a few seconds to start: it starts now, in the node namespace, and gets
# ready while the links, the backend and the agent are set up.
step "writing the lab's Kubernetes objects (lab.yaml)"
cat >"$WORK/lab.yaml" <<LAB
nodes:
  - {name: demo-node, addresses: [$NODE_UP, $NODE_BR]}
deployments:
  - namespace: shop
    name: checkout
    hash: 6f7c
    pods: [{name: checkout-6f7c-x2k9p, node: demo-node, ips: [${POD_IP[0]}, "${POD_IP6[0]}"]}]
  - namespace: shop
    name: web
    hash: 5d8b
    pods: [{name: web-5d8b-q8w4r, node: demo-node, ips: [${POD_IP[1]}, "${POD_IP6[1]}"]}]
statefulsets:
  - namespace: data
    name: db
    pods: [{name: db-0, node: demo-node, ips: [${POD_IP[2]}, "${POD_IP6[2]}"]}]
services:
  - {namespace: shop, name: web, cluster_ip: $CLUSTER_IP, port: 80, target_port: 8080, endpoints: [${POD_IP[1]}]}
LAB
step "starting the Kubernetes API in the background (demo-cluster: kube-apiserver, etcd, the lab, helm install)"
info "ip netns exec $NODE demo-cluster --netns $NODE --lab lab.yaml --kubeconfig kubeconfig"
# TMPDIR: its certificates and etcd's data go under $WORK, removed on exit whatever happens.
TMPDIR="$WORK" ip netns exec "$NODE" "$CLUSTER_BIN" --netns "$NODE" --lab "$WORK/lab.yaml" \
  --kubeconfig "$WORK/kubeconfig" </dev/null >"$API_LOG" 2>&1 &
API_PID=$!

step "node: bridge br0 and forwarding"
in_ns "$NODE" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip -n "$NODE" link add br0 type bridge
ip -n "$NODE" addr add "$NODE_BR/24" dev br0
ip -n "$NODE" addr add "$NODE_BR6/64" dev br0 nodad
ip -n "$NODE" link set br0 up

for i in 0 1 2; do
  step "pod$i: veth vethpod$i <-> eth0, ${POD_IP[$i]}"
  pod=${PODS[$i]}
  # Created inside the node namespace, the peer moved straight into the pod: the root namespace
  # never sees either end.
  ip -n "$NODE" link add "vethpod$i" type veth peer name eth0 netns "$pod"
  ip -n "$NODE" link set "vethpod$i" master br0
  ip -n "$NODE" link set "vethpod$i" up
  ip -n "$pod" addr add "${POD_IP[$i]}/24" dev eth0
  ip -n "$pod" addr add "${POD_IP6[$i]}/64" dev eth0 nodad
  ip -n "$pod" link set eth0 up
  ip -n "$pod" route add default via "$NODE_BR"
  ip -n "$pod" -6 route add default via "$NODE_BR6"
done

step "outside: uplink veth eth0 <-> eth0, $NODE_UP <-> $OUTSIDE_IP"
ip -n "$NODE" link add eth0 type veth peer name eth0 netns "$OUTSIDE"
ip -n "$NODE" addr add "$NODE_UP/24" dev eth0
ip -n "$NODE" addr add fd00:99::1/64 dev eth0 nodad
ip -n "$NODE" link set eth0 up
ip -n "$OUTSIDE" addr add "$OUTSIDE_IP/24" dev eth0
ip -n "$OUTSIDE" addr add "$OUTSIDE_IP6/64" dev eth0 nodad
ip -n "$OUTSIDE" link set eth0 up
ip -n "$OUTSIDE" route add 10.244.0.0/24 via "$NODE_UP"
ip -n "$OUTSIDE" route add 10.96.0.0/16 via "$NODE_UP"
ip -n "$OUTSIDE" -6 route add fd00:244::/64 via fd00:99::1

step "waiting for the links to come up"
wait_for "pod0 -> outside reachability" 10 in_ns "${PODS[0]}" ping -c 1 -W 1 "$OUTSIDE_IP"
info "node ${NODE}: br0 $NODE_BR (ports vethpod0..2), uplink eth0 $NODE_UP"
info "pods: ${POD_IP[*]}   outside: $OUTSIDE_IP"

step "node: Service web's ClusterIP $CLUSTER_IP:80 -> ${POD_IP[1]}:8080 (nftables DNAT, kube-proxy's part)"
in_ns "$NODE" nft -f - <<NFT
table ip netprobe_demo {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr $CLUSTER_IP tcp dport 80 dnat to ${POD_IP[1]}:8080
  }
}
NFT

# --- 2. the backend, the Kubernetes API and the agent ---------------------------------------------
cat >"$WORK/netprobe.yaml" <<CONFIG
k8s:
  mode: cluster
  kubeconfig: $WORK/kubeconfig
  cluster_cidrs: [10.244.0.0/16, 10.96.0.0/16]
metrics:
  # The default with Kubernetes (workload level), plus the addresses so that the per-path table
  # below can pick out each path.
  flow_attributes: [source.address, destination.address, source.k8s.namespace.name,
    source.k8s.workload.name, source.k8s.workload.kind, destination.k8s.namespace.name,
    destination.k8s.workload.name, destination.k8s.workload.kind, destination.k8s.service.name,
    destination.port, network.transport, network.type]
CONFIG
start_collector() {
  say "Starting the OpenTelemetry Collector and Prometheus inside the node namespace"
  step "starting the Collector (otelcol-netprobe $("$TOOLS_BIN/otelcol-netprobe" --version | awk '{print $NF}'))"
  info "ip netns exec $NODE otelcol-netprobe --config collector-config/otelcol.yaml"
  ip netns exec "$NODE" "$TOOLS_BIN/otelcol-netprobe" --config "$COLLECTOR_CONFIG" </dev/null >"$COL_LOG" 2>&1 &
  COL_PID=$!
  step "waiting for the Collector's health check (:13133)"
  end=$((SECONDS + 30))
  until in_ns "$NODE" curl -sf -o /dev/null --max-time 1 http://127.0.0.1:13133/; do
    if ! kill -0 "$COL_PID" 2>/dev/null; then
      wait "$COL_PID" 2>/dev/null && rc=0 || rc=$?
      COL_PID=""
      echo "demo: the Collector exited (status $rc) before becoming healthy" >&2
      exit 1
    fi
    [ "$SECONDS" -lt "$end" ] || { echo "demo: the Collector did not become healthy within 30 s" >&2; exit 1; }
    sleep 0.1
  done
  info "Collector healthy (pid $COL_PID): OTLP on :4317/:4318, Prometheus exporter on :8889"
  step "starting Prometheus (scrapes the Collector's :8889 every second)"
  mkdir -p "$WORK/prometheus"
  cat >"$WORK/prometheus/prometheus.yml" <<PROM
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: otel-collector
    honor_labels: true   # the agents' job/instance as the exporter sets them (collector-config/README.md)
    static_configs:
      - targets: ['127.0.0.1:8889']
PROM
  ip netns exec "$NODE" "$TOOLS_BIN/prometheus" --config.file="$WORK/prometheus/prometheus.yml" \
    --storage.tsdb.path="$WORK/prometheus/data" --web.listen-address=127.0.0.1:9090 \
    </dev/null >"$PROM_LOG" 2>&1 &
  PROM_PID=$!
  wait_for "Prometheus $PROM_URL/-/ready" 30 in_ns "$NODE" curl -sf -o /dev/null --max-time 1 "$PROM_URL/-/ready"
  info "Prometheus ready (pid $PROM_PID)"
  OTLP_ARGS=(--otlp-endpoint http://127.0.0.1:4317 --otlp-protocol grpc)
  BACKEND_URL=$PROM_URL
}

start_victoria_metrics() {
  say "Starting VictoriaMetrics (the OTLP backend) inside the node namespace"
  step "starting VictoriaMetrics"
  VM_DATA=$(mktemp -d "/tmp/${PREFIX}vm-data-XXXXXX")
  # -search.latencyOffset=0s and -search.disableCache: a point is queryable as soon as it is flushed.
  VM_ARGS=(-storageDataPath="$VM_DATA" -httpListenAddr=127.0.0.1:8428 -opentelemetry.usePrometheusNaming
    -search.latencyOffset=0s -search.disableCache -retentionPeriod=1d)
  info "ip netns exec $NODE victoria-metrics ${VM_ARGS[*]}"
  ip netns exec "$NODE" "$VM" "${VM_ARGS[@]}" </dev/null >"$VM_LOG" 2>&1 &
  VM_PID=$!
  step "waiting for VictoriaMetrics $VM_URL/health"
  end=$((SECONDS + 20))
  until in_ns "$NODE" curl -sf -o /dev/null --max-time 1 "$VM_URL/health"; do
    if ! kill -0 "$VM_PID" 2>/dev/null; then
      wait "$VM_PID" 2>/dev/null && rc=0 || rc=$?
      VM_PID=""
      echo "demo: VictoriaMetrics exited (status $rc) before becoming healthy" >&2
      exit 1
    fi
    [ "$SECONDS" -lt "$end" ] || { echo "demo: VictoriaMetrics did not become healthy within 20 s" >&2; exit 1; }
    sleep 0.1
  done
  info "VictoriaMetrics healthy (pid $VM_PID), data in $VM_DATA"
  OTLP_ARGS=(--otlp-endpoint "$VM_URL/opentelemetry" --otlp-protocol http/protobuf)
  BACKEND_URL=$VM_URL
}

if [ "$PIPELINE" = collector ]; then start_collector; else start_victoria_metrics; fi

say "The lab in a real Kubernetes API (kube-apiserver and etcd on the node's $API_URL)"
step "waiting for the Kubernetes API: ready, the lab's objects made, the chart installed"
# demo-cluster writes the agent's kubeconfig last, once everything is in place.
end=$((SECONDS + 180))
until [ -s "$WORK/kubeconfig" ]; do
  if ! kill -0 "$API_PID" 2>/dev/null; then
    wait "$API_PID" 2>/dev/null && rc=0 || rc=$?
    API_PID=""
    echo "demo: demo-cluster exited (status $rc) before the Kubernetes API was ready" >&2
    exit 1
  fi
  [ "$SECONDS" -lt "$end" ] || { echo "demo: the Kubernetes API was not ready within 180 s" >&2; exit 1; }
  sleep 0.1
done
sed 's/^/   /' "$API_LOG"
info "node demo-node; namespace shop: Deployments checkout (pod0) and web (pod1), Service web -> web;"
info "namespace data: StatefulSet db (pod2); the outside host is outside the cluster"

say "Starting the agent inside the node namespace"
step "starting otel-netprobe"
# The uplink eth0 is a veth here; on a real node it is a NIC, where XDP is the default. Force XDP
# on it so the demo shows both entry points: XDP on the uplink, TC on the pod veths.
# OTEL_METRIC_EXPORT_INTERVAL (ms): push every second; K8S_NODE_NAME becomes k8s.node.name.
info "OTEL_METRIC_EXPORT_INTERVAL=1000 K8S_NODE_NAME=demo-node \\"
info "  ip netns exec $NODE $(basename "$BIN") run --config netprobe.yaml --listen $LISTEN \\"
info "  --poll-interval $POLL --hook eth0=xdp --log warn \\"
info "  ${OTLP_ARGS[*]}"
OTEL_METRIC_EXPORT_INTERVAL=1000 K8S_NODE_NAME=demo-node \
  ip netns exec "$NODE" "$BIN" run --config "$WORK/netprobe.yaml" --listen "$LISTEN" --poll-interval "$POLL" \
  --hook eth0=xdp --log warn \
  "${OTLP_ARGS[@]}" </dev/null >"$AGENT_LOG" 2>&1 &
AGENT_PID=$!
agent_healthy() {
  kill -0 "$AGENT_PID" 2>/dev/null || return 2
  in_ns "$NODE" curl -sf -o /dev/null --max-time 1 "$URL/healthz"
}
step "waiting for $URL/healthz"
end=$((SECONDS + 20))
until agent_healthy; do
  if ! kill -0 "$AGENT_PID" 2>/dev/null; then
    wait "$AGENT_PID" 2>/dev/null && rc=0 || rc=$?
    AGENT_PID=""
    echo "demo: the agent exited (status $rc) before becoming healthy" >&2
    exit 1
  fi
  [ "$SECONDS" -lt "$end" ] || { echo "demo: the agent did not become healthy within 20 s" >&2; exit 1; }
  sleep 0.1
done
info "agent healthy (pid $AGENT_PID) after $((SECONDS - T0)) s since start of demo"
k8s_synced() { in_ns "$NODE" curl -sf --max-time 1 "$URL/metrics" | grep -qx 'netprobe_agent_k8s_synced 1'; }
step "waiting until the agent has listed the Kubernetes API (netprobe_agent_k8s_synced 1)"
wait_for "the agent's Kubernetes index" 20 k8s_synced
info "the agent's Kubernetes index is synced: flow ends are named"

# --- 3. traffic -----------------------------------------------------------------------------------
say "Generating traffic on every path (TCP, UDP, ICMP)"
P0=${PODS[0]} P1=${PODS[1]} P2=${PODS[2]}
UDP_COUNT=20
PING_COUNT=5

step "starting servers and receivers"
bg_in "$P1" iperf3 -s -1 -p 5201                                  # pod0 -> pod1 TCP
bg_in "$OUTSIDE" iperf3 -s -1 -p 5202                             # pod2 -> outside TCP
# Each path is its own pair of addresses, so that every count below belongs to exactly one path.
# name | from ns | to ns | source address | destination | UDP port | TCP port | TCP tool
PATHS=(
  "pod0->pod1|$P0|$P1|${POD_IP[0]}|${POD_IP[1]}|7000|5201|iperf3"
  "pod1->node|$P1|$NODE|${POD_IP[1]}|$NODE_BR|7001|8001|socat"
  "pod2->outside|$P2|$OUTSIDE|${POD_IP[2]}|$OUTSIDE_IP|7002|5202|iperf3"
  "outside->pod0|$OUTSIDE|$P0|$OUTSIDE_IP|${POD_IP[0]}|7003|8003|socat"
  "node->outside|$NODE|$OUTSIDE|$NODE_UP|$OUTSIDE_IP|7004|8004|socat"
)
for p in "${PATHS[@]}"; do
  IFS='|' read -r _ _ to _ _ uport tport tool <<<"$p"
  bg_in "$to" socat -u "UDP-RECV:$uport" /dev/null
  [ "$tool" = socat ] && bg_in "$to" socat -u "TCP-LISTEN:$tport,reuseaddr,fork" /dev/null
done
bg_in "$P1" socat -u "TCP-LISTEN:8080,reuseaddr,fork" /dev/null  # Service web's backend
wait_for "web's server on :8080" 10 listening "$P1" tcp 8080
for p in "${PATHS[@]}"; do
  IFS='|' read -r name _ to _ _ uport tport _ <<<"$p"
  wait_for "UDP receiver for $name" 10 listening "$to" udp "$uport"
  wait_for "TCP server for $name" 10 listening "$to" tcp "$tport"
done

step "TCP: iperf3 pod0 -> pod1 (2 s, through the bridge)"
in_ns "$P0" iperf3 -c "${POD_IP[1]}" -p 5201 -t 2 -f m | grep -E 'sender|receiver' | sed 's/^/   /'
step "TCP: iperf3 pod2 -> outside (1 s, routed by the node)"
in_ns "$P2" iperf3 -c "$OUTSIDE_IP" -p 5202 -t 1 -f m | grep -E 'sender|receiver' | sed 's/^/   /'

for p in "${PATHS[@]}"; do
  IFS='|' read -r name from _ _ dst uport tport tool <<<"$p"
  step "$name: ping x$PING_COUNT, UDP x$UDP_COUNT to :$uport$([ "$tool" = socat ] && echo ", TCP 64 KiB to :$tport")"
  in_ns "$from" ping -q -c "$PING_COUNT" -i 0.2 -W 1 "$dst" | grep -E 'packets transmitted' | sed 's/^/   /'
  # One datagram per line: socat reads at most a line's length at a time (-b), so lines that
  # wait in the pipe together (a busy machine) still leave as one datagram each.
  for ((i = 1; i <= UDP_COUNT; i++)); do printf 'netprobe demo datagram %02d\n' "$i"; done |
    in_ns "$from" socat -u -b "$(printf 'netprobe demo datagram 00\n' | wc -c)" - "UDP:$dst:$uport"
  if [ "$tool" = socat ]; then
    head -c 65536 /dev/zero | in_ns "$from" socat -u - "TCP:$dst:$tport"
  fi
done
step "outside -> Service web: TCP 64 KiB to its ClusterIP $CLUSTER_IP:80 (the node translates it to web's :8080)"
head -c 65536 /dev/zero | in_ns "$OUTSIDE" socat -u - "TCP:$CLUSTER_IP:80"
step "ICMPv6: ping pod0 -> outside ($OUTSIDE_IP6)"
in_ns "$P0" ping -6 -q -c "$PING_COUNT" -i 0.2 -W 1 "$OUTSIDE_IP6" | grep -E 'packets transmitted' | sed 's/^/   /'

say "Connections, handshake latency, drops and ICMP errors"
# db (pod2) drops the first SYN of every connection to :5432 with an nftables rule (a set of the
# client address and port seen): each client waits for its SYN retransmission, a ~1 s handshake.
step "db: nftables drops the first SYN of each connection to :5432 (a ~1 s handshake each)"
in_ns "$P2" nft -f - <<'NFT'
table inet netprobe_demo {
  set seen { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 10m; }
  chain in {
    type filter hook input priority 0; policy accept;
    tcp dport 5432 tcp flags syn ip saddr . tcp sport @seen accept
    tcp dport 5432 tcp flags syn add @seen { ip saddr . tcp sport } counter drop
  }
}
NFT
bg_in "$P2" socat -u "TCP-LISTEN:5432,reuseaddr,fork" /dev/null
wait_for "db's server on :5432" 10 listening "$P2" tcp 5432
SLOW=3 REFUSED=4 CLOSED_UDP=5
step "TCP: $SLOW connections pod0 -> db:5432 at once (each waits for its retransmitted SYN)"
slow_pids=()
for ((i = 0; i < SLOW; i++)); do
  head -c 4096 /dev/zero | in_ns "$P0" socat -u - "TCP:${POD_IP[2]}:5432" &
  slow_pids+=("$!")
done
for pid in "${slow_pids[@]}"; do wait "$pid"; done
step "TCP: $REFUSED connects pod0 -> web:9 (nothing listens: refused by RST)"
for ((i = 0; i < REFUSED; i++)); do
  in_ns "$P0" socat -u /dev/null "TCP:${POD_IP[1]}:9,connect-timeout=2" 2>/dev/null || true
done
step "UDP: $CLOSED_UDP datagrams pod0 -> db:9999 (no socket: dropped, answered by ICMP port unreachable)"
# Unconnected (UDP-SENDTO): the ICMP errors do not stop it; -b: one line, one datagram.
for ((i = 1; i <= CLOSED_UDP; i++)); do printf 'to nobody %02d\n' "$i"; done |
  in_ns "$P0" socat -u -b "$(printf 'to nobody 00\n' | wc -c)" - "UDP-SENDTO:${POD_IP[2]}:9999"
RULE_DROPS=$(in_ns "$P2" nft list chain inet netprobe_demo in | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
snmp() { # NS SECTION FIELD: a counter of the namespace's /proc/net/snmp, by name
  in_ns "$1" awk -v sec="$2:" -v f="$3" '$1 == sec { if (!n) { for (i = 2; i <= NF; i++) col[$i] = i; n = 1 } else print $col[f] }' /proc/net/snmp
}
ICMP_SENT=$(snmp "$P2" Icmp OutDestUnreachs)
info "db's nftables rule dropped $RULE_DROPS first SYNs; db sent $ICMP_SENT ICMP destination-unreachable messages"

# --- 4. results -----------------------------------------------------------------------------------
say "Waiting for the agent to read the kernel maps"
step "polling /api/v1/summary until the packet total is stable"
total_packets() {
  in_ns "$NODE" curl -sf --max-time 2 "$URL/api/v1/summary" |
    sed -n 's/.*"total":{"packets":\([0-9]*\).*/\1/p'
}
prev=-1 stable=0 total=0 end=$((SECONDS + 15))
while [ "$SECONDS" -lt "$end" ]; do
  total=$(total_packets || true)
  total=${total:-0}
  if [ "$total" = "$prev" ] && [ "$total" -gt 0 ]; then
    stable=$((stable + 1))
    [ "$stable" -ge 2 ] && break   # unchanged over two poll intervals
  else
    stable=0
  fi
  prev=$total
  sleep 0.5
done
info "total packets seen: $total"

say "Traffic summary  (otel-netprobe summary --url $URL)"
step "reading the summary"
in_ns "$NODE" "$BIN" summary --url "$URL"

step "reading /metrics"
METRICS="$WORK/metrics.txt"
in_ns "$NODE" curl -sf --max-time 5 "$URL/metrics" >"$METRICS"

say "Packets per path, from /metrics (client -> server direction only)"
# Sum of METRIC over the series matching every given label (label="value"), as an integer.
metric_sum() {
  local metric=$1; shift
  awk -v want="$*" -v m="$metric{" '
    BEGIN { n = split(want, w, " ") }
    index($0, m) == 1 {
      ok = 1
      for (i = 1; i <= n; i++) if (!index($0, w[i] ",") && !index($0, w[i] "}")) ok = 0
      if (ok) sum += $NF
    }
    END { printf "%d", sum }' "$METRICS"
}
series_packets() { metric_sum netprobe_flow_packets_total "$@"; }
printf '   %-16s %-13s %-13s %12s %6s %6s  %s\n' path source destination "tcp (data)" udp icmp check
zero_paths=() odd_paths=()
for p in "${PATHS[@]}"; do
  IFS='|' read -r name _ _ src dst uport tport tool <<<"$p"
  pair="source_address=\"$src\" destination_address=\"$dst\""
  tcp=$(series_packets "$pair" "destination_port=\"$tport\"" 'network_transport="tcp"')
  udp=$(series_packets "$pair" "destination_port=\"$uport\"" 'network_transport="udp"')
  icmp=$(series_packets "$pair" 'network_transport="icmp"')
  check=ok
  [ "$udp" -eq "$UDP_COUNT" ] && [ "$icmp" -eq "$PING_COUNT" ] || { check="MISMATCH"; odd_paths+=("$name"); }
  [ "$tcp" -gt 0 ] && [ "$udp" -gt 0 ] && [ "$icmp" -gt 0 ] || { check="ZERO"; zero_paths+=("$name"); }
  printf '   %-16s %-13s %-13s %12s %6s %6s  %s\n' "$name" "$src" "$dst" "$tcp" "$udp" "$icmp" "$check"
done
icmp6=$(series_packets "source_address=\"${POD_IP6[0]}\"" "destination_address=\"$OUTSIDE_IP6\"" 'network_transport="icmpv6"')
check=ok
[ "$icmp6" -eq "$PING_COUNT" ] || { check="MISMATCH"; odd_paths+=("pod0->outside(IPv6)"); }
[ "$icmp6" -gt 0 ] || { check="ZERO"; zero_paths+=("pod0->outside(IPv6)"); }
printf '   %-16s %-13s %-13s %12s %6s %6s  %s\n' "pod0->outside v6" "${POD_IP6[0]}" "$OUTSIDE_IP6" - - "$icmp6" "$check"
info "sent on each path: $UDP_COUNT UDP datagrams and $PING_COUNT echo requests (the counts should match exactly);"
info "TCP: iperf3 for pod0->pod1 and pod2->outside, 64 KiB over socat elsewhere (wire packets, handshake included)"

say "Connections, handshakes, drops and ICMP errors, from /metrics"
to_db="source_address=\"${POD_IP[0]}\" destination_address=\"${POD_IP[2]}\""
slow="$to_db destination_port=\"5432\""
opened=$(metric_sum netprobe_tcp_connections_opened_total "$slow")
retrans=$(metric_sum netprobe_tcp_syn_retransmits_total "$slow")
hs_count=$(metric_sum netprobe_tcp_handshake_duration_seconds_count "$slow")
hs_ms=$(awk -v want="$slow" 'BEGIN { n = split(want, w, " ") }
  index($0, "netprobe_tcp_handshake_duration_seconds_sum{") == 1 {
    ok = 1; for (i = 1; i <= n; i++) if (!index($0, w[i] ",") && !index($0, w[i] "}")) ok = 0
    if (ok) s += $NF }
  END { printf "%d", s * 1000 }' "$METRICS")
refused=$(metric_sum netprobe_tcp_connections_failed_total "source_address=\"${POD_IP[0]}\"" \
  "destination_address=\"${POD_IP[1]}\"" 'destination_port="9"' 'netprobe_tcp_failure_reason="refused"')
syn_drops=$(metric_sum netprobe_packet_drops_total "$slow")
udp_drops=$(metric_sum netprobe_packet_drops_total "$to_db" 'destination_port="9999"')
icmp_errors=$(metric_sum netprobe_icmp_errors_total "$to_db" 'destination_port="9999"')
CONN_CHECKS=()
conn_row() { # what counted expected
  local check=ok
  [ "$2" -eq "$3" ] || { check=MISMATCH; CONN_CHECKS+=("$1"); }
  printf '   %-58s %8s %8s  %s\n' "$1" "$2" "$3" "$check"
}
printf '   %-58s %8s %8s  %s\n' "" counted expected check
conn_row "pod0 -> db:5432 connections opened" "$opened" "$SLOW"
conn_row "pod0 -> db:5432 SYN retransmissions" "$retrans" "$SLOW"
conn_row "pod0 -> db:5432 handshakes observed" "$hs_count" "$SLOW"
conn_row "pod0 -> db:5432 first SYNs dropped (db's nftables counter)" "$syn_drops" "$RULE_DROPS"
conn_row "pod0 -> web:9 connections refused" "$refused" "$REFUSED"
conn_row "pod0 -> db:9999 UDP datagrams dropped (no socket)" "$udp_drops" "$CLOSED_UDP"
conn_row "pod0 -> db:9999 ICMP errors (db's OutDestUnreachs)" "$icmp_errors" "$ICMP_SENT"
if [ "$hs_count" -gt 0 ]; then
  info "mean handshake pod0 -> db:5432: $((hs_ms / hs_count)) ms (each waited for a retransmitted SYN: ~1 s)"
fi
grep -E '^netprobe_packet_drops_total\{' "$METRICS" | sed 's/^/   /' || true
grep -E '^netprobe_tcp_handshake_duration_seconds_bucket\{.*destination_port="5432"' "$METRICS" |
  grep -E 'le="(0.001|0.5|1|2.5|\+Inf)"' | sed 's/^/   /' || true

say "Prometheus /metrics: netprobe_flow_packets_total (a few series)"
grep -E "^netprobe_flow_packets_total\{source_address=\"${POD_IP[0]}\",destination_address=\"${POD_IP[1]}\"" "$METRICS" | sed 's/^/   /' || true
grep -E "^netprobe_flow_packets_total\{source_address=\"(${POD_IP[1]}|$NODE_UP|$OUTSIDE_IP)\",destination_address=\"($NODE_BR|$OUTSIDE_IP|${POD_IP[0]})\".*network_transport=\"udp\"" "$METRICS" | sed 's/^/   /' || true
grep -E "^netprobe_flow_packets_total\{.*network_type=\"ipv6\"" "$METRICS" | grep -F "$OUTSIDE_IP6" | sed 's/^/   /' || true

say "Prometheus /metrics: netprobe_packet_size_bytes (pod0->pod1 TCP data, iperf3)"
grep -E "^netprobe_packet_size_bytes_(bucket|sum|count)\{source_address=\"${POD_IP[0]}\",destination_address=\"${POD_IP[1]}\".*destination_port=\"5201\"" "$METRICS" | sed 's/^/   /' || true

say "Prometheus /metrics: which hook each interface of the node got"
grep -E '^netprobe_agent_interface_info' "$METRICS" | sed 's/^/   /' || true
grep -E '^netprobe_agent_(interfaces|attach_errors_total|read_errors_total)' "$METRICS" | sed 's/^/   /' || true

if [ "$PIPELINE" = collector ]; then
  QB=Prometheus
  say "PromQL from Prometheus (agent -> OTLP/gRPC -> the Collector's exporter -> scraped)"
else
  QB=VictoriaMetrics
  say "PromQL from VictoriaMetrics (pushed over OTLP/HTTP)"
fi
vm_flush() { # make everything VictoriaMetrics has ingested searchable now (Prometheus: at once)
  [ "$PIPELINE" = collector ] && return 0
  in_ns "$NODE" curl -sf -o /dev/null --max-time 2 "$VM_URL/internal/force_flush"
}
vm_query() { # PROMQL: the /api/v1/query answer (JSON) on stdout
  in_ns "$NODE" curl -sf --max-time 5 -G "$BACKEND_URL/api/v1/query" --data-urlencode "query=$1"
}
vm_series() { # PROMQL: the number of series in the answer
  vm_query "$1" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["data"]["result"]))'
}
vm_value() { # PROMQL: the value of a single-series answer as an integer, empty if none
  vm_query "$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(int(float(r[0]["value"][1])) if r else "")'
}
vm_table() { # PROMQL [LABEL...]: the answer as a table: the given labels (default: all) and value
  local q=$1; shift
  info "query: $q"
  vm_query "$q" | python3 -c '
import json, sys
res = json.load(sys.stdin)["data"]["result"]
cols = sys.argv[1:] or sorted({k for r in res for k in r["metric"]})
rows = [[r["metric"].get(c, "") for c in cols] + [r["value"][1]] for r in res]
head = cols + ["value"]
w = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head)]
for row in [head] + sorted(rows):
    print("   " + "  ".join(v.rjust(w[i]) if i == len(head) - 1 else v.ljust(w[i])
                             for i, v in enumerate(row)).rstrip())
if not rows:
    print("   (no series)")' "$@"
}

step "$QB: polling for the pod0->pod1 series"
vm_flush
PAIR_Q="sum by (source_address, destination_address, network_transport) (netprobe_flow_packets_total{source_address=\"${POD_IP[0]}\",destination_address=\"${POD_IP[1]}\"})"
have_pair() { vm_flush && [ "$(vm_series "$PAIR_Q")" -gt 0 ]; }
if ! wait_for "the pod0 -> pod1 series in $QB" 20 have_pair; then
  names=$(in_ns "$NODE" curl -sf --max-time 5 "$BACKEND_URL/api/v1/label/__name__/values" |
    python3 -c 'import json, sys; print(" ".join(n for n in json.load(sys.stdin)["data"] if "netprobe" in n))' || true)
  echo "demo: $QB holds these netprobe metric names: ${names:-none}" >&2
  exit 1
fi
vm_table "$PAIR_Q" source_address destination_address network_transport
echo
vm_table "netprobe_flow_bytes_total{destination_port=\"5201\"}" \
  source_address destination_address destination_port network_transport k8s_node_name service_name

# The agent's own count for the iperf3 flow against the pushed one. The two can differ by what the
# agent read after its last export, so: wait until /metrics stops changing, then until
# the backend holds that same value.
step "comparing the pod0->pod1 iperf3 TCP count: agent /metrics vs $QB"
FLOW_SEL="source_address=\"${POD_IP[0]}\",destination_address=\"${POD_IP[1]}\",destination_port=\"5201\",network_transport=\"tcp\""
FLOW_Q="sum(netprobe_flow_packets_total{$FLOW_SEL})"
agent_flow_packets() {
  in_ns "$NODE" curl -sf --max-time 2 "$URL/metrics" >"$WORK/metrics.now" || return 1
  METRICS="$WORK/metrics.now" series_packets "source_address=\"${POD_IP[0]}\"" \
    "destination_address=\"${POD_IP[1]}\"" 'destination_port="5201"' 'network_transport="tcp"'
}
prev=-1 agent_n=0 end=$((SECONDS + 10))
while [ "$SECONDS" -lt "$end" ]; do
  agent_n=$(agent_flow_packets || echo -1)
  [ "$agent_n" = "$prev" ] && [ "$agent_n" -gt 0 ] && break   # unchanged over a poll interval
  prev=$agent_n
  sleep 0.6
done
vm_n="" end=$((SECONDS + 10))
while :; do
  vm_flush || true
  vm_n=$(vm_value "$FLOW_Q" || true)
  [ "$vm_n" = "$agent_n" ] && break
  [ "$SECONDS" -lt "$end" ] || break
  sleep 0.3
done
info "query: $FLOW_Q"
if [ "$vm_n" = "$agent_n" ]; then
  VM_AGREE="agree ($agent_n packets)"
  info "agent /metrics and $QB agree: $agent_n packets"
else
  VM_AGREE="DIFFER (agent /metrics ${agent_n}, $QB ${vm_n:-none})"
  info "agent /metrics: $agent_n packets, $QB: ${vm_n:-no value} (they differ after 10 s)"
fi

say "PromQL by workload: what the default attributes give (no addresses, no client ports)"
step "$QB: TCP packets, client -> server, by namespace / workload / service"
vm_table "sum by (source_k8s_namespace_name, source_k8s_workload_name, destination_k8s_namespace_name, destination_k8s_workload_name, destination_k8s_workload_kind, destination_k8s_service_name, destination_port) (netprobe_flow_packets_total{network_transport=\"tcp\",destination_port!=\"\"})" \
  source_k8s_namespace_name source_k8s_workload_name destination_k8s_namespace_name \
  destination_k8s_workload_name destination_k8s_workload_kind destination_k8s_service_name destination_port
echo
vm_table "netprobe_k8s_pods" k8s_namespace_name
info "(default and otel-netprobe hold Services but no pods: the API server's own kubernetes Service, the chart's)"
SVC_Q="sum(netprobe_flow_packets_total{source_k8s_workload_name=\"external\",destination_k8s_workload_kind=\"Service\",destination_k8s_service_name=\"web\",destination_port=\"80\"})"
svc_n=$(vm_value "$SVC_Q" || true)
info "outside -> Service web: ${svc_n:-no} packets attributed to the service ($SVC_Q)"

say "PromQL: handshake latency and drops by workload and reason"
step "$QB: handshake p50 / p99 by server workload, drops by reason"
vm_flush || true
vm_table "histogram_quantile(0.5, sum by (le, destination_k8s_workload_name) (netprobe_tcp_handshake_duration_seconds_bucket))" destination_k8s_workload_name
vm_table "histogram_quantile(0.99, sum by (le, destination_k8s_workload_name) (netprobe_tcp_handshake_duration_seconds_bucket))" destination_k8s_workload_name
vm_table "sum by (source_k8s_workload_name, destination_k8s_workload_name, netprobe_drop_reason) (netprobe_packet_drops_total)" \
  source_k8s_workload_name destination_k8s_workload_name netprobe_drop_reason
vm_table "sum by (netprobe_tcp_failure_reason, destination_k8s_workload_name, destination_port) (netprobe_tcp_connections_failed_total)" \
  netprobe_tcp_failure_reason destination_k8s_workload_name destination_port

STEP="checking the results"
say "Result"
if [ "$total" -le 0 ]; then
  echo "demo: the agent reported zero packets" >&2
  exit 1
fi
if [ "${#zero_paths[@]}" -gt 0 ]; then
  info "WARNING: a protocol with no packets counted on: ${zero_paths[*]} (worth a bug report)"
fi
if [ "${#odd_paths[@]}" -gt 0 ]; then
  info "WARNING: UDP/ICMP counts differ from what was sent on: ${odd_paths[*]}"
fi
info "OTLP push ($PIPELINE) into $QB: pod0->pod1 iperf3 count $VM_AGREE"
if [ -z "$svc_n" ] || [ "$svc_n" -le 0 ]; then
  echo "demo: the traffic to Service web's ClusterIP was not attributed to the service" >&2
  exit 1
fi
info "Kubernetes names: traffic to Service web's ClusterIP attributed to it ($svc_n packets)"
if [ "$opened" -le 0 ] || [ "$hs_count" -le 0 ] || [ "$syn_drops" -le 0 ] || [ "$udp_drops" -le 0 ]; then
  echo "demo: connections, handshakes or drops were not counted (opened $opened, handshakes $hs_count, drops $syn_drops + $udp_drops)" >&2
  exit 1
fi
if [ "${#CONN_CHECKS[@]}" -gt 0 ]; then
  info "WARNING: connection/drop counts differ from what the kernels say on: ${CONN_CHECKS[*]}"
fi
info "connections: $opened opened with ~1 s handshakes, $refused refused; drops: $syn_drops by nftables, $udp_drops without a socket"
info "OK: $total packets counted in $(grep -c '^netprobe_flow_packets_total{' "$METRICS") flow series; demo took $((SECONDS - T0)) s"
