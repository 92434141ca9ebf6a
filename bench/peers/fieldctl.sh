#!/usr/bin/env bash
# Starts, stops, reloads and restarts the HAProxy and nginx instances of
# the field table (bench/peers/field.sh), as an operator's service manager
# would: field.sh calls it between rows, and the lab calls it at the time
# of a --reload@ or --restart@ (--target-reload-cmd, --target-restart-cmd).
#
#   FIELD_WORK=DIR fieldctl.sh start|stop|reload|restart haproxy|nginx N
#
# DIR is field.sh's work folder, which holds haproxy-N.cfg and nginx-N/.
# Each instance runs as a daemon with a PID file, as under systemd:
#
#   haproxy reload    haproxy -D ... -sf OLD: a new process takes the
#                     listeners, the old one finishes its connections (and,
#                     with a peers section, hands its stick tables over)
#   haproxy restart   SIGTERM (what systemd's stop sends), wait, start
#   nginx reload      nginx -s reload: new workers read the config again
#   nginx restart     nginx -s quit (Debian's stop), wait, start
set -euo pipefail
export PATH="$PATH:/usr/sbin"

action=$1 lb=$2 n=$3
work=${FIELD_WORK:?FIELD_WORK names the work folder of field.sh}

# gone PID waits until the process has exited (a zombie counts as gone:
# a daemon's parent is not this script), 20 s at most.
gone() {
	local pid=$1 i
	for i in $(seq 400); do
		[ -e "/proc/$pid" ] || return 0
		grep -q ') Z ' "/proc/$pid/stat" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "fieldctl: $lb $n (pid $pid) did not exit" >&2
	return 1
}

case $lb in
haproxy)
	cfg=$work/haproxy-$n.cfg pidf=$work/haproxy-$n.pid
	start() { haproxy -D -f "$cfg" -p "$pidf" -L "hap$n" "$@"; }
	stop() {
		[ -s "$pidf" ] || return 0
		local pid
		pid=$(cat "$pidf")
		kill -TERM "$pid" 2>/dev/null || true
		gone "$pid"
		rm -f "$pidf"
	}
	case $action in
	start) start ;;
	stop) stop ;;
	reload) start -sf "$(cat "$pidf")" ;;
	restart) stop && start ;;
	*) echo "fieldctl: $action?" >&2; exit 2 ;;
	esac
	;;
nginx)
	prefix=$work/nginx-$n
	ng() { nginx -p "$prefix" -c "$prefix/nginx.conf" "$@"; }
	stop() {
		[ -s "$prefix/nginx.pid" ] || return 0
		local pid
		pid=$(cat "$prefix/nginx.pid")
		ng -s quit 2>/dev/null || true
		gone "$pid"
	}
	case $action in
	start) ng ;;
	stop) stop ;;
	reload) ng -s reload ;;
	restart) stop && ng ;;
	*) echo "fieldctl: $action?" >&2; exit 2 ;;
	esac
	;;
*) echo "fieldctl: $lb?" >&2; exit 2 ;;
esac
