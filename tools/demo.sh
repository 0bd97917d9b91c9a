#!/bin/bash
# The demo deployment of DESIGN.md: a central bus with outpostd and a
# listening bridge, a site bus whose bridge imports from central and
# listens, and a machine bus whose bridge imports from the site, linked over
# mutual TLS on loopback with certificates made for the demo. The scenario
# acts from the machine's bus, through two hops, with outpostctl and busctl,
# and shows an outage honestly.
#
#   tools/demo.sh BUILD_DIR
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
work=$(mktemp -d /tmp/outpost-demo-XXXXXX)
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

# bus NAME: a private, system-bus-like dbus-daemon with the project's policy;
# its address in $bus_address. (Not run in $(...): its pid must be ours to
# stop at exit.)
bus() {
	local dir=$work/$1
	mkdir -p "$dir"
	sh "$top/tests/common/system-bus-conf.sh" "$dir/bus" "$top/data/org.outpost.Outpost1.conf" >"$dir/bus.conf"
	dbus-daemon --config-file="$dir/bus.conf" --nofork --print-address=1 >"$dir/address" 2>/dev/null &
	pids+=($!)
	while [ ! -s "$dir/address" ]; do sleep 0.05; done
	bus_address=$(head -n1 "$dir/address")
}

wait_name() {  # wait_name ADDRESS
	until busctl --address="$1" status org.outpost.Outpost1 >/dev/null 2>&1; do sleep 0.05; done
}

bridge_state() {  # bridge_state ADDRESS
	busctl --address="$1" get-property org.outpost.Outpost1 /org/outpost/Outpost1/bridge \
		org.outpost.Outpost1.Bridge State 2>/dev/null | sed 's/^s "\(.*\)"$/\1/'
}

wait_state() {  # wait_state ADDRESS STATE
	until [ "$(bridge_state "$1")" = "$2" ]; do sleep 0.05; done
}

start_bridge() {  # start_bridge NAME ADDRESS ARGS...: sets bridge_pid
	local name=$1 address=$2; shift 2
	"$build/outpost-bridge" --address="$address" --config="$work/none.conf" \
		--tls-ca="$work/certs/ca.pem" --tls-cert="$work/certs/server.pem" --tls-key="$work/certs/server.key" \
		--reconnect-min-ms=200 --reconnect-max-ms=1000 --heartbeat-ms=300 --heartbeat-timeout-ms=900 \
		"$@" 2>>"$work/$name.log" &
	bridge_pid=$!
	pids+=($bridge_pid)
}

step "Certificates for the demo: a CA, and one certificate the bridges use both ways"
sh "$top/tests/common/make-test-certs.sh" "$work/certs" && ls "$work/certs"/*.pem

step "Three buses: central, site, machine"
bus central; central=$bus_address
bus site; site=$bus_address
bus machine; machine=$bus_address
central_port=$((20000 + RANDOM % 20000)); site_port=$((central_port + 1))
printf 'central %s\nsite    %s\nmachine %s\n' "$central" "$site" "$machine"

step "Central: outpostd, and a bridge that listens on 127.0.0.1:$central_port"
"$build/outpostd" --address="$central" --state-dir="$work/state" --config="$work/none.conf" \
	2>>"$work/outpostd.log" &
pids+=($!)
wait_name "$central"
start_bridge central "$central" --listen="tls:host=127.0.0.1,port=$central_port"
central_listener=$bridge_pid

step "Site: imports from central, listens on 127.0.0.1:$site_port; machine: imports from the site"
start_bridge site "$site" --upstream="tls:host=127.0.0.1,port=$central_port" \
	--listen="tls:host=127.0.0.1,port=$site_port"
start_bridge machine "$machine" --upstream="tls:host=127.0.0.1,port=$site_port"
wait_state "$machine" connected

M="$build/outpostctl --address=$machine"
C="$build/outpostctl --address=$central"

step "From the machine, two hops away, the service looks like central's"
run $M status
run busctl --address="$machine" get-property org.outpost.Outpost1 /org/outpost/Outpost1/bridge \
	org.outpost.Outpost1.Bridge State Upstream Hops

step "Create users, list them, change one, and try again with the now stale tag"
run $M users create ann display-name="Ann Example" attributes.desk=12
run $M users create bob
run $M users list
tag=$($M --json users show ann | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["tag"])')
run $M users set ann email=ann@example.org --if-tag="$tag"
run $M users set ann email=other@example.org --if-tag="$tag" || true

step "Bad input gets a clear error, from central, through both hops"
run $M users create "Not A Name" || true

step "Ann goes online from the machine, held as long as this client runs"
$M presence online ann >"$work/holder.log" 2>&1 &
holder=$!
pids+=($holder)
until $C presence | grep -q ann; do sleep 0.05; done
run $C presence

step "A message and an event, and the history as the machine sees it"
run $M send ann -- "Welcome to the shop"
run $M publish shop/door state=open
run $M events

step "Outage: the central listener dies; the machine says so and keeps its cached view"
kill "$central_listener"; wait "$central_listener" 2>/dev/null || true
wait_state "$machine" connecting
run $M bridge status
run $M users list || true
run busctl --address="$machine" get-property org.outpost.Outpost1 /org/outpost/Outpost1/presence \
	org.outpost.Outpost1.Presence OnlineCount Generation
# GetManagedObjects is answered from the machine bridge's cache as well: the
# object paths it lists include Ann's presence object.
printf '$ busctl --address=%s call org.outpost.Outpost1 /org/outpost/Outpost1 org.freedesktop.DBus.ObjectManager GetManagedObjects | grep -o PATHS\n' "$machine"
busctl --address="$machine" call org.outpost.Outpost1 /org/outpost/Outpost1 org.freedesktop.DBus.ObjectManager \
	GetManagedObjects | grep -o '"/org/outpost/Outpost1[^"]*"'

step "Meanwhile at central: three events the machine has not seen"
for i in 1 2 3; do $C publish shop/till sale="$i" >/dev/null; done
run $C events --since=5

step "The listener comes back: the site resynchronises, replays the events, re-asserts Ann's hold"
start_bridge central "$central" --listen="tls:host=127.0.0.1,port=$central_port"
wait_state "$machine" connected
run $M bridge status
run $C presence
sleep 0.5
run $M events --since=5

step "Done. The logs:"
for f in outpostd central site machine; do echo "--- $f"; cat "$work/$f.log"; done
