#!/usr/bin/env bash
# How many real-time 1080p25 cameras one box sustains at 10 analysed fps
# each (edge-agent/README.md, *Measured*).
#
#   edge-agent/bench/cameras.sh N [SECONDS]     # from the repository root
#
# Runs `edge-agent run` (release build) with N cameras, each the shared
# recording upscaled to 1920x1080 and re-encoded as H.264 at 6 Mbit/s, read
# at its own 25 fps (`realtime = true`), YOLOX-Nano, `analysis_fps = 10`,
# no broker (delivery retries in the background), and prints each camera's
# analysed fps from /metrics after SECONDS and 10 s later, with the peak
# RSS and the CPU time used (below saturation, the cost per camera).
# WRONG_WAY=true turns on the wrong-way rule, which the backwards
# half of the loop trips about every 1.6 s per camera: a violation storm
# that exercises evidence (decode, stills, clip) under load, and logs each
# violation's latency (`latency_ms`) in $OUT/log. WORKERS=N sets the
# post-processing workers (`[plates] workers`, 2 by default).
set -euo pipefail
N=${1:?usage: cameras.sh N [SECONDS]}
SECS=${2:-40}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
OUT=${OUT:-/tmp/edge-cameras/n$N}
VIDEO=${VIDEO:-/tmp/edge-cameras/cam1080.mp4}
PORT=${PORT:-9199}
# Another build to compare (an A/B): EDGE_AGENT=/path/to/edge-agent.
EDGE_AGENT=${EDGE_AGENT:-$ROOT/target/release/edge-agent}
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$ROOT/.deps/onnxruntime/lib/libonnxruntime.so}
export MODELS_DIR=${MODELS_DIR:-$ROOT/.models}

if [ ! -f "$VIDEO" ]; then
  mkdir -p "$(dirname "$VIDEO")"
  "$ROOT/.deps/pyvision/bin/python" "$ROOT/edge-agent/bench/make-1080p.py" \
      "$SHARED/data/video/thanglm20_nguoc_chieu.mp4" 7 |
    gst-launch-1.0 -q fdsrc fd=0 ! rawvideoparse width=1920 height=1080 format=bgr framerate=25/1 \
      ! videoconvert ! x264enc bitrate=6000 speed-preset=veryfast key-int-max=50 \
      ! video/x-h264,profile=main ! h264parse ! mp4mux ! filesink location="$VIDEO"
fi
(cd "$ROOT" && cargo build --release -q -p edge-agent)

rm -rf "$OUT"; mkdir -p "$OUT"
{
  cat <<T
[device]
id = "bench-edge"
site = "bench-site"
data_dir = "$OUT/data"
[mqtt]
url = "mqtt://127.0.0.1:1"
[health]
heartbeat_s = 5
metrics_listen = "127.0.0.1:$PORT"
[server]
public_keys = ["fd1724385aa0c75b64fb78cd602fa1d991fdebf76b13c58ed702eac835e9f618"]
[plates]
recognizer = "none"
workers = ${WORKERS:-2}
T
  for i in $(seq 1 "$N"); do
    # thanglm20-street.toml's carriageway, scaled to 1920x1080.
    cat > "$OUT/site$i.toml" <<S
camera_id = "cam-$i"
[frame]
width = 1920
height = 1080
[[lanes]]
id = "main"
polygon = [[318, 1079], [1739, 1079], [1372, 56], [1102, 56]]
heading_deg = -90
classes = ["car", "motorcycle", "bus", "truck"]
[rules.red_light]
enabled = false
[rules.stop_line]
enabled = false
[rules.wrong_lane]
enabled = false
[rules.wrong_way]
enabled = ${WRONG_WAY:-false}
S
    printf '[[cameras]]\nsource = "%s"\nsite = "%s"\ndetector = "yolox"\nrealtime = true\nanalysis_fps = 10\n' \
      "$VIDEO" "$OUT/site$i.toml"
  done
} > "$OUT/agent.toml"

"$EDGE_AGENT" run --config "$OUT/agent.toml" > "$OUT/log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true' EXIT
sleep "$SECS"
curl -s "http://127.0.0.1:$PORT/metrics" | grep '^edge_camera_fps' > "$OUT/fps1" || true
sleep 10
curl -s "http://127.0.0.1:$PORT/metrics" > "$OUT/metrics" || true
grep '^edge_camera_fps' "$OUT/metrics" > "$OUT/fps2" || true
PEAK=$(awk '/VmHWM/ {print $2 / 1024 " MB"}' "/proc/$PID/status" 2>/dev/null || echo "?")
# CPU seconds (user + system) the agent used over the whole run.
CPU=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f s", ($14 + $15) / hz}' "/proc/$PID/stat" 2>/dev/null || echo "?")
kill -TERM "$PID"; wait "$PID" || true
echo "cameras=$N peak_rss=$PEAK cpu=$CPU load=$(cut -d' ' -f1-3 /proc/loadavg)"
paste "$OUT/fps1" "$OUT/fps2" | awk '{printf "%s %.1f %.1f\n", $1, $2, $4}'
grep '^edge_evidence_ring_bytes' "$OUT/metrics" || true
