#!/usr/bin/env bash
# bench/extproc_load's two clients (h2, grpc) against `infergate epp` on both gRPC transports and
# against its own --null-server: every stream of a short closed-loop run completes and passes the
# generator's checks (exit status 0). Ports are chosen by the servers (port 0) and read from logs.
#   extproc_load_smoke.sh INFERGATE EXTPROC_LOAD
set -euo pipefail
infergate=$1 load=$2
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# first_match FILE REGEX: the first match of REGEX in FILE, waiting up to 10 s for it.
first_match() {
  local match
  for _ in $(seq 200); do
    match=$(grep -oE "$2" "$1" | head -1 || true)
    if [ -n "$match" ]; then
      echo "$match"
      return
    fi
    sleep 0.05
  done
  echo "extproc_load_smoke: no '$2' in $1:" >&2
  cat "$1" >&2
  exit 1
}

run_load() {  # run_load CLIENT PORT
  echo "extproc_load --client $1 → 127.0.0.1:$2"
  "$load" --client "$1" --target "127.0.0.1:$2" --concurrency 8 --duration 0.5 --warmup 0.2 --json
}

"$infergate" sim --port 0 >"$dir/sim.log" 2>&1 &
pids+=($!)
sim=$(first_match "$dir/sim.log" 'http://127\.0\.0\.1:[0-9]+')
for transport in native callback; do
  "$infergate" epp --endpoints "${sim#http://}" --secure-serving=false --grpc-port 0 \
    --grpc-health-port 0 --metrics-port 0 --grpc-transport "$transport" \
    >"$dir/epp-$transport.log" 2>&1 &
  pids+=($!)
  port=$(first_match "$dir/epp-$transport.log" 'ext_proc on [0-9.]+:[0-9]+')
  for client in h2 grpc; do run_load "$client" "${port##*:}"; done
done
"$load" --null-server 0 >"$dir/null.log" 2>&1 &
pids+=($!)
port=$(first_match "$dir/null.log" 'null ext_proc server on [0-9.]+:[0-9]+')
for client in h2 grpc; do run_load "$client" "${port##*:}"; done
