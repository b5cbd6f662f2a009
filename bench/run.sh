#!/bin/sh
# modelmux benchmark driver (`make bench`; see bench/README.md).
#
# Starts the fake backend once per role, directly, and measures four paths to it in one run:
# direct, through modelmux (whose models run the same fake backend, same flags, as children),
# through nginx and through HAProxy (plain reverse proxies, buffering off, one worker/thread
# each like modelmux's single event loop). Every figure is a ratio or a difference taken in
# this run. Results: a table on stdout and bench/results/latest.json.
#
# Environment: BUILD (build dir, default build), BENCH_HOLD_SECS (default 10),
# BENCH_PROXY_THREADS (nginx workers / HAProxy thread, default 1), BENCH_MM_LOGLEVEL
# (modelmux's logLevel, default warn: no access line, as nginx and HAProxy run here without an
# access log; a second modelmux at its default info, an access line per request, is measured
# beside it in sections 1 and 2), BENCH_KEEP=1 keeps the temp dir.
#
# modelmux's models get concurrencyLimit 1024: the default (10 in flight per model) would
# queue the 64-client tests inside modelmux, which nginx and HAProxy do not do.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
LG=$BUILD/bench/mm-loadgen
FAKE=$BUILD/mm-fake-backend
MM=$BUILD/modelmux
HOLD_SECS=${BENCH_HOLD_SECS:-10}
THREADS=${BENCH_PROXY_THREADS:-1}
MM_LOGLEVEL=${BENCH_MM_LOGLEVEL:-warn}
HOLD_STREAMS=1000
ROUNDS=3		# latency and throughput: rounds over the paths in turn, merged
LAT1_N=7000		# requests per round, concurrency 1
LAT64_N=20000		# requests per round, concurrency 64
WRK_SECS=2		# seconds per wrk round
REPS=3			# large transfers: repetitions, the median kept
OUT=$ROOT/bench/results
T_START=$(date +%s)

say() { printf '%s\n' "bench: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

# ---- tools ------------------------------------------------------------------------------
need=""
command -v wrk >/dev/null 2>&1 || need="$need wrk"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx"
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need="$need haproxy"
if [ -n "$need" ]; then
	[ "$(id -u)" = 0 ] || fail "missing:$need (run as root to install them with apt-get)"
	say "installing$need"
	# Keep the packages' system services from starting (Debian's policy-rc.d mechanism),
	# only when no policy is in place, and only for the install.
	policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		policy=1
	fi
	rc=0
	{ DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need ||
	  { apt-get update && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y --no-install-recommends $need; }; } >&2 || rc=$?
	[ -z "$policy" ] || rm -f /usr/sbin/policy-rc.d
	[ "$rc" = 0 ] || fail "apt-get install$need"
fi
PATH=$PATH:/usr/sbin:/sbin
for f in "$LG" "$FAKE" "$MM"; do [ -x "$f" ] || fail "$f not built (make bench builds it)"; done

# ---- processes: every one we start is tagged and killed on exit -------------------------
TMP=$(mktemp -d /tmp/mm-bench.XXXXXX)
chmod 755 "$TMP"
MM_BENCH_TAG=$(basename "$TMP")
export MM_BENCH_TAG
PIDS=""
RES=$TMP/results.jsonl
: >"$RES"

tagged() {	# TAG: live processes carrying it in their environment
	for d in /proc/[0-9]*; do
		[ -r "$d/environ" ] || continue
		if { tr '\0' '\n' <"$d/environ"; } 2>/dev/null | grep -qx "MM_BENCH_TAG=$1"; then
			s=$(cat "$d/stat" 2>/dev/null) || continue
			case $s in *") Z "*) continue ;; esac
			p=${d#/proc/}
			[ "$p" = "$$" ] || echo "$p"
		fi
	done
}

cleanup() {
	rc=$?
	trap - EXIT INT TERM HUP
	[ -z "${CHILD:-}" ] || kill -TERM "$CHILD" 2>/dev/null || true
	for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
	i=0
	while [ $i -lt 50 ]; do
		alive=""
		for p in $PIDS; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
		[ -z "$alive" ] && break
		sleep 0.1
		i=$((i + 1))
	done
	for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	# the tag is in the environment of the programs we executed; forget it before executing
	# the helpers that look for it
	tag=$MM_BENCH_TAG
	unset MM_BENCH_TAG
	real=$(tagged "$tag" | tr '\n' ' ')
	if [ -n "$real" ]; then
		say "killing leftover processes:$real"
		for p in $real; do kill -KILL "$p" 2>/dev/null || true; done
		rc=1
	fi
	if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
		say "logs kept in $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge 4096 ] || say "warning: open files limit $(ulimit -n) < 4096: the hold test may fail"

# nginx and HAProxy run unprivileged: as nobody when we are root
RUNAS=""
PROXY_DIR=$TMP/proxies
mkdir -p "$PROXY_DIR"
if [ "$(id -u)" = 0 ]; then
	RUNAS="setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all --"
	chown nobody:nogroup "$PROXY_DIR" 2>/dev/null || chown nobody "$PROXY_DIR"
fi

# ---- ports ------------------------------------------------------------------------------
# D1 main fake, D2 bulk fake, D3 hold fake, M1 M2 BIG HOLD modelmux's children,
# NGX1..3 nginx, HAP1..3 HAProxy, MMPORT modelmux, MMLPORT the access-logging modelmux
# and PLOG its child
BASE=$("$LG" ports -n 19)
D1=$BASE; D2=$((BASE + 1)); D3=$((BASE + 2))
PM1=$((BASE + 3)); PM2=$((BASE + 4)); PBIG=$((BASE + 5)); PHOLD=$((BASE + 6))
NGX1=$((BASE + 7)); NGX2=$((BASE + 8)); NGX3=$((BASE + 9))
HAP1=$((BASE + 10)); HAP2=$((BASE + 11)); HAP3=$((BASE + 12)); MMPORT=$((BASE + 13))
MMLPORT=$((BASE + 14)); PLOG=$((BASE + 15))
# DL the llama-like fake direct, PLL PLC modelmux's llama-like children
DL=$((BASE + 16)); PLL=$((BASE + 17)); PLC=$((BASE + 18))

# the fake backend's roles (same flags direct and under modelmux)
WORD=$(printf '%500s' '' | tr ' ' x)
BIG_CHUNKS=160000
F_MAIN="--chunks 200 --chunk-delay 5 --size-bytes 104857600"
F_BIG="--chunks $BIG_CHUNKS --chunk-delay 0 --reply $WORD --size-bytes 104857600"
F_HOLD="--chunks 100000 --chunk-delay 1000"
F_LL="--llama-like --threads 3 --parallel 1"
F_LC="--llama-like --threads 3 --slots 2 --delay 20"

start_bg() {	# name cmd...: starts a process, logs to $TMP/name.log, records its pid
	n=$1; shift
	"$@" >"$TMP/$n.log" 2>&1 &
	PIDS="$PIDS $!"
	eval "PID_$n=$!"
}

url() { echo "http://127.0.0.1:$1$2"; }
wait_ok() { run "$LG" req -u "$1" -t "${2:-20}" >/dev/null || fail "no answer from $1"; }
# Runs a measurement in the background and waits for it, so that a signal stops the bench at
# once (the shell runs traps only between foreground commands).
CHILD=""
run() {
	"$@" &
	CHILD=$!
	wait "$CHILD" && CHILD="" && return 0
	st=$?
	CHILD=""
	return "$st"
}

start_bg d1 "$FAKE" --port "$D1" --model direct $F_MAIN
start_bg d2 "$FAKE" --port "$D2" --model direct $F_BIG
start_bg d3 "$FAKE" --port "$D3" --model direct $F_HOLD
for p in $D1 $D2 $D3; do wait_ok "$(url "$p" /health)"; done

# ---- modelmux -----------------------------------------------------------------------------
cfg() {
	cat <<EOF
logLevel: $MM_LOGLEVEL
healthCheckTimeout: 30
$1
models:
  m1:
    cmd: $FAKE --port $PM1 --model m1 $F_MAIN
    proxy: http://127.0.0.1:$PM1
    concurrencyLimit: 1024
  m2:
    cmd: $FAKE --port $PM2 --model m2 $F_MAIN
    proxy: http://127.0.0.1:$PM2
    concurrencyLimit: 1024
  big:
    cmd: $FAKE --port $PBIG --model big $F_BIG
    proxy: http://127.0.0.1:$PBIG
  hold:
    cmd: $FAKE --port $PHOLD --model hold $F_HOLD
    proxy: http://127.0.0.1:$PHOLD
    concurrencyLimit: 2000
  ll:
    cmd: $FAKE --port $PLL --model ll $F_LL
    proxy: http://127.0.0.1:$PLL
  lc:
    cmd: $FAKE --port $PLC --model lc $F_LC
    proxy: http://127.0.0.1:$PLC
EOF
}
# Optional keys, each kept only when `modelmux -t` accepts it without a word about it.
EXTRA=""
try_key() {	# NAME YAML
	cfg "$EXTRA
$2" >"$TMP/try.yaml"
	if "$MM" -t -c "$TMP/try.yaml" >"$TMP/modelmux-t.log" 2>&1 &&
	   ! grep -qi "$1" "$TMP/modelmux-t.log"; then
		EXTRA="$EXTRA
$2"
		return 0
	fi
	return 1
}
RATE_NOTE="no rateLimit key"
try_key rateLimit 'rateLimit: {perIP: {rate: 0}, perKey: {rate: 0}}' && RATE_NOTE="rateLimit off (rate: 0)"
# the 100 MB JSON upload needs a JSON body limit above modelmux's default 32 MiB
JSON_UP=30000000
try_key maxJsonBodyBytes 'limits: {maxJsonBodyBytes: 110000000, maxConnectionsPerIP: 4096}' && JSON_UP=104857600 ||
	try_key maxJsonBodyBytes 'limits: {maxJsonBodyBytes: 110000000}' && JSON_UP=104857600
# (every load generator is one address: the per-address connection cap would be its limit)
cfg "$EXTRA" >"$TMP/modelmux.yaml"
"$MM" -t -c "$TMP/modelmux.yaml" >"$TMP/modelmux-t.log" 2>&1 || fail "modelmux -t: $(cat "$TMP/modelmux-t.log")"

# A port of our own, not -l :0 and the ready line: at BENCH_MM_LOGLEVEL=warn there is no such line.
start_bg mm "$MM" -c "$TMP/modelmux.yaml" -l "127.0.0.1:$MMPORT"
wait_ok "$(url "$MMPORT" /health)"
kill -0 "$PID_mm" 2>/dev/null || fail "modelmux exited: $(tail -n 5 "$TMP/mm.log")"
# The same at logLevel info (an access line per request, to a file): sections 1 and 2 only.
LOGGED=""
if [ "$MM_LOGLEVEL" != info ]; then
	cat >"$TMP/modelmux-log.yaml" <<EOF
logLevel: info
$EXTRA
models:
  m1:
    cmd: $FAKE --port $PLOG --model m1 $F_MAIN
    proxy: http://127.0.0.1:$PLOG
    concurrencyLimit: 1024
EOF
	start_bg mmlog "$MM" -c "$TMP/modelmux-log.yaml" -l "127.0.0.1:$MMLPORT"
	wait_ok "$(url "$MMLPORT" /health)"
	LOGGED=modelmux_log
fi
sleep 1
run "$LG" proc -p "$PID_mm" -T '"test":"idle","path":"modelmux"' >>"$RES"

# ---- nginx and HAProxy --------------------------------------------------------------------
NG=$PROXY_DIR/nginx
mkdir -p "$NG"
{
	cat <<EOF
daemon off;
master_process on;
worker_processes $THREADS;
pid $NG/nginx.pid;
error_log $NG/error.log warn;
events { worker_connections 10000; }
http {
  access_log off;
  client_body_temp_path $NG/body;
  proxy_temp_path $NG/proxy;
  fastcgi_temp_path $NG/fastcgi;
  uwsgi_temp_path $NG/uwsgi;
  scgi_temp_path $NG/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
EOF
	for pair in "$NGX1:$D1" "$NGX2:$D2" "$NGX3:$D3"; do
		cat <<EOF
  upstream u${pair%%:*} { server 127.0.0.1:${pair#*:}; keepalive 256; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${pair%%:*};
    location / {
      proxy_pass http://u${pair%%:*};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      client_max_body_size 0;
      proxy_read_timeout 300s;
      proxy_send_timeout 300s;
    }
  }
EOF
	done
	echo "}"
} >"$NG/nginx.conf"
HP=$PROXY_DIR/haproxy
mkdir -p "$HP"
{
	cat <<EOF
global
  nbthread $THREADS
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  http-reuse always
  option http-no-delay
EOF
	for pair in "$HAP1:$D1" "$HAP2:$D2" "$HAP3:$D3"; do
		cat <<EOF
frontend f${pair%%:*}
  bind 127.0.0.1:${pair%%:*}
  default_backend b${pair%%:*}
backend b${pair%%:*}
  server s 127.0.0.1:${pair#*:} maxconn 5000
EOF
	done
} >"$HP/haproxy.cfg"
[ -z "$RUNAS" ] || chown -R nobody "$NG" "$HP" 2>/dev/null || true
start_bg nginx $RUNAS nginx -p "$NG" -e "$NG/error.log" -c "$NG/nginx.conf"
start_bg haproxy $RUNAS haproxy -db -f "$HP/haproxy.cfg"
for p in $NGX1 $HAP1; do wait_ok "$(url "$p" /health)"; done
# the processes that do the work: nginx's worker(s), HAProxy's process
children() { for d in /proc/[0-9]*; do [ "$(awk '{print $4}' "$d/stat" 2>/dev/null)" = "$1" ] && echo "${d#/proc/}"; done; true; }
NGX_PIDS=$(children "$PID_nginx" | tr '\n' ',' | sed 's/,$//')
[ -n "$NGX_PIDS" ] || NGX_PIDS=$PID_nginx
HAP_PIDS=$PID_haproxy

# path name -> base URL for the main, bulk and hold backends
base() {	# path role(1 main, 2 bulk, 3 hold)
	case $1 in
	direct) eval "echo http://127.0.0.1:\$D$2" ;;
	modelmux) echo "http://127.0.0.1:$MMPORT" ;;
	modelmux_log) echo "http://127.0.0.1:$MMLPORT" ;;
	nginx) eval "echo http://127.0.0.1:\$NGX$2" ;;
	haproxy) eval "echo http://127.0.0.1:\$HAP$2" ;;
	esac
}
pids_of() {
	case $1 in
	direct) echo "" ;;
	modelmux) echo "-p $PID_mm" ;;
	nginx) echo "-p $NGX_PIDS" ;;
	haproxy) echo "-p $HAP_PIDS" ;;
	esac
}
PATHS="direct modelmux nginx haproxy"
PATHS12="direct modelmux $LOGGED nginx haproxy" # sections 1 and 2
CHAT=/v1/chat/completions
tag() { printf '"test":"%s","path":"%s"' "$1" "$2"; }

# warm: the model loaded, connections open
for p in $PATHS12; do
	run "$LG" lat -u "$(base "$p" 1)$CHAT" -M m1 -n 2000 -c 64 >/dev/null
done

# ---- 1. added latency, 2. throughput ------------------------------------------------------
# Rounds interleave the paths so that a slow moment of the machine does not land on one path.
say "1. latency (c=1, c=64), 2. throughput (wrk, c=64): $ROUNDS rounds, the paths interleaved"
for r in $(seq "$ROUNDS"); do
	for p in $PATHS12; do
		run "$LG" lat -u "$(base "$p" 1)$CHAT" -M m1 -n "$LAT1_N" -w 200 -c 1 -o "$TMP/s-lat1-$p" \
		    -T "$(tag lat1_round "$p")" >>"$RES"
	done
	for p in $PATHS12; do
		run "$LG" lat -u "$(base "$p" 1)$CHAT" -M m1 -n "$LAT64_N" -w 1000 -c 64 -o "$TMP/s-lat64-$p" \
		    -T "$(tag lat64_round "$p")" >>"$RES"
	done
done
for p in $PATHS12; do
	run "$LG" dist -T "$(tag lat1 "$p")" "$TMP/s-lat1-$p" >>"$RES"
	run "$LG" dist -T "$(tag lat64 "$p")" "$TMP/s-lat64-$p" >>"$RES"
done
cat >"$TMP/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"model":"m1","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"secs":%.3f,"rps":%.1f,"errors":%d,"non2xx":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    e.connect + e.read + e.write + e.timeout, e.status))
end
EOF
for p in $PATHS12; do
	run wrk -t 2 -c 64 -d 1s -s "$TMP/post.lua" "$(base "$p" 1)$CHAT" >/dev/null
done
for r in $(seq "$ROUNDS"); do
	for p in $PATHS12; do
		run wrk -t 2 -c 64 -d "${WRK_SECS}s" -s "$TMP/post.lua" "$(base "$p" 1)$CHAT" >"$TMP/wrk-$p.txt"
		line=$(sed -n 's/^WRKJSON {\(.*\)}$/\1/p' "$TMP/wrk-$p.txt")
		[ -n "$line" ] || fail "wrk output: $(cat "$TMP/wrk-$p.txt")"
		printf '{"mode":"wrk",%s,%s}\n' "$(tag rps64_round "$p")" "$line" >>"$RES"
	done
done

# ---- 3. SSE --------------------------------------------------------------------------------
say "3. SSE (200 events 5 ms apart)"
for p in $PATHS; do
	run "$LG" sse -u "$(base "$p" 1)$CHAT" -M m1 -n 4 -c 4 >/dev/null
	run "$LG" sse -u "$(base "$p" 1)$CHAT" -M m1 -n 64 -c 16 -T "$(tag sse "$p")" >>"$RES"
done

# ---- 4. 1000 streams held ---------------------------------------------------------------
say "4. $HOLD_STREAMS streams held ${HOLD_SECS}s"
run "$LG" req -u "$(base modelmux 1)/api/models/load/hold" -d "" -t 30 >/dev/null || fail "load hold"
for p in modelmux nginx haproxy; do
	run "$LG" hold -u "$(base "$p" 3)$CHAT" -M hold -c "$HOLD_STREAMS" -t "$HOLD_SECS" $(pids_of "$p") \
	    -T "$(tag hold "$p")" >>"$RES"
	# the hold backend (MHD, a thread per connection, select(): ~1000 connections at most)
	# notices closed streams at its next event: wait for its threads to go
	i=0
	while [ $i -lt 60 ] && [ "$(sed -n 's/^Threads:[[:space:]]*//p' "/proc/$PID_d3/status")" -gt 8 ]; do
		sleep 0.25
		i=$((i + 1))
	done
done
run "$LG" proc -p "$PID_mm" -T "$(tag after_hold modelmux)" >>"$RES"

# ---- 5. memory growth ------------------------------------------------------------------------
say "5. memory growth over 100000 requests, a swap every 1000"
run "$LG" lat -u "$(base modelmux 1)$CHAT" -M m1,m2 -e 1000 -n 100000 -c 16 -T "$(tag growth_warm modelmux)" >>"$RES"
run "$LG" proc -p "$PID_mm" -T "$(tag growth_before modelmux)" >>"$RES"
run "$LG" lat -u "$(base modelmux 1)$CHAT" -M m1,m2 -e 1000 -n 100000 -c 16 -T "$(tag growth modelmux)" >>"$RES"
run "$LG" proc -p "$PID_mm" -T "$(tag growth_after modelmux)" >>"$RES"

# ---- 6. large bodies ---------------------------------------------------------------------------
say "6. large bodies"
# modelmux serves multipart routes and /upstream/<model>/... since 1ba889a and 41d3161; an
# older build answers 404 there, which the table shows.
for p in $PATHS; do
	run "$LG" lat -u "$(base "$p" 1)$CHAT" -M m1 -n 10 >/dev/null
	run "$LG" up -r "$REPS" -k json -z "$JSON_UP" -M m1 -u "$(base "$p" 1)$CHAT" $(pids_of "$p") \
	    -T "$(tag up_json "$p")" >>"$RES"
done
for p in $PATHS; do
	run "$LG" up -r "$REPS" -k mp -z 104857600 -M m1 -u "$(base "$p" 1)/v1/audio/transcriptions" \
	    $(pids_of "$p") -T "$(tag up_mp100 "$p")" >>"$RES"
done
run "$LG" req -u "$(base modelmux 1)/api/models/load/big" -d "" -t 30 >/dev/null || fail "load big"
for p in $PATHS; do
	run "$LG" down -r "$REPS" -S -M big -u "$(base "$p" 2)$CHAT" $(pids_of "$p") -T "$(tag down_sse100 "$p")" >>"$RES"
done
for p in $PATHS; do
	u="$(base "$p" 2)/bytes"
	[ "$p" != modelmux ] || u="$(base "$p" 2)/upstream/big/bytes"
	run "$LG" down -r "$REPS" -u "$u" $(pids_of "$p") -T "$(tag down_bytes100 "$p")" >>"$RES"
done

# ---- 7. cold start and swap ------------------------------------------------------------------
say "7. cold start and swap"
SP=$("$LG" ports -n 1)
run "$LG" spawn -n 5 -P "$SP" -T "$(tag spawn direct)" -- "$FAKE" --port "$SP" --model m1 $F_MAIN >>"$RES"
run "$LG" cold -n 5 -M m1 -u "$(base modelmux 1)$CHAT" -U "$(base modelmux 1)/api/models/unload" \
    -T "$(tag cold modelmux)" >>"$RES"
run "$LG" swap -n 6 -M m1,m2 -u "$(base modelmux 1)$CHAT" -T "$(tag swap modelmux)" >>"$RES"
run "$LG" proc -p "$PID_mm" -T "$(tag end modelmux)" >>"$RES"

# ---- 8. a llama-server-like backend -----------------------------------------------------------
# The fake's --llama-like mode does what llama-server does on the wire: head and body in two
# writes with Nagle on (a client that keeps its connection and delays its ACK gets every reply
# 40 ms late), a few HTTP threads each held by a connection until it has idled 5 s, /props
# total_slots. ll and lc get no concurrencyLimit: modelmux learns it from /props.
say "8. llama-like backend: small replies (kept vs new connections), 8 at once against 3 HTTP threads"
start_bg dl "$FAKE" --port "$DL" --model ll $F_LL
wait_ok "$(url "$DL" /health)"
run "$LG" req -u "$(base modelmux 1)/api/models/load/ll" -d "" -t 30 >/dev/null || fail "load ll"
DLU=http://127.0.0.1:$DL$CHAT
for r in $(seq "$ROUNDS"); do
	run "$LG" lat -u "$DLU" -M ll -n 40 -w 2 -c 1 -o "$TMP/s-llka" -T "$(tag ll_ka_round direct)" >>"$RES"
	run "$LG" lat -F -u "$DLU" -M ll -n 600 -w 20 -c 1 -o "$TMP/s-llnew" -T "$(tag ll_new_round direct)" >>"$RES"
	run "$LG" lat -u "$(base modelmux 1)$CHAT" -M ll -n 600 -w 20 -c 1 -o "$TMP/s-llmm" \
	    -T "$(tag ll_mm_round modelmux)" >>"$RES"
done
run "$LG" dist -T "$(tag ll_ka direct)" "$TMP/s-llka" >>"$RES"
run "$LG" dist -T "$(tag ll_new direct)" "$TMP/s-llnew" >>"$RES"
run "$LG" dist -T "$(tag ll_mm modelmux)" "$TMP/s-llmm" >>"$RES"
run "$LG" req -u "$(base modelmux 1)/api/models/load/lc" -d "" -t 30 >/dev/null || fail "load lc"
run "$LG" lat -u "$(base modelmux 1)$CHAT" -M lc -n 400 -w 16 -c 8 -T "$(tag ll_c8 modelmux)" >>"$RES"

# ---- report -----------------------------------------------------------------------------------
mkdir -p "$OUT"
META=$TMP/meta.json
{
	printf '{"date":"%s","secs":%s,"host":{"nproc":%s,"kernel":"%s","cpu":"%s"},' \
	    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(($(date +%s) - T_START))" "$(nproc)" "$(uname -r)" \
	    "$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo | head -n 1 | tr -d '"')"
	printf '"versions":{"modelmux":"%s","nginx":"%s","haproxy":"%s","wrk":"%s"},' \
	    "$("$MM" --version 2>&1 | head -n 1 | tr -d '"' || true)$(git describe --always --dirty 2>/dev/null | sed 's/^/ git /' || true)" \
	    "$(nginx -v 2>&1 | sed 's/.*nginx\///')" \
	    "$(haproxy -v 2>&1 | head -n 1 | awk '{print $3}')" \
	    "$(wrk -v 2>&1 | head -n 1 | awk '{print $2}')"
	printf '"hold_secs":%s,"hold_streams":%s,"proxy_threads":%s,"rate_note":"%s","big_chunks":%s,"mm_loglevel":"%s","json_up_bytes":%s}\n' \
	    "$HOLD_SECS" "$HOLD_STREAMS" "$THREADS" "$RATE_NOTE" "$BIG_CHUNKS" "$MM_LOGLEVEL" "$JSON_UP"
} >"$META"
node "$ROOT/bench/report.js" "$RES" "$META" "$OUT/latest.json"
