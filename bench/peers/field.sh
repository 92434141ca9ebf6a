#!/usr/bin/env bash
# The field table: the lab's sticky-session scenarios played against
# HAProxy, nginx and lbctl on this machine, one row per load balancer and
# persistence, one table of NAT skew and broken sessions.
#
#   bench/peers/field.sh                    # nat-skew, cgnat and failover
#   SCENARIOS="cgnat" RATE=4000 bench/peers/field.sh
#
# Each scenario is one of bench/scenarios (failover is nat-skew with app-02
# killed 40% into the run and brought back at 70%), run at RATE requests
# per second (default 4000: 5 s per run). The lab's backends listen on
# fixed addresses (--target-backends) that HAProxy and nginx are configured
# with, and the lab reaches them through --target:
#
#   haproxy source   mode tcp, balance source
#   haproxy stick    mode tcp, balance roundrobin, stick on src
#   haproxy cookie   mode http, balance roundrobin, cookie SERVERID insert
#   nginx ip_hash    http, ip_hash (keys on the first three octets of IPv4)
#   nginx hash       http, hash $remote_addr consistent
#   lbctl l4         lbctl's own L4 front door (source IP, /32)
#   lbctl l4 maglev  the same with balance.policy = "maglev"
#   lbctl l7         lbctl's own L7 front door (cookie)
#
# nginx's "sticky cookie" is only in the commercial nginx; the nginx of
# this machine (Debian's, without it) gets no cookie row.
set -euo pipefail

SCENARIOS=${SCENARIOS:-"nat-skew cgnat failover"}
RATE=${RATE:-4000}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"

for tool in haproxy nginx jq go; do
	command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool" >&2; exit 1; }
done

. "$here/common.sh"
start_work field

# An address of its own, so that other loopback services on the usual ports
# do not collide.
IP=${FIELD_IP:-127.0.0.40}
B=($IP:19101 $IP:19102 $IP:19103 $IP:19104)
BACKENDS=$(IFS=,; echo "${B[*]}")
HA_SOURCE=$IP:18101
HA_STICK=$IP:18102
HA_COOKIE=$IP:18103
NG_IPHASH=$IP:18201
NG_HASH=$IP:18202

# --- HAProxy ------------------------------------------------------------------
servers() { # $1: extra per server
	local i=1
	for b in "${B[@]}"; do
		printf '\tserver app-%02d %s check inter 100ms rise 1 fall 2 %s\n' "$i" "$b" "${1//ID/app-0$i}"
		i=$((i + 1))
	done
}
{
	printf 'global\n\tmaxconn 8000\n\tlog stderr local0 emerg\n'
	printf 'defaults\n\ttimeout connect 2s\n\ttimeout client 30s\n\ttimeout server 30s\n\tretries 2\n\toption redispatch\n'
	printf 'frontend source\n\tmode tcp\n\tbind %s\n\tdefault_backend source\n' "$HA_SOURCE"
	printf 'backend source\n\tmode tcp\n\tbalance source\n'
	servers ""
	printf 'frontend stick\n\tmode tcp\n\tbind %s\n\tdefault_backend stick\n' "$HA_STICK"
	printf 'backend stick\n\tmode tcp\n\tbalance roundrobin\n\tstick-table type ip size 1m expire 30m\n\tstick on src\n'
	servers ""
	printf 'frontend cookie\n\tmode http\n\tbind %s\n\tdefault_backend cookie\n' "$HA_COOKIE"
	printf 'backend cookie\n\tmode http\n\tbalance roundrobin\n\tcookie SERVERID insert indirect nocache\n\toption httpchk GET /healthz\n'
	servers "cookie ID"
} >"$work/haproxy.cfg"
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)

# --- nginx --------------------------------------------------------------------
mkdir -p "$work/nginx"
{
	echo "worker_processes 1; daemon off; pid $work/nginx/nginx.pid; error_log $work/nginx/error.log crit;"
	echo "events { worker_connections 16384; }"
	echo "http { access_log off;"
	echo "  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;"
	echo "  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;"
	printf '  upstream iphash { ip_hash;'
	for b in "${B[@]}"; do printf ' server %s max_fails=1 fail_timeout=2s;' "$b"; done
	printf ' }\n  upstream hash { hash $remote_addr consistent;'
	for b in "${B[@]}"; do printf ' server %s max_fails=1 fail_timeout=2s;' "$b"; done
	echo " }"
	echo "  server { listen $NG_IPHASH; location / { proxy_pass http://iphash; } }"
	echo "  server { listen $NG_HASH; location / { proxy_pass http://hash; } }"
	echo "}"
} >"$work/nginx/nginx.conf"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" >"$work/nginx.log" 2>&1 &
pids+=($!)
sleep 1 # both read their configs and bind; the lab's first run starts the backends
for p in "${pids[@]}"; do
	kill -0 "$p" 2>/dev/null || { echo "a load balancer did not start:" >&2; cat "$work"/haproxy.log "$work"/nginx.log >&2; exit 1; }
done

# --- scenarios ----------------------------------------------------------------
# scenario NAME: the shipped scenario at RATE, without its mode (a target
# names its own).
scenario() {
	local name=$1 base=$1
	[ "$name" = failover ] && base=nat-skew
	sed -e '/^mode = /d' -e "s/^rate = .*/rate = $RATE/" "$repo/bench/scenarios/$base.toml"
	if [ "$name" = failover ]; then
		# 40% and 70% of users*requests/RATE seconds.
		local users requests
		users=$(sed -n 's/^users = //p' "$repo/bench/scenarios/$base.toml")
		requests=$(sed -n 's/^requests = //p' "$repo/bench/scenarios/$base.toml")
		local total_ms=$((users * requests * 1000 / RATE))
		printf '\n[events]\nfail = ["app-02@%dms"]\nrecover = ["app-02@%dms"]\n' $((total_ms * 4 / 10)) $((total_ms * 7 / 10))
	fi
}

# row SCENARIO LABEL MODE [TARGET]: runs the lab and prints one row.
row() {
	local sc=$1 label=$2 mode=$3 target=${4:-} file=$work/$1-$RANDOM.toml json=$work/out.json
	scenario "$sc" >"$file"
	if [ -n "$target" ]; then
		printf '\n[target]\n%s = "%s"\nbackends = [%s]\n' "$mode" "$target" "$(printf '"%s",' "${B[@]}" | sed 's/,$//')" >>"$file"
	else
		sed -i "s/^\[run\]/[run]\nmode = \"$mode\"/" "$file"
	fi
	if [ "$label" = "lbctl l4 maglev" ]; then
		printf '[balance]\npolicy = "maglev"\n' >"$work/maglev.toml"
		sed -i "1i config = \"$work/maglev.toml\"" "$file"
	fi
	"$work/lbctl" bench --scenario "$file" --json "$json" >"$work/last.txt" 2>&1 || { cat "$work/last.txt" >&2; return 1; }
	[ -z "${DEBUG:-}" ] || jq -c ".runs[0].failure_reasons" "$json" >&2
	jq -r --arg sc "$sc" --arg lb "$label" '.runs[0] |
		[$sc, $lb, (.max_over_mean*100|round/100), (.cov*1000|round/1000), .broken_sessions,
		 .broken_by_cause.address_changed, .broken_by_cause.backend_failed, .broken_by_cause.rebalanced,
		 "\(.failed_requests)/\(.total_requests)"] | @tsv' "$json"
}

{
	printf 'scenario\tload balancer\tmax/mean\tcov\tbroken\taddress_changed\tbackend_failed\trebalanced\tfailed\n'
	for sc in $SCENARIOS; do
		row "$sc" "haproxy source" l4 "$HA_SOURCE"
		row "$sc" "haproxy stick" l4 "$HA_STICK"
		row "$sc" "haproxy cookie" l7 "$HA_COOKIE"
		row "$sc" "nginx ip_hash" l7 "$NG_IPHASH"
		row "$sc" "nginx hash" l7 "$NG_HASH"
		row "$sc" "lbctl l4" l4
		row "$sc" "lbctl l4 maglev" l4
		row "$sc" "lbctl l7" l7
	done
} | column -t -s $'\t'
