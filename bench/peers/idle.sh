#!/usr/bin/env bash
# What an idle kept-alive HTTP connection costs each proxy in memory: N
# clients (10,000 by default) from several loopback addresses each send one
# request and then stay connected and idle; the proxy's resident memory
# before the clients and once they are all idle, divided by N.
#
#   bench/peers/idle.sh                     # lbctl and HAProxy, 10,000 clients
#   CONNS=5000 PROXIES="lbctl haproxy nginx" SETTLE=60 bench/peers/idle.sh
#   FRONT=127.0.0.1:18200 BACKEND=127.0.0.1:19201 bench/peers/idle.sh   # beside another run
#   L7_ENGINE=goroutine bench/peers/idle.sh # lbctl's L7 on a goroutine per connection ([l7] engine)
#
# Every proxy runs with one thread (GOMAXPROCS=1, nbthread 1,
# worker_processes 1), a keep-alive idle timeout far longer than the run,
# and the same nginx backend. Two figures per proxy: the memory WAIT seconds
# after the clients have gone idle, and the least memory seen over the
# SETTLE seconds that follow, sampled every SAMPLE seconds. They differ for
# lbctl: what the burst of connections used while they were busy (the
# goroutines' stacks and the sessions) is free once they are parked, but Go
# gives it back to the system only after its collector has run, twice for
# pooled sessions, and with nothing allocating it runs every two minutes.
set -euo pipefail

CONNS=${CONNS:-10000}
SOURCES=${SOURCES:-20}
PROXIES=${PROXIES:-"lbctl haproxy"}
WAIT=${WAIT:-10}
SETTLE=${SETTLE:-480}
SAMPLE=${SAMPLE:-10}

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"

need=$((CONNS + 1000))
if [ "$(ulimit -n)" -lt "$need" ]; then
	ulimit -n "$need" 2>/dev/null || {
		echo "open-file limit $(ulimit -n) is below $need: raise it (ulimit -n)" >&2
		exit 1
	}
fi

. "$here/common.sh"
start_work idle idleload

BACKEND=${BACKEND:-127.0.0.1:19101}
FRONT=${FRONT:-127.0.0.1:18100}

mkdir -p "$work/backend"
cat >"$work/backend/nginx.conf" <<CONF
worker_processes 1;
pid $work/backend/nginx.pid;
error_log $work/backend/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	keepalive_requests 10000000;
	server { listen $BACKEND; location / { return 200 "hello from app-01\n"; } }
}
CONF
nginx -p "$work/backend" -c "$work/backend/nginx.conf" -g 'daemon off;' &
pids+=($!)

wait_port() { # host:port
	for _ in $(seq 200); do
		(exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listens on $1" >&2
	return 1
}
wait_port $BACKEND

lbctl_cmd() {
	cat >"$work/lbctl.toml" <<CONF
mode = "l7"
listen = "$FRONT"
[admin]
listen = ""
[l7]
engine = "${L7_ENGINE:-loop}"
[timeouts]
idle = "1h"
[health]
check = "none"
[[backend]]
id = "app-01"
address = "$BACKEND"
CONF
	echo "$work/lbctl serve --config $work/lbctl.toml --log-level warn"
}

# HAProxy reckons two descriptors per connection and refuses to start when
# maxconn needs more than the open-file limit allows; it gets as many
# clients as fit.
haproxy_maxconn=$(( ($(ulimit -n) - 20) / 2 ))
[ "$haproxy_maxconn" -le $need ] || haproxy_maxconn=$need

haproxy_cmd() {
	cat >"$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn $haproxy_maxconn
defaults
  mode http
  timeout connect 3s
  timeout client 1h
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive 1h
listen front
  bind $FRONT defer-accept
  http-reuse always
  server app-01 $BACKEND
CONF
	echo "haproxy -f $work/haproxy.cfg -db"
}

nginx_cmd() {
	mkdir -p "$work/nginx"
	cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log crit;
events { worker_connections $need; }
http { access_log off; keepalive_timeout 1h; keepalive_requests 10000000;
  upstream b { server $BACKEND; keepalive 64; }
  server { listen $FRONT deferred; location / { proxy_pass http://b;
    proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
	echo "nginx -p $work/nginx -c $work/nginx/nginx.conf"
}

# rss_kib PID: resident KiB of PID and its children (nginx serves from a
# child of its master).
rss_kib() {
	local total=0 p
	for p in "$1" $(pgrep -P "$1" || true); do
		total=$((total + $(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0)))
	done
	echo "$total"
}

# least PID SECONDS: prints the least resident KiB of PID over SECONDS.
least() {
	local low cur waited=0
	low=$(rss_kib "$1")
	while [ "$waited" -lt "$2" ]; do
		sleep "$SAMPLE"
		waited=$((waited + SAMPLE))
		cur=$(rss_kib "$1")
		[ "$cur" -ge "$low" ] || low=$cur
	done
	echo "$low"
}

echo
echo "| proxy | idle kept-alive connections | RSS before, KiB | after ${WAIT} s, KiB | least over ${SETTLE} s, KiB | per connection after ${WAIT} s, KiB | per connection, least, KiB |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for p in $PROXIES; do
	cmd=$("${p}_cmd")
	# shellcheck disable=SC2086
	GOMAXPROCS=1 bash -c "exec $cmd" >"$work/$p.log" 2>&1 &
	proxy_pid=$!
	wait_port $FRONT
	sleep 2
	before=$(rss_kib "$proxy_pid")
	n=$CONNS
	[ "$p" != haproxy ] || [ "$n" -le $((haproxy_maxconn - 10)) ] || n=$((haproxy_maxconn - 10))
	"$work/idleload" -addr "$FRONT" -conns "$n" -sources "$SOURCES" </dev/null >"$work/load.out" &
	load_pid=$!
	for _ in $(seq 1200); do
		grep -q '^ready' "$work/load.out" && break
		sleep 0.5
	done
	ready=$(awk '/^ready/ { print $2 }' "$work/load.out")
	sleep "$WAIT"
	early=$(rss_kib "$proxy_pid")
	after=$(least "$proxy_pid" "$SETTLE")
	kill "$load_pid" 2>/dev/null || true
	wait "$load_pid" 2>/dev/null || true
	closed=$(awk '/closed by the proxy/ { print $NF }' "$work/load.out")
	kill "$proxy_pid" 2>/dev/null || true
	wait "$proxy_pid" 2>/dev/null || true
	per() { awk -v a="$1" -v b="$before" -v n="$ready" 'BEGIN { if (n > 0) printf "%.2f", (a - b) / n; else print "n/a" }'; }
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$p" "$ready" "$before" "$early" "$after" "$(per "$early")" "$(per "$after")"
	[ "${closed:-0}" = 0 ] || echo "($p closed $closed of them before the end)" >&2
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/${FRONT%:*}/${FRONT##*:}") 2>/dev/null || break
		sleep 0.05
	done
done
echo
echo "$(date -u +%Y-%m-%d), $(nproc) CPUs, $(haproxy -v | head -1 | cut -d' ' -f1-3)"
