# Shared by run.sh, field.sh and idle.sh, which source it after setting
# $repo: the work folder, the processes to end at exit, and the binaries.

# start_work NAME [PKG...] makes the work folder $work (removed at exit
# unless KEEP is set), ends every process listed in $pids at exit, and
# builds lbctl (or copies $LBCTL_BIN, to compare another build) and each
# ./bench/peers/PKG into $work.
start_work() {
	local name=$1
	shift
	work=$(mktemp -d "/tmp/lbctl-$name.XXXXXX")
	pids=()
	trap end_work EXIT
	echo "building lbctl ..." >&2
	(
		if [ -n "${LBCTL_BIN:-}" ]; then
			cp "$LBCTL_BIN" "$work/lbctl" || exit 1
		else
			cd "$repo" && go build -o "$work/lbctl" ./cmd/lbctl || exit 1
		fi
		cd "$repo" || exit 1
		for p in "$@"; do go build -o "$work/$p" "./bench/peers/$p" || exit 1; done
	)
}

# end_work ends the processes in $pids and removes $work unless KEEP is set.
end_work() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -n "${KEEP:-}" ] || rm -rf "$work"
}
