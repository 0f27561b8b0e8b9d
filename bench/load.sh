#!/usr/bin/env bash
# Load test of the receiver against a bare HTTPS responder, on loopback.
#
#   bench/load.sh            # from anywhere; builds release first
#
# 1. Builds `alertray` and the `bare_responder` example in release.
# 2. Starts the bare responder (same axum/hyper/rustls stack, does nothing) and `alertray
#    serve` with a throw-away config and data dir, side by side (the one not measured idles).
# 3. ROUNDS rounds of four wrk runs, one after the other: bare GET, the challenge
#    (GET /?crc_token=abc123), bare POST, and POSTs of a different nested-shape alert per
#    request (bench/post_unique.lua) with the bearer token. This machine's speed drifts
#    within minutes, so each ratio compares runs made one after the other, and the summary
#    gives each round's ratios and their median.
# 4. Checks the store holds every notification wrk saw acknowledged with a 2xx, and fails
#    loudly on any non-2xx answer.
# 5. Prints req/s and latency percentiles per run, and the receiver/bare ratios.
#
# wrk: HTTPS with keep-alive, THREADS threads, CONNECTIONS connections, DURATION per run.
# Environment overrides: DURATION (10s), ROUNDS (3), THREADS (2), CONNECTIONS (64),
# SKIP_BUILD=1, ALERTRAY_LOG (the receiver's log filter; its default when unset).
# Everything listens on 127.0.0.1 only, on ports that were free; everything started here is
# stopped on exit.

set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

die() {
    echo "load.sh: FAILED: $*" >&2
    exit 1
}

for tool in wrk python3 curl cargo; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/alertray-load.XXXXXX")
PIDS=()

cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do
        stop "$pid"
    done
    if [[ $status -ne 0 ]]; then
        echo "load.sh: logs kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

stop() { # stop <pid>: stops one process started here, giving it 5 s to stop cleanly
    local pid=$1
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_https() { # wait_https <url> <pid> <log>: until the server answers anything over TLS
    local url=$1 pid=$2 log=$3
    for _ in $(seq 1 150); do
        if curl -sk -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "the server (pid $pid) exited before answering"; }
        sleep 0.1
    done
    cat "$log" >&2
    die "no answer from $url within 15s"
}

# --- build ---------------------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "== building release (alertray, bare_responder)"
    cargo build --release --bin alertray --example bare_responder
fi
ALERTRAY=$ROOT/target/release/alertray
BARE=$ROOT/target/release/examples/bare_responder
[[ -x $ALERTRAY && -x $BARE ]] || die "release binaries missing (unset SKIP_BUILD)"

# --- wrk runs ------------------------------------------------------------------------------
# run_wrk <name> <url> [<lua script> [script args...]]: runs wrk, keeps its output in
# $WORK/<name>.txt
run_wrk() {
    local name=$1 url=$2
    shift 2
    local script=()
    if [[ $# -gt 0 ]]; then
        script=(-s "$1")
        shift
    fi
    echo "== wrk $name: $url ($THREADS threads, $CONNECTIONS connections, $DURATION)"
    wrk --latency -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" "${script[@]}" "$url" -- "$@" | tee "$WORK/$name.txt"
}

# field <name> <key>: one figure from a wrk output (latencies in ms)
field() {
    python3 - "$WORK/$1.txt" "$2" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
key = sys.argv[2]
def ms(v):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", v)
    if not m:
        raise SystemExit(f"unreadable latency {v!r}")
    n, u = float(m.group(1)), m.group(2)
    return n * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000, "h": 3600000}[u]
if key == "rps":
    print(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
elif key in ("p50", "p75", "p90", "p99"):
    m = re.search(r"^\s+%s%%\s+(\S+)" % key[1:], text, re.M)
    print(f"{ms(m.group(1)):.3f}")
elif key == "requests":
    print(re.search(r"(\d+) requests in", text).group(1))
elif key == "non2xx":
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    print(m.group(1) if m else 0)
elif key == "socket_errors":
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    print(sum(int(x) for x in m.groups()) if m else 0)
elif key == "generated":
    m = re.search(r"generated (\d+) requests", text)
    print(m.group(1) if m else "")
else:
    raise SystemExit(f"unknown field {key}")
PY
}

check_all_2xx() { # check_all_2xx <name>
    local non2xx errors
    non2xx=$(field "$1" non2xx)
    errors=$(field "$1" socket_errors)
    if [[ $non2xx -ne 0 ]]; then
        die "$1: wrk saw $non2xx non-2xx responses (Non-2xx or 3xx responses); see above"
    fi
    if [[ $errors -ne 0 ]]; then
        echo "load.sh: warning: $1: $errors socket errors (see above)" >&2
    fi
}

# --- the two servers ------------------------------------------------------------------------
BARE_PORT=$(free_port)
BARE_URL="https://127.0.0.1:$BARE_PORT/"
"$BARE" "127.0.0.1:$BARE_PORT" >"$WORK/bare.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_https "$BARE_URL" "$BARE_PID" "$WORK/bare.log"

TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
CHALLENGE_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
RUN_TAG="load$(date +%s)"

RX_PORT=$(free_port)
RX_URL="https://127.0.0.1:$RX_PORT/"
CONFIG=$WORK/config.toml
DATA=$WORK/data
mkdir -m 700 "$DATA"
(
    umask 077
    cat >"$CONFIG" <<EOF
[server]
listen = "127.0.0.1:$RX_PORT"
path = "/"

[auth]
client_certificate = "off"
method = "bearer"
token = "$TOKEN"
challenge_secret = "$CHALLENGE_SECRET"

[notifications]
enabled = false
EOF
)
"$ALERTRAY" serve --config "$CONFIG" --data-dir "$DATA" --no-popups >"$WORK/alertray.log" 2>&1 &
RX_PID=$!
PIDS+=("$RX_PID")
wait_https "$RX_URL" "$RX_PID" "$WORK/alertray.log"

# One challenge by hand first: the answer must be right, or the run measures an error path.
EXPECTED=$(python3 -c 'import base64, hashlib, hmac, sys; print("sha256=" + base64.b64encode(hmac.new(sys.argv[1].encode(), b"abc123", hashlib.sha256).digest()).decode())' "$CHALLENGE_SECRET")
ANSWER=$(curl -sk --max-time 5 "${RX_URL}?crc_token=abc123")
python3 -c 'import json, sys; got = json.loads(sys.argv[1]).get("response_token"); sys.exit(0 if got == sys.argv[2] else f"challenge answer {got!r} != {sys.argv[2]!r}")' "$ANSWER" "$EXPECTED" \
    || die "the receiver's challenge answer is wrong: $ANSWER"

# --- the rounds ----------------------------------------------------------------------------
OK_2XX=0
GENERATED=0
for round in $(seq 1 "$ROUNDS"); do
    run_wrk "bare_get.$round" "$BARE_URL"
    check_all_2xx "bare_get.$round"
    run_wrk "challenge.$round" "${RX_URL}?crc_token=abc123"
    check_all_2xx "challenge.$round"
    # The same script as the ingest run, so the client does the same work per request.
    run_wrk "bare_post.$round" "$BARE_URL" bench/post_unique.lua "$TOKEN" "$RUN_TAG-bare-$round"
    check_all_2xx "bare_post.$round"
    run_wrk "ingest.$round" "$RX_URL" bench/post_unique.lua "$TOKEN" "$RUN_TAG-$round"
    INGEST_NON2XX=$(field "ingest.$round" non2xx)
    if [[ $INGEST_NON2XX -ne 0 ]]; then
        echo >&2
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
        echo "!! INGEST: $INGEST_NON2XX responses were not 2xx (receiver log: $WORK/alertray.log)" >&2
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
        grep -E "WARN|ERROR" "$WORK/alertray.log" | sort | uniq -c | sort -rn | head -20 >&2 || true
        die "ingest run $round had non-2xx responses"
    fi
    check_all_2xx "ingest.$round"
    OK_2XX=$((OK_2XX + $(field "ingest.$round" requests)))
    generated=$(field "ingest.$round" generated)
    [[ -n $generated ]] || die "wrk did not say how many bodies it generated (bench/post_unique.lua's done())"
    GENERATED=$((GENERATED + generated))
    # The receiver empties its WAL a second after its last write: done before the next bare
    # run, which then has the cores to itself. (Also the last group commit, for requests
    # still in flight when wrk stopped.)
    sleep 2
done

# --- the store holds what was acknowledged -------------------------------------------------
STORED=$("$ALERTRAY" alerts --history --json --config "$CONFIG" --data-dir "$DATA" \
    | python3 -c 'import json, sys; rows = json.load(sys.stdin); print(sum(1 for r in rows if r["kind"] == "alert"))')
DELIVERIES=$("$ALERTRAY" alerts --history --json --config "$CONFIG" --data-dir "$DATA" \
    | python3 -c 'import json, sys; print(sum(r["deliveries"] for r in json.load(sys.stdin)))')
IN_FLIGHT=$((CONNECTIONS * ROUNDS))
echo
echo "== store check"
echo "wrk completed requests with 2xx: $OK_2XX"
echo "notifications in the store:      $STORED (deliveries counted: $DELIVERIES)"
echo "bodies generated by the script:  $GENERATED"
if command -v sqlite3 >/dev/null; then
    echo "sqlite3 count(*):                $(sqlite3 "file:$DATA/alertray.db?mode=ro" 'SELECT count(*) FROM notifications')"
fi
if [[ $STORED -lt $OK_2XX ]]; then
    die "the store holds $STORED notifications but wrk saw $OK_2XX acknowledged: acknowledged deliveries are missing"
fi
if [[ $DELIVERIES -ne $STORED ]]; then
    die "$((DELIVERIES - STORED)) deliveries were taken as duplicates, but every body had its own transition_id"
fi
if [[ $STORED -gt $GENERATED ]]; then
    die "the store holds $STORED notifications, more than the $GENERATED bodies sent"
fi
if [[ $STORED -eq $OK_2XX ]]; then
    echo "OK: the store holds exactly the $OK_2XX notifications wrk saw acknowledged"
else
    echo "OK: the store holds every acknowledged notification, plus $((STORED - OK_2XX)) sent while wrk stopped (at most one per connection and round: $IN_FLIGHT)"
    [[ $((STORED - OK_2XX)) -le $IN_FLIGHT ]] || die "more than one unacknowledged notification per connection and round was stored"
fi
echo "receiver log: $(wc -l <"$WORK/alertray.log") lines, $(du -h "$WORK/alertray.log" | cut -f1); store: $(du -sh "$DATA" | cut -f1)"

# --- summary -------------------------------------------------------------------------------
echo
echo "== summary ($THREADS threads, $CONNECTIONS connections, $DURATION per run, $ROUNDS rounds, HTTPS keep-alive, loopback)"
printf '%-13s %12s %10s %10s %10s %10s\n' run req/s p50_ms p90_ms p99_ms requests
RATES=()
for round in $(seq 1 "$ROUNDS"); do
    for run in bare_get challenge bare_post ingest; do
        printf '%-13s %12s %10s %10s %10s %10s\n' "$run.$round" "$(field "$run.$round" rps)" "$(field "$run.$round" p50)" \
            "$(field "$run.$round" p90)" "$(field "$run.$round" p99)" "$(field "$run.$round" requests)"
    done
    RATES+=("$(field "challenge.$round" rps),$(field "bare_get.$round" rps),$(field "ingest.$round" rps),$(field "bare_post.$round" rps)")
done
python3 - "${RATES[@]}" <<'PY'
import statistics, sys
rounds = [tuple(map(float, r.split(","))) for r in sys.argv[1:]]
challenge = [ch / bg for ch, bg, _, _ in rounds]
ingest = [ing / bp for _, _, ing, bp in rounds]
def show(xs):
    return ", ".join(f"{x:.3f}" for x in xs)
print(f"challenge / bare GET:  median {statistics.median(challenge):.3f}  (rounds: {show(challenge)})")
print(f"ingest / bare POST:    median {statistics.median(ingest):.3f}  (rounds: {show(ingest)})")
PY
