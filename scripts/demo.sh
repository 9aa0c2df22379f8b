#!/usr/bin/env bash
# `make demo`: the ingest server (embedded MQTT broker, SQLite, local
# evidence) and one edge agent on this machine, loopback only. The edge
# watches a rendered intersection (two red-light runners per 30 s, with
# photographed plates from ../shared/data/vn_crops_named when present) and,
# when ../shared/data/video/thanglm20_nguoc_chieu.mp4 exists (or SOURCE=...
# with SITE=... is given), that recording as a second camera. Violations are
# signed, delivered, verified, stored and priced; the script prints each case
# as the server's API returns it. Ctrl-C stops everything.
#
# The review console is at http://$HTTP/console/ with one demo account per
# role (a fresh password each run, printed below). The citizen app is at
# http://$HTTP/app/: citizens sign in through a TEST identity provider that
# this script starts on loopback (the OpenID Connect provider of the tests,
# ingest-server/tests/oidc/provider.js, on Node.js; not VNeID) with a few
# fictitious citizens, whose national ID numbers are those of the fictitious
# owners in scripts/demo-registry/ (imported before the server starts). The
# same provider offers console sign-in (SSO) for two fictitious officers.
# Without Node.js or tests/oidc/node_modules (`make setup-node`) the demo runs
# without it. The recording is served as a live RTSP stream by camera-sim
# (gst-rtsp-server, looping), as a real camera would serve it. The server runs
# its registry in demo mode (INGEST_REGISTRY_DEMO_MODE): a plate it does not
# know gets a clearly marked FICTITIOUS registration owned by one of the demo
# citizens, so cases reach the citizen app. Fines are paid through
# vnpay-sandbox, a stand-in for the VNPay gateway speaking its protocol (no
# money moves).
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO=${DEMO_DIR:-.data/demo}
HTTP=${DEMO_HTTP:-127.0.0.1:8080}
MQTT=${DEMO_MQTT:-127.0.0.1:1883}
IDP_PORT=${DEMO_IDP_PORT:-8081}
RTSP_PORT=${DEMO_RTSP_PORT:-8554}
PAY_PORT=${DEMO_PAY_PORT:-8082}
SHARED=${SHARED:-../shared}
SOURCE=${SOURCE:-}
SITE=${SITE:-}
BIN=target/debug

if [ -z "$SOURCE" ] && [ -f "$SHARED/data/video/thanglm20_nguoc_chieu.mp4" ]; then
  SOURCE="$SHARED/data/video/thanglm20_nguoc_chieu.mp4"
  SITE=edge-agent/sites/thanglm20-street.toml
fi
if [ -n "$SOURCE" ] && [ -z "$SITE" ]; then
  echo "demo: SOURCE=$SOURCE needs SITE=site.toml (the camera's site file; see edge-agent/examples/site.toml)" >&2
  exit 2
fi

rm -rf "$DEMO"
mkdir -p "$DEMO"
TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

PLATES=()
[ -f "$SHARED/data/vn_crops_named/labels.csv" ] && PLATES=(--plates "$SHARED/data/vn_crops_named")
"$BIN/edge-agent" scene --out "$DEMO/scene" "${PLATES[@]}"

{
  cat <<EOF
[device]
id = "demo-edge-01"
site = "demo-site"
data_dir = "$DEMO/edge"

[mqtt]
url = "mqtt://$MQTT"
# The embedded broker's login, issued at enrolment (the password is written
# to mqtt.pass below).
username = "demo-edge-01"
password_file = "$DEMO/mqtt.pass"
ack_timeout_s = 10

[health]
heartbeat_s = 5
metrics_listen = "127.0.0.1:9108"

[plates]
recognizer = "ppocr"

[[cameras]]
source = "$DEMO/scene/camera.mp4"
site = "$DEMO/scene/site.toml"
detector = "motion"
realtime = true
[cameras.motion]
analysis_width = 640
min_area = 1500.0
history = 5000
learning_rate = 0.0003
EOF
  if [ -n "$SOURCE" ]; then
    CAMERA_URL="$SOURCE"
    [ -f "$SOURCE" ] && CAMERA_URL="rtsp://127.0.0.1:$RTSP_PORT/cam1"
    cat <<EOF

[[cameras]]
source = "$CAMERA_URL"
site = "$SITE"
detector = "yolox"
realtime = true
EOF
  fi
} > "$DEMO/agent.toml"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

# Console accounts, one per role, with this run's password.
PASSWORD=$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')
for spec in "demo.operator:Điều hành viên Demo:operator" "demo.operator2:Điều hành viên Demo 2:operator" \
            "demo.police:CSGT Demo:police" "demo.supervisor:Giám sát Demo:supervisor" \
            "demo.auditor:Kiểm toán Demo:auditor" "demo.admin:Quản trị Demo:admin"; do
  IFS=: read -r user name role <<<"$spec"
  echo "$PASSWORD" | INGEST_DATA_DIR="$DEMO/server" "$BIN/ingest-server" user add \
    --username "$user" --display-name "$name" --role "$role" > /dev/null
done

# The demo registry: fictitious owners and vehicles (test data only).
INGEST_DATA_DIR="$DEMO/server" "$BIN/ingest-server" registry import \
  scripts/demo-registry/vehicles.csv scripts/demo-registry/owners.csv > /dev/null

# The test identity provider on loopback: fictitious citizens (their
# national ID numbers are the demo registry's owners') and two officers for
# the console's single sign-on; one fresh password for all of them.
IDP="http://127.0.0.1:$IDP_PORT"
IDP_PASSWORD=$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')
SSO_ENV=()
if command -v node >/dev/null && [ -d ingest-server/tests/oidc/node_modules/oidc-provider ]; then
  CITIZEN_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  CONSOLE_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  IDP_OPTS=$(IDP_PORT="$IDP_PORT" HTTP="$HTTP" PW="$IDP_PASSWORD" CS="$CITIZEN_SECRET" SS="$CONSOLE_SECRET" python3 -c '
import json, os
e = os.environ
def citizen(name, nid):
    return {"name": name, "national_id": nid, "password": e["PW"]}
def officer(user, name, role):
    return {"name": name, "preferred_username": user, "roles": [role], "password": e["PW"]}
print(json.dumps({
    "port": int(e["IDP_PORT"]),
    "clients": [
        {"clientId": "tv-citizen-demo", "clientSecret": e["CS"],
         "redirectUris": ["http://%s/app/sso/callback" % e["HTTP"]]},
        {"clientId": "tv-console-demo", "clientSecret": e["SS"],
         "redirectUris": ["http://%s/console/sso/callback" % e["HTTP"]]},
    ],
    "accountsOnly": True,
    "accounts": {
        "congdan1": citizen("Nguyễn Văn Thử (DỮ LIỆU THỬ)", "000099000001"),
        "congdan2": citizen("Trần Thị Mẫu (DỮ LIỆU THỬ)", "000099000002"),
        "congdan3": citizen("Lê Văn Demo (DỮ LIỆU THỬ)", "000099000003"),
        "canbo.csgt": officer("canbo.csgt", "CSGT Thử (SSO)", "ioc-police"),
        "canbo.dieuhanh": officer("canbo.dieuhanh", "Điều hành Thử (SSO)", "ioc-operator"),
    },
}))')
  node ingest-server/tests/oidc/provider.js "$IDP_OPTS" > "$DEMO/idp.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -fsS "$IDP/.well-known/openid-configuration" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "$IDP/.well-known/openid-configuration" >/dev/null || { echo "demo: the test identity provider did not start; see $DEMO/idp.log" >&2; exit 1; }
  SSO_ENV=(
    INGEST_CITIZEN_SSO_ISSUER="$IDP" INGEST_CITIZEN_SSO_CLIENT_ID=tv-citizen-demo
    INGEST_CITIZEN_SSO_CLIENT_SECRET="$CITIZEN_SECRET"
    INGEST_CITIZEN_SSO_REDIRECT_URL="http://$HTTP/app/sso/callback"
    INGEST_CITIZEN_SSO_EXTRA_SCOPES=national_id
    INGEST_SSO_ISSUER="$IDP" INGEST_SSO_CLIENT_ID=tv-console-demo
    INGEST_SSO_CLIENT_SECRET="$CONSOLE_SECRET"
    INGEST_SSO_REDIRECT_URL="http://$HTTP/console/sso/callback"
    INGEST_SSO_ROLE_MAP="ioc-police=police,ioc-operator=operator" INGEST_SSO_EXTRA_SCOPES=roles
    INGEST_SSO_BUTTON_LABEL="Đăng nhập qua nhà cung cấp định danh THỬ"
  )
else
  echo "demo: no Node.js or ingest-server/tests/oidc/node_modules (make setup-node): citizens cannot sign in" >&2
fi

# The recording as a live camera stream (when SOURCE is a file).
if [ -n "$SOURCE" ] && [ -f "$SOURCE" ]; then
  "$BIN/camera-sim" --file "$SOURCE" --listen "127.0.0.1:$RTSP_PORT" --mount /cam1 > "$DEMO/camera.log" 2>&1 &
  pids+=($!)
fi

# The payment gateway sandbox (VNPay protocol 2.1.0; a stand-in, no money).
PAY_SECRET=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$BIN/vnpay-sandbox" --listen "127.0.0.1:$PAY_PORT" --tmn-code TVDEMO01 --hash-secret "$PAY_SECRET" \
  --ipn-url "http://$HTTP/api/v1/payments/vnpay/ipn" > "$DEMO/payments.log" 2>&1 &
pids+=($!)
PAY_ENV=(
  INGEST_VNPAY_TMN_CODE=TVDEMO01 INGEST_VNPAY_HASH_SECRET="$PAY_SECRET"
  INGEST_VNPAY_PAY_URL="http://127.0.0.1:$PAY_PORT/paymentv2/vpcpay.html"
  INGEST_VNPAY_API_URL="http://127.0.0.1:$PAY_PORT/merchant_webapi/api/transaction"
  INGEST_VNPAY_RETURN_URL="http://$HTTP/pay/vnpay/return"
)

env "${SSO_ENV[@]}" "${PAY_ENV[@]}" INGEST_REGISTRY_DEMO_MODE=true INGEST_DATA_DIR="$DEMO/server" INGEST_HTTP_LISTEN="$HTTP" INGEST_MQTT_LISTEN="$MQTT" \
  INGEST_ADMIN_TOKEN="$TOKEN" "$BIN/ingest-server" > "$DEMO/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://$HTTP/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://$HTTP/readyz" >/dev/null || { echo "demo: the server did not start; see $DEMO/server.log" >&2; exit 1; }

ENROL=$("$BIN/edge-agent" enroll --config "$DEMO/agent.toml")
BODY=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({k: d[k] for k in ("device_id","site","public_key")}))' <<<"$ENROL")
ANSWER=$(curl -fsS -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "$BODY" "http://$HTTP/api/v1/devices")
# The enrolment answer carries the device's broker password (shown once) and
# the server keys its acks are signed with: the password goes to a 0600
# file, the keys into the agent's [server] section (without them the agent
# refuses to deliver).
(umask 077; python3 -c 'import json,sys; print(json.load(sys.stdin)["mqtt_password"])' <<<"$ANSWER" > "$DEMO/mqtt.pass")
python3 -c 'import json,sys; print("\n[server]\npublic_keys = " + json.dumps(json.load(sys.stdin)["server_public_keys"]))' \
  <<<"$ANSWER" >> "$DEMO/agent.toml"

"$BIN/edge-agent" run --config "$DEMO/agent.toml" > "$DEMO/edge.log" 2>&1 &
pids+=($!)

cat <<EOF

  review console  http://$HTTP/console/
                  demo.operator, demo.operator2, demo.police, demo.supervisor,
                  demo.auditor, demo.admin — password $PASSWORD
EOF
if [ ${#SSO_ENV[@]} -gt 0 ]; then
  cat <<EOF
                  or through the test provider: canbo.csgt (police),
                  canbo.dieuhanh (operator) — password $IDP_PASSWORD
  citizen app     http://$HTTP/app/   ("Đăng nhập bằng VNeID" goes to the test provider)
                  congdan1, congdan2, congdan3 — password $IDP_PASSWORD
                  (fictitious citizens, CCCD 000099000001-3: the owners in
                  scripts/demo-registry/; in demo mode every plate read gets
                  one of them as a FICTITIOUS owner)
  test identity   $IDP   (NOT VNeID; fictitious accounts only; logs: $DEMO/idp.log)
EOF
fi
cat <<EOF
  ingest server   http://$HTTP   (logs: $DEMO/server.log)
  embedded MQTT   mqtt://$MQTT
  edge agent      demo-edge-01   (logs: $DEMO/edge.log, metrics: http://127.0.0.1:9108/metrics)
  camera          ${CAMERA_URL:-rendered scene only}   (logs: $DEMO/camera.log)
  payment sandbox http://127.0.0.1:$PAY_PORT   (VNPay stand-in, no money moves; logs: $DEMO/payments.log)
  admin token     $TOKEN
                  curl -H "Authorization: Bearer $TOKEN" http://$HTTP/api/v1/heartbeats

  Cases appear below as the server stores them. Ctrl-C stops everything.

EOF

seen=""
while true; do
  sleep 3
  ids=$("$BIN/edge-agent" outbox --config "$DEMO/agent.toml" 2>/dev/null |
    python3 -c 'import json,sys; [print(r["event_id"]) for r in json.load(sys.stdin)["recent"] if r["state"]=="acked"]' 2>/dev/null || true)
  for id in $ids; do
    case " $seen " in *" $id "*) continue ;; esac
    seen="$seen $id"
    echo "case $id:"
    curl -fsS -H "Authorization: Bearer $TOKEN" "http://$HTTP/api/v1/cases/$id" | python3 -m json.tool | sed 's/^/    /'
  done
done
