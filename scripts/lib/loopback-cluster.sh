# Shell functions for a cluster on loopback: `infergate sim` replicas and two gateways in front of
# them, `infergate serve` with GIE's default profile and the same gateway with only the
# round-robin picker. Sourced by scripts/demo, scripts/bench-routing and scripts/lib/pgo-train.sh,
# and by scripts/bench-gateway for its round-robin config (bash, `set -euo pipefail`).
#
#   cluster_init BIN                  the infergate binary; installs the EXIT / INT / TERM traps
#   cluster_start_sims PORT N ARGS..  N replicas on PORT, PORT+1, ... with `infergate sim ARGS`;
#                                     sets cluster_sims (host:port) and cluster_metrics (URLs)
#   cluster_start_gateways PORT_A PORT_B
#                                     infergate (default profile) on PORT_A, round robin on PORT_B,
#                                     both in front of cluster_sims; waits until both answer
#   cluster_reset_command             prints a shell command that empties every replica's prefix
#                                     cache (POST /reset_prefix_cache), for `bench --before-each`
#   cluster_stop                      stops every process started here (also run on exit)
#   cluster_wait_ready URL            polls URL until it answers 2xx (10 s at most), else exits 1

cluster_bin="" cluster_pids=() cluster_sims=() cluster_metrics=()

# The round robin a plain Kubernetes Service gives, as an EndpointPickerConfig.
cluster_round_robin_config='apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: round-robin-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: round-robin-picker'

cluster_stop() {  # gateways first (last started), so that they do not log the replicas going
  local i
  for ((i = ${#cluster_pids[@]} - 1; i >= 0; i--)); do
    kill "${cluster_pids[i]}" 2>/dev/null || true
    wait "${cluster_pids[i]}" 2>/dev/null || true
  done
  cluster_pids=() cluster_sims=() cluster_metrics=()
}

cluster_init() {
  cluster_bin="$1"
  trap cluster_stop EXIT
  trap 'exit 130' INT TERM
}

cluster_wait_ready() {
  local _
  for _ in $(seq 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done
  echo "$(basename "$0"): $1 did not come up" >&2
  exit 1
}

cluster_start_sims() {
  local port_base="$1" count="$2" i port sim
  shift 2
  for ((i = 0; i < count; i++)); do
    port=$((port_base + i))
    "$cluster_bin" sim --port "$port" "$@" &
    cluster_pids+=($!)
    cluster_sims+=("127.0.0.1:$port")
    cluster_metrics+=("http://127.0.0.1:$port/metrics")
  done
  for sim in "${cluster_sims[@]}"; do cluster_wait_ready "http://$sim/health"; done
}

cluster_start_gateways() {
  local infergate_port="$1" round_robin_port="$2" endpoints
  endpoints=$(IFS=,; echo "${cluster_sims[*]}")
  "$cluster_bin" serve --host 127.0.0.1 --port "$infergate_port" --endpoints "$endpoints" \
    --access-log=false --log-level warn &
  cluster_pids+=($!)
  "$cluster_bin" serve --host 127.0.0.1 --port "$round_robin_port" --endpoints "$endpoints" \
    --config-text "$cluster_round_robin_config" --access-log=false --log-level warn &
  cluster_pids+=($!)
  cluster_wait_ready "http://127.0.0.1:$infergate_port/v1/models"
  cluster_wait_ready "http://127.0.0.1:$round_robin_port/v1/models"
}

cluster_reset_command() {
  local reset="" sim
  for sim in "${cluster_sims[@]}"; do
    reset+="curl -sf -X POST http://$sim/reset_prefix_cache >/dev/null && "
  done
  echo "${reset}true"
}
