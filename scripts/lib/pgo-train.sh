#!/usr/bin/env bash
# The training run of a profile-guided build (scripts/build --pgo): drives an instrumented
# infergate through its request paths on loopback, then stops every process cleanly so that each
# writes its profile. Three `infergate sim` replicas (no model time) behind `infergate serve` with
# GIE's default profile and with the round-robin picker; streamed requests from `infergate
# bench`, and whole JSON completions from wrk when it is installed (else a shorter curl loop).
#   scripts/lib/pgo-train.sh BIN [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$1" seconds="${2:-6}"
source scripts/lib/loopback-cluster.sh

port_base=$((30000 + RANDOM % 20000))
model="meta-llama/Llama-3.1-8B-Instruct"
work=$(mktemp -d)
cluster_init "$bin"
trap 'cluster_stop; rm -rf "$work"' EXIT
cluster_start_sims "$port_base" 3 --model "$model" --time-scale 100000 --step-fixed-ms 0 \
  --step-weights-read-ms 0 --frontend-ms 0 --num-gpu-blocks 600 --log-level warn
cluster_start_gateways $((port_base + 3)) $((port_base + 4))

for port in $((port_base + 3)) $((port_base + 4)); do
  "$bin" bench --url "http://127.0.0.1:$port" --model "$model" --workload shared-prefix \
    --concurrency 16 --duration "$seconds" --warmup 1 --output-tokens 16 --no-progress \
    --progress-interval 0 >"$work/bench-$port.txt"
done

prompt=$(printf 'the quick brown fox jumps over a lazy dog %.0s' $(seq 20))
body="{\"model\": \"$model\", \"prompt\": \"$prompt\", \"max_tokens\": 16}"
url="http://127.0.0.1:$((port_base + 3))/v1/completions"
if command -v wrk >/dev/null; then
  printf '%s' "$body" >"$work/body.json"
  cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open("$work/body.json", "rb"))
wrk.body = file:read("*a")
file:close()
LUA
  wrk -t1 -c32 -d"${seconds}s" -s "$work/post.lua" "$url" >"$work/wrk.txt"
else
  for _ in $(seq 500); do
    curl -sf -o /dev/null -H 'Content-Type: application/json' -d "$body" "$url"
  done
fi
echo "pgo-train: done"
