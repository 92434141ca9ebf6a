#!/usr/bin/env bash
# The field table: the lab's sticky-session scenarios played against
# HAProxy, nginx and lbctl on this machine, one row per load balancer and
# persistence, one table of NAT skew and broken sessions by cause.
#
#   bench/peers/field.sh            # nat-skew cgnat failover reload restart instances
#   SCENARIOS="restart instances" RATE=4000 bench/peers/field.sh
#
# Each scenario is one of bench/scenarios, or nat-skew with an event 40%
# into the run, at RATE requests per second (default 4000: 5 s per run):
#
#   failover    app-02 killed at 40%, back at 70%
#   reload      the load balancer reloaded at 40% (HAProxy -sf, nginx -s
#               reload, lbctl's reload)
#   restart     the load balancer restarted at 40% (HAProxy SIGTERM and
#               start, nginx -s quit and start, lbctl SIGTERM and start,
#               with and without a state file, and lbctl's SIGUSR2 upgrade)
#   instances   3 instances of the load balancer, each connection to one of
#               them by a hash, as ECMP spreads them
#   tls         nat-skew over https: the load balancers terminate TLS with a
#               test certificate (openssl), the lab resumes TLS sessions
#
# The lab's backends listen on fixed addresses (--target-backends) that
# HAProxy and nginx are configured with, and the lab reaches them through
# --target. The lab itself reloads and restarts them at the event's time,
# through bench/peers/fieldctl.sh (--target-reload-cmd,
# --target-restart-cmd). Every row starts with fresh load balancers: no
# stick table outlives its row.
#
#   haproxy source       mode tcp, balance source
#   haproxy stick        mode tcp, balance roundrobin, stick on src
#   haproxy stick+peers  the same, its stick table in a peers section of the
#                        3 instances (a reload hands it to the new process,
#                        a restarted instance gets it back from the others)
#   haproxy cookie       mode http, balance roundrobin, cookie SERVERID insert
#   nginx ip_hash        http, ip_hash (keys on the first three octets of IPv4)
#   nginx hash           http, hash $remote_addr consistent
#   lbctl l4             lbctl's own L4 front door (source IP, /32)
#   lbctl l4 maglev      the same with balance.policy = "maglev"
#   lbctl l7             lbctl's own L7 front door (cookie)
#
# nginx's "sticky cookie" is only in the commercial nginx; the nginx of
# this machine (Debian's, without it) gets no cookie row.
set -euo pipefail

SCENARIOS=${SCENARIOS:-"nat-skew cgnat failover reload restart instances tls"}
RATE=${RATE:-4000}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export PATH="$PATH:/usr/local/go/bin:/usr/sbin"

for tool in haproxy nginx jq go openssl; do
	command -v "$tool" >/dev/null 2>&1 || { echo "missing: $tool" >&2; exit 1; }
done

. "$here/common.sh"
start_work field
export FIELD_WORK=$work
ctl="$here/fieldctl.sh"

# Addresses of their own, so that other loopback services on the usual
# ports do not collide: the backends and instance 1 on FIELD_IP, instances
# 2 and 3 on the next two addresses.
IP=${FIELD_IP:-127.0.0.40}
ip_plus() { echo "${IP%.*}.$((${IP##*.} + $1))"; }
INST=("$IP" "$(ip_plus 1)" "$(ip_plus 2)")
B=($IP:19101 $IP:19102 $IP:19103 $IP:19104)

# Ports of each load balancer, on every instance's address.
declare -A PORT=([haproxy source]=18101 [haproxy stick]=18102 [haproxy cookie]=18103
	[haproxy stick+peers]=18104 [haproxy cookie tls]=18105
	[nginx ip_hash]=18201 [nginx hash]=18202 [nginx hash tls]=18203)

# A test certificate for the tls scenario: HAProxy wants the key in the
# same file, nginx and lbctl apart.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$IP" \
	-addext "subjectAltName=IP:$IP" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/site.pem"
printf 'mode = "l7"\n[[tls.certificates]]\ncert = "%s"\nkey = "%s"\n' "$work/cert.pem" "$work/key.pem" >"$work/tls.toml"

# --- HAProxy ------------------------------------------------------------------
servers() { # $1: extra per server
	local i=1
	for b in "${B[@]}"; do
		printf '\tserver app-%02d %s check inter 100ms rise 1 fall 2 %s\n' "$i" "$b" "${1//ID/app-0$i}"
		i=$((i + 1))
	done
}
haproxy_cfg() { # $1: instance address
	local ip=$1 i
	printf 'global\n\tmaxconn 8000\n'
	printf 'defaults\n\ttimeout connect 2s\n\ttimeout client 30s\n\ttimeout server 30s\n\tretries 2\n\toption redispatch\n'
	printf 'peers field\n'
	for i in 1 2 3; do printf '\tpeer hap%d %s:18190\n' "$i" "${INST[i - 1]}"; done
	printf 'frontend source\n\tmode tcp\n\tbind %s:%d\n\tdefault_backend source\n' "$ip" "${PORT[haproxy source]}"
	printf 'backend source\n\tmode tcp\n\tbalance source\n'
	servers ""
	printf 'frontend stick\n\tmode tcp\n\tbind %s:%d\n\tdefault_backend stick\n' "$ip" "${PORT[haproxy stick]}"
	printf 'backend stick\n\tmode tcp\n\tbalance roundrobin\n\tstick-table type ip size 1m expire 30m\n\tstick on src\n'
	servers ""
	printf 'frontend stickp\n\tmode tcp\n\tbind %s:%d\n\tdefault_backend stickp\n' "$ip" "${PORT[haproxy stick+peers]}"
	printf 'backend stickp\n\tmode tcp\n\tbalance roundrobin\n\tstick-table type ip size 1m expire 30m peers field\n\tstick on src\n'
	servers ""
	printf 'frontend cookie\n\tmode http\n\tbind %s:%d\n\tdefault_backend cookie\n' "$ip" "${PORT[haproxy cookie]}"
	printf 'backend cookie\n\tmode http\n\tbalance roundrobin\n\tcookie SERVERID insert indirect nocache\n\toption httpchk GET /healthz\n'
	servers "cookie ID"
	printf 'frontend cookie_tls\n\tmode http\n\tbind %s:%d ssl crt %s\n\tdefault_backend cookie\n' "$ip" "${PORT[haproxy cookie tls]}" "$work/site.pem"
}

# --- nginx --------------------------------------------------------------------
nginx_cfg() { # $1: instance address, $2: prefix
	local ip=$1 p=$2
	echo "worker_processes 1; pid $p/nginx.pid; error_log $p/error.log crit;"
	echo "events { worker_connections 16384; }"
	echo "http { access_log off;"
	echo "  client_body_temp_path $p; proxy_temp_path $p; fastcgi_temp_path $p;"
	echo "  uwsgi_temp_path $p; scgi_temp_path $p;"
	printf '  upstream iphash { ip_hash;'
	for b in "${B[@]}"; do printf ' server %s max_fails=1 fail_timeout=2s;' "$b"; done
	printf ' }\n  upstream hash { hash $remote_addr consistent;'
	for b in "${B[@]}"; do printf ' server %s max_fails=1 fail_timeout=2s;' "$b"; done
	echo " }"
	echo "  server { listen $ip:${PORT[nginx ip_hash]}; location / { proxy_pass http://iphash; } }"
	echo "  server { listen $ip:${PORT[nginx hash]}; location / { proxy_pass http://hash; } }"
	echo "  server { listen $ip:${PORT[nginx hash tls]} ssl; ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;"
	echo "    location / { proxy_pass http://hash; } }"
	echo "}"
}

for i in 1 2 3; do
	haproxy_cfg "${INST[i - 1]}" >"$work/haproxy-$i.cfg"
	mkdir -p "$work/nginx-$i"
	nginx_cfg "${INST[i - 1]}" "$work/nginx-$i" >"$work/nginx-$i/nginx.conf"
done

# fresh stops every HAProxy and nginx instance and starts them again, so
# that a row starts without the previous row's stick tables.
stop_all() {
	for i in 1 2 3; do
		"$ctl" stop haproxy "$i" || true
		"$ctl" stop nginx "$i" || true
	done
}
fresh() {
	stop_all
	for i in 1 2 3; do
		"$ctl" start haproxy "$i" 2>>"$work/haproxy.log" || { cat "$work/haproxy.log" >&2; return 1; }
		"$ctl" start nginx "$i" 2>>"$work/nginx.log" || { cat "$work/nginx.log" >&2; return 1; }
	done
}
trap 'stop_all; end_work' EXIT

# --- scenarios ----------------------------------------------------------------
# at PERCENT: that share of a nat-skew run, as a duration.
at() {
	local users requests
	users=$(sed -n 's/^users = //p' "$repo/bench/scenarios/nat-skew.toml")
	requests=$(sed -n 's/^requests = //p' "$repo/bench/scenarios/nat-skew.toml")
	echo "$((users * requests * 1000 / RATE * $1 / 100))ms"
}

# scenario NAME: the shipped scenario (nat-skew for the others) at RATE,
# without its mode (a row names its own).
scenario() {
	local name=$1 base=$1
	case $name in failover | reload | restart | instances | tls) base=nat-skew ;; esac
	sed -e '/^mode = /d' -e "s/^rate = .*/rate = $RATE/" "$repo/bench/scenarios/$base.toml"
	case $name in
	failover) printf '\n[events]\nfail = ["app-02@%s"]\nrecover = ["app-02@%s"]\n' "$(at 40)" "$(at 70)" ;;
	reload) printf '\n[events]\nreload = ["%s"]\n' "$(at 40)" ;;
	restart) printf '\n[events]\nrestart = ["%s"]\n' "$(at 40)" ;;
	esac
}

# row SCENARIO LABEL MODE [LB]: runs the lab and prints one row. With LB
# (a key of PORT), the lab measures that load balancer through --target,
# on instance 1, or on all three in the instances scenario; without, it
# measures lbctl itself, LABEL's words after "lbctl l4"/"lbctl l7" saying
# how (maglev, state file, upgrade, cluster).
row() {
	local sc=$1 label=$2 mode=$3 lb=${4:-} file=$work/$1-$RANDOM.toml json=$work/out.json
	scenario "$sc" >"$file"
	if [ -n "$lb" ]; then
		fresh
		local n=1 addrs="" i
		[ "$sc" = instances ] && n=3
		local scheme=""
		[ "$sc" = tls ] && scheme=https://
		for ((i = 0; i < n; i++)); do addrs+="\"$scheme${INST[i]}:${PORT[$lb]}\","; done
		printf '\n[target]\n%s = [%s]\nbackends = [%s]\n' "$mode" "${addrs%,}" "$(printf '"%s",' "${B[@]}" | sed 's/,$//')" >>"$file"
		printf 'reload_cmd = "%s reload %s 1"\nrestart_cmd = "%s restart %s 1"\n' "$ctl" "${lb%% *}" "$ctl" "${lb%% *}" >>"$file"
	else
		local run="mode = \"$mode\""
		[ "$sc" = instances ] && run+="\ninstances = 3"
		case $label in *cluster*) run+="\ncluster = true" ;; esac
		case $label in *state*) run+="\nstate_file = true" ;; esac
		sed -i "s/^\[run\]/[run]\n$run/" "$file"
		case $label in *upgrade*) sed -i 's/^restart = /upgrade = /' "$file" ;; esac
		case $label in *maglev*)
			printf '[balance]\npolicy = "maglev"\n' >"$work/maglev.toml"
			sed -i "1i config = \"$work/maglev.toml\"" "$file"
			;;
		esac
		[ "$sc" = tls ] && sed -i "1i config = \"$work/tls.toml\"" "$file"
	fi
	"$work/lbctl" bench --scenario "$file" --json "$json" >"$work/last.txt" 2>&1 || { cat "$file" "$work/last.txt" >&2; return 1; }
	[ -z "${DEBUG:-}" ] || jq -c ".runs[0].failure_reasons" "$json" >&2
	jq -r --arg sc "$sc" --arg lb "$label" '.runs[0] |
		[$sc, $lb, (.max_over_mean*100|round/100), (.cov*1000|round/1000), .broken_sessions,
		 ([.broken_by_cause | to_entries[] | select(.value > 0) | "\(.key) \(.value)"] | join(", ") | if . == "" then "-" else . end),
		 "\(.failed_requests)/\(.total_requests)"] | @tsv' "$json"
}

# rows SCENARIO: every load balancer's rows of one scenario.
rows() {
	local sc=$1 x=""
	if [ "$sc" = tls ]; then
		row tls "haproxy cookie" l7 "haproxy cookie tls"
		row tls "nginx hash" l7 "nginx hash tls"
		row tls "lbctl l7" l7
		return
	fi
	[ "$sc" = instances ] && x=" x3"
	row "$sc" "haproxy source$x" l4 "haproxy source"
	row "$sc" "haproxy stick$x" l4 "haproxy stick"
	case $sc in reload | restart | instances) row "$sc" "haproxy stick+peers$x" l4 "haproxy stick+peers" ;; esac
	row "$sc" "haproxy cookie$x" l7 "haproxy cookie"
	row "$sc" "nginx ip_hash$x" l7 "nginx ip_hash"
	row "$sc" "nginx hash$x" l7 "nginx hash"
	row "$sc" "lbctl l4$x" l4
	case $sc in
	restart)
		row "$sc" "lbctl l4 state file" l4
		row "$sc" "lbctl l4 upgrade" l4
		;;
	reload | nat-skew | cgnat | failover) row "$sc" "lbctl l4 maglev" l4 ;;
	instances)
		row "$sc" "lbctl l4 maglev$x" l4
		row "$sc" "lbctl l4 cluster$x" l4
		;;
	esac
	row "$sc" "lbctl l7$x" l7
}

{
	printf 'scenario\tload balancer\tmax/mean\tcov\tbroken\tby cause\tfailed\n'
	for sc in $SCENARIOS; do rows "$sc"; done
} | column -t -s $'\t'
