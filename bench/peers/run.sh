#!/usr/bin/env bash
# Side-by-side comparison of lbctl with HAProxy, nginx and Caddy on this
# machine: the same backends, the same load tools, one pinned core per proxy.
#
#   bench/peers/run.sh                 # every workload, 3 rounds of 5 s
#   ROUNDS=5 DURATION=10 bench/peers/run.sh
#   WORKLOADS="l7-sticky l4-keepalive" bench/peers/run.sh
#   WORKLOADS=l7-tls bench/peers/run.sh  # sticky requests over kept-alive TLS
#   WORKLOADS="l7-tls-handshake l7-tls-resume l7-h2" bench/peers/run.sh  # full and resumed TLS handshakes; sticky h2 (h2load)
#   TLS_GROUPS=mlkem,x25519 WORKLOADS=l7-tls-handshake bench/peers/run.sh  # a browser's key shares
#   TLS_CURVES='"X25519", "P-256"' WORKLOADS=l7-tls-handshake bench/peers/run.sh  # lbctl's tls.curves
#   LBCTL_BIN=/path/to/lbctl bench/peers/run.sh  # that lbctl binary instead of this tree's
#   L7_ENGINE=goroutine bench/peers/run.sh  # lbctl's L7 engine ([l7] engine; the default is "loop")
#
# Backends (two nginx servers and an iperf3 server) and the load tools (wrk,
# iperf3, hey, lbctl's source-address generator) run on CPU 0; each proxy in
# turn runs alone on CPU 1 with one thread (nbthread 1, worker_processes 1,
# GOMAXPROCS=1). Proxies take turns within each round, so that the noise of a
# shared machine falls on all of them alike; the report gives, per workload,
# every proxy's median and the median of the per-round ratios of lbctl to the
# better of HAProxy and nginx.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
WORKLOADS=${WORKLOADS:-"l4-keepalive l4-newconn l4-bulk l7-sticky l7-newsession l7-newconn l4-sources l7-tail"}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"

# --- tools ------------------------------------------------------------------
missing=()
for tool in haproxy nginx caddy wrk iperf3 hey h2load taskset go; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
stream_mod=""
for m in /usr/lib/nginx/modules/ngx_stream_module.so /usr/lib64/nginx/modules/ngx_stream_module.so; do
	[ -f "$m" ] && stream_mod=$m
done
[ -n "$stream_mod" ] || missing+=("nginx-stream-module")
if [ ${#missing[@]} -gt 0 ]; then
	echo "missing: ${missing[*]}" >&2
	echo "install them with:" >&2
	echo "  sudo apt-get install haproxy nginx-light libnginx-mod-stream caddy wrk iperf3 hey nghttp2-client util-linux" >&2
	echo "(and Go 1.26 for lbctl itself)" >&2
	exit 1
fi

. "$here/common.sh"
start_work peers srcload tlsload

# The addresses may be moved, so that two runs on one machine do not meet.
BACKEND1=${BACKEND1:-127.0.0.1:19001}
BACKEND2=${BACKEND2:-127.0.0.1:19002}
IPERF=${IPERF:-127.0.0.1:15201}
FRONT=${FRONT:-127.0.0.1:18000}

# --- backends on the load core ------------------------------------------------
mkdir -p "$work/nginx-backend"
cat >"$work/nginx-backend/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx-backend/nginx.pid;
error_log $work/nginx-backend/error.log warn;
events { worker_connections 8192; }
http {
	access_log off;
	keepalive_requests 10000000;
	server { listen $BACKEND1 backlog=4096; location / { return 200 "hello from app-01\n"; } }
	server { listen $BACKEND2 backlog=4096; location / { return 200 "hello from app-02\n"; } }
}
EOF
taskset -c "$LOAD_CPU" nginx -p "$work/nginx-backend" -c "$work/nginx-backend/nginx.conf" -g 'daemon off;' &
pids+=($!)
taskset -c "$LOAD_CPU" iperf3 -s -B 127.0.0.1 -p "${IPERF##*:}" >/dev/null 2>&1 &
pids+=($!)

wait_port() { # host:port
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listens on $1" >&2
	return 1
}
wait_port $BACKEND1
wait_port $IPERF

# One ECDSA P-256 certificate for every proxy's TLS (l7-tls*, l7-h2).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
	-keyout "$work/site.key" -out "$work/site.pem" 2>/dev/null
cat "$work/site.pem" "$work/site.key" >"$work/site-bundle.pem"

# --- proxy configs ------------------------------------------------------------
# proxy_config NAME WORKLOAD writes NAME's config for WORKLOAD into $work.
kind_of() { case $1 in l4-*) echo tcp ;; *) echo http ;; esac; }

haproxy_conf() {
	local w=$1 f=$work/haproxy.cfg
	{
		echo "global"
		echo "  nbthread 1"
		echo "  maxconn 5000"
		echo "defaults"
		echo "  timeout connect 3s"
		echo "  timeout client 60s"
		echo "  timeout server 60s"
		echo "  timeout http-request 10s"
		echo "listen front"
		# HTTP clients speak first: every proxy defers accept until the
		# request arrives, as lbctl's L7 does on Linux.
		case $w in
		l4-*) echo "  bind $FRONT" ;;
		l7-tls | l7-tls-handshake | l7-tls-resume) echo "  bind $FRONT defer-accept ssl crt $work/site-bundle.pem alpn http/1.1" ;;
		l7-h2) echo "  bind $FRONT defer-accept ssl crt $work/site-bundle.pem alpn h2,http/1.1" ;;
		*) echo "  bind $FRONT defer-accept" ;;
		esac
		case $w in
		l4-bulk)
			echo "  mode tcp"
			echo "  option splice-auto"
			echo "  balance source"
			echo "  server iperf $IPERF"
			;;
		l4-sources)
			echo "  mode tcp"
			echo "  balance roundrobin"
			echo "  stick-table type ip size 1m expire 30s"
			echo "  stick on src"
			echo "  server app-01 $BACKEND1"
			echo "  server app-02 $BACKEND2"
			;;
		l4-*)
			echo "  mode tcp"
			echo "  balance source"
			echo "  server app-01 $BACKEND1"
			echo "  server app-02 $BACKEND2"
			;;
		*)
			echo "  mode http"
			echo "  balance roundrobin"
			echo "  cookie SERVERID insert indirect nocache"
			echo "  http-reuse always"
			echo "  server app-01 $BACKEND1 cookie app-01"
			echo "  server app-02 $BACKEND2 cookie app-02"
			;;
		esac
	} >"$f"
	echo "haproxy -f $f -db"
}

nginx_conf() {
	local w=$1 d=$work/nginx-proxy
	mkdir -p "$d"
	{
		echo "load_module $stream_mod;"
		echo "worker_processes 1;"
		echo "daemon off;"
		echo "pid $d/nginx.pid;"
		echo "error_log $d/error.log crit;"
		echo "events { worker_connections 8192; }"
		case $w in
		l4-bulk)
			echo "stream { upstream b { hash \$remote_addr consistent; server $IPERF; }"
			echo "  server { listen $FRONT backlog=4096; proxy_pass b; } }"
			;;
		l4-*)
			echo "stream { upstream b { hash \$remote_addr consistent; server $BACKEND1; server $BACKEND2; }"
			echo "  server { listen $FRONT backlog=4096; proxy_pass b; } }"
			;;
		*)
			# nginx 1.22 leaves TLS 1.3 out of its default ssl_protocols
			# (1.23.4 added it); without it every TLS row would compare
			# nginx's TLS 1.2 with TLS 1.3 elsewhere.
			local tls="" certs="ssl_certificate $work/site.pem; ssl_certificate_key $work/site.key; ssl_protocols TLSv1.2 TLSv1.3"
			case $w in
			l7-tls | l7-tls-handshake | l7-tls-resume) tls="ssl; $certs" ;;
			l7-h2) tls="ssl http2; $certs" ;;
			esac
			echo "http { access_log off; keepalive_requests 10000000;"
			echo "  upstream b { hash \$cookie_SERVERID consistent; server $BACKEND1; server $BACKEND2; keepalive 64; }"
			echo "  server { listen $FRONT backlog=4096 deferred $tls; location / { proxy_pass http://b;"
			echo "    proxy_http_version 1.1; proxy_set_header Connection \"\"; } } }"
			;;
		esac
	} >"$d/nginx.conf"
	echo "nginx -p $d -c $d/nginx.conf"
}

caddy_conf() {
	local f=$work/Caddyfile
	cat >"$f" <<EOF
{
	admin off
	auto_https off
	log default {
		output discard
	}
}
http://$FRONT {
	reverse_proxy $BACKEND1 $BACKEND2 {
		lb_policy cookie SERVERID
	}
}
EOF
	echo "caddy run --config $f --adapter caddyfile"
}

lbctl_conf() {
	local w=$1 f=$work/lbctl.toml mode=l7
	case $w in l4-*) mode=l4 ;; esac
	{
		echo "mode = \"$mode\""
		echo "listen = \"$FRONT\""
		echo "[health]"
		echo "check = \"none\""
		[ -n "${L7_ENGINE:-}" ] && printf '[l7]\nengine = "%s"\n' "$L7_ENGINE"
		if [ "$w" = l4-bulk ]; then
			echo "[[backend]]"
			echo "id = \"iperf\""
			echo "address = \"$IPERF\""
		else
			echo "[[backend]]"
			echo "id = \"app-01\""
			echo "address = \"$BACKEND1\""
			echo "[[backend]]"
			echo "id = \"app-02\""
			echo "address = \"$BACKEND2\""
		fi
		case $w in
		l7-tls | l7-tls-handshake | l7-tls-resume | l7-h2)
			echo "[tls]"
			echo "certificates = [{ cert = \"$work/site.pem\", key = \"$work/site.key\" }]"
			if [ "$w" = l7-h2 ]; then echo "alpn = [\"h2\", \"http/1.1\"]"; else echo "alpn = [\"http/1.1\"]"; fi
			# TLS_CURVES='"X25519", "P-256"' narrows lbctl's key exchanges.
			if [ -n "${TLS_CURVES:-}" ]; then echo "curves = [$TLS_CURVES]"; fi
			;;
		esac
	} >"$f"
	echo "$work/lbctl serve --config $f --log-level warn"
}

# start_proxy NAME WORKLOAD: runs the proxy on its core; sets proxy_pid.
start_proxy() {
	local cmd
	cmd=$("${1}_conf" "$2")
	# shellcheck disable=SC2086
	GOMAXPROCS=1 taskset -c "$PROXY_CPU" bash -c "exec $cmd" >"$work/$1.log" 2>&1 &
	proxy_pid=$!
	wait_port $FRONT
}

stop_proxy() {
	kill "$proxy_pid" 2>/dev/null || true
	wait "$proxy_pid" 2>/dev/null || true
	# Let the listening port go before the next proxy binds it.
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/${FRONT%:*}/${FRONT##*:}") 2>/dev/null || return 0
		sleep 0.05
	done
}

# --- load -----------------------------------------------------------------------
on_load() { taskset -c "$LOAD_CPU" "$@"; }

wrk_rps() { # wrk args...: prints requests per second
	on_load wrk -t1 -c"$CONNS" -d"${DURATION}s" "$@" "${scheme:-http}://$FRONT/" 2>/dev/null |
		awk '/Requests\/sec/ { print $2 }'
}

# measure WORKLOAD NAME prints one number, higher is better (p99 latency is
# reported as its inverse so that the ratio keeps that sense).
measure() {
	case $1 in
	l4-keepalive | l7-newsession) wrk_rps ;;
	l4-newconn | l7-newconn) wrk_rps -H "Connection: close" ;;
	l7-sticky) wrk_rps -H "Cookie: SERVERID=app-01" ;;
	l7-tls) scheme=https wrk_rps -H "Cookie: SERVERID=app-01" ;;
	# One request per connection, so one TLS 1.3 handshake per request:
	# full, or resumed from the connection's previous session (wrk resumes
	# every one after the first, so it cannot measure full handshakes).
	# TLS_GROUPS: the key exchanges the client offers, the first with a
	# key share ("x25519" as OpenSSL 3.0 clients, "mlkem,x25519" as
	# browsers).
	l7-tls-handshake | l7-tls-resume)
		local resume=false
		[ "$1" = l7-tls-resume ] && resume=true
		on_load "$work/tlsload" -addr "$FRONT" -conns "$CONNS" -duration "${DURATION}s" \
			-groups "${TLS_GROUPS:-x25519}" -resume="$resume"
		;;
	l7-h2)
		# Ten streams in flight on each connection; only 2xx answers count.
		on_load h2load -t1 -c"$CONNS" -m10 -D"$DURATION" -H "cookie: SERVERID=app-01" "https://$FRONT/" 2>/dev/null |
			awk '/^finished in/ { t = $3 + 0 } /^status codes:/ { ok = $3 } END { if (t > 0) printf "%.2f\n", ok / t }'
		;;
	l4-bulk)
		on_load iperf3 -c "${FRONT%:*}" -p "${FRONT##*:}" -P 4 -t "$DURATION" -f m 2>/dev/null |
			awk '/SUM.*receiver/ { print $(NF-2) }'
		;;
	l4-sources)
		on_load "$work/srcload" -addr "$FRONT" -sources 10000 -conns "$CONNS" -duration "${DURATION}s"
		;;
	l7-tail)
		# Half of HAProxy's sticky maximum from this round, as a fixed rate.
		local rate=${tail_rate:-2000}
		on_load hey -z "${DURATION}s" -c "$CONNS" -q $(((rate + CONNS - 1) / CONNS)) \
			-H "Cookie: SERVERID=app-01" "http://$FRONT/" 2>/dev/null |
			awk '/ 99% in / { printf "%.3f\n", 1 / $3 }'
		;;
	esac
}

proxies_for() {
	case $1 in
	l7-tls | l7-tls-handshake | l7-tls-resume | l7-h2) echo "haproxy nginx lbctl" ;;
	l7-*) echo "haproxy nginx lbctl caddy" ;;
	*) echo "haproxy nginx lbctl" ;;
	esac
}

unit_of() {
	case $1 in
	l4-bulk) echo "Mbit/s" ;;
	l7-tail) echo "1/p99 s" ;;
	l7-tls-handshake | l7-tls-resume) echo "handshakes/s" ;;
	*) echo "req/s" ;;
	esac
}

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "n/a"; exit } if (NR % 2) print a[(NR + 1) / 2]; else printf "%.4g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# cpu_ticks PID: user and system CPU ticks of PID and its children (nginx
# works in a child of its master).
cpu_ticks() {
	local total=0 p
	for p in "$1" $(pgrep -P "$1" || true); do
		total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$total"
}
HZ=$(getconf CLK_TCK)

work_of() { case $1 in l4-bulk) echo "Mbit" ;; l7-tls-handshake | l7-tls-resume) echo "handshake" ;; *) echo "request" ;; esac; }

declare -A results cost
echo "rounds=$ROUNDS duration=${DURATION}s connections=$CONNS proxy_cpu=$PROXY_CPU load_cpu=$LOAD_CPU" >&2
for round in $(seq "$ROUNDS"); do
	for w in $WORKLOADS; do
		if [ "$w" = l7-tail ]; then
			# The fixed rate: half of HAProxy's sticky maximum, measured now.
			start_proxy haproxy l7-sticky
			max=$(measure l7-sticky)
			stop_proxy
			tail_rate=$(awk -v m="${max:-4000}" 'BEGIN { printf "%d", m / 2 }')
		fi
		for p in $(proxies_for "$w"); do
			start_proxy "$p" "$w"
			t0=$(cpu_ticks "$proxy_pid")
			v=$(measure "$w" || true)
			t1=$(cpu_ticks "$proxy_pid")
			stop_proxy
			v=${v:-0}
			results[$w,$p]+="$v "
			# CPU the proxy spent per unit of work: the requests (or Mbit)
			# it moved, or at a fixed rate the requests offered.
			units=$(awk -v v="$v" -v d="$DURATION" -v w="$w" -v r="${tail_rate:-0}" \
				'BEGIN { if (w == "l7-tail") print r * d; else print v * d }')
			c=$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v n="$units" \
				'BEGIN { if (n > 0) printf "%.2f\n", t / hz * 1e6 / n; else print 0 }')
			cost[$w,$p]+="$c "
			printf 'round %d  %-14s %-8s %s %s, %s µs CPU per %s\n' "$round" "$w" "$p" "$v" "$(unit_of "$w")" "$c" "$(work_of "$w")" >&2
		done
	done
done

# --- report ---------------------------------------------------------------------
echo
echo "| workload | unit | HAProxy | nginx | Caddy | lbctl | lbctl / best of HAProxy, nginx (median of rounds) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for w in $WORKLOADS; do
	h=(${results[$w,haproxy]}) n=(${results[$w,nginx]}) l=(${results[$w,lbctl]})
	ratios=""
	for i in "${!l[@]}"; do
		ratios+=$(awk -v l="${l[$i]}" -v h="${h[$i]}" -v n="${n[$i]}" \
			'BEGIN { b = (h > n ? h : n); if (b > 0) printf "%.3f\n", l / b }')$'\n'
	done
	med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
	caddy="-"
	[ -n "${results[$w,caddy]:-}" ] && caddy=$(med "${results[$w,caddy]}")
	printf '| %s | %s | %s | %s | %s | %s | %sx |\n' "$w" "$(unit_of "$w")" \
		"$(med "${results[$w,haproxy]}")" "$(med "${results[$w,nginx]}")" "$caddy" \
		"$(med "${results[$w,lbctl]}")" "$(grep -v '^$' <<<"$ratios" | median)"
done
echo
echo "CPU each proxy spent per unit of work, from /proc (lower is better). On two cores the"
echo "load tools and backends share one core and can cap every proxy's rate alike; the CPU"
echo "a proxy needs for the same work is then the sharper comparison."
echo
echo "| workload | CPU per | HAProxy µs | nginx µs | Caddy µs | lbctl µs | best of HAProxy, nginx / lbctl (median of rounds) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for w in $WORKLOADS; do
	h=(${cost[$w,haproxy]}) n=(${cost[$w,nginx]}) l=(${cost[$w,lbctl]})
	ratios=""
	for i in "${!l[@]}"; do
		ratios+=$(awk -v l="${l[$i]}" -v h="${h[$i]}" -v n="${n[$i]}" \
			'BEGIN { b = (h < n ? h : n); if (l > 0) printf "%.3f\n", b / l }')$'\n'
	done
	caddy="-"
	[ -n "${cost[$w,caddy]:-}" ] && caddy=$(med "${cost[$w,caddy]}")
	printf '| %s | %s | %s | %s | %s | %s | %sx |\n' "$w" "$(work_of "$w")" \
		"$(med "${cost[$w,haproxy]}")" "$(med "${cost[$w,nginx]}")" "$caddy" \
		"$(med "${cost[$w,lbctl]}")" "$(grep -v '^$' <<<"$ratios" | median)"
done
echo
echo "$(date -u +%Y-%m-%d), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(haproxy -v | head -1 | cut -d' ' -f1-3), nginx $(nginx -v 2>&1 | cut -d/ -f2), caddy $(caddy version | cut -d' ' -f1)"
