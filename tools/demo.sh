#!/bin/bash
# The demo deployment: a private system-like bus with the project's policy,
# outpostd on it, and a short scripted scenario told with busctl.
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

cat >"$work/bus.conf" <<CONF
<busconfig>
  <type>system</type>
  <listen>unix:path=$work/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <include>$top/data/org.outpost.Outpost1.conf</include>
</busconfig>
CONF

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

dbus-daemon --config-file="$work/bus.conf" --nofork --print-address=1 >"$work/address" 2>/dev/null &
pids+=($!)
while [ ! -s "$work/address" ]; do sleep 0.05; done
address=$(head -n1 "$work/address")
export DBUS_SYSTEM_BUS_ADDRESS=$address

start_daemon() {
	"$build/outpostd" --address="$address" --state-dir="$work/state" --config="$work/outpostd.conf" \
		2>>"$work/outpostd.log" &
	daemon_pid=$!
	pids+=($daemon_pid)
	until busctl status org.outpost.Outpost1 >/dev/null 2>&1; do sleep 0.05; done
}

B="busctl --system"
U="org.outpost.Outpost1 /org/outpost/Outpost1/users org.outpost.Outpost1.Users"
P="org.outpost.Outpost1 /org/outpost/Outpost1/presence org.outpost.Outpost1.Presence"
E="org.outpost.Outpost1 /org/outpost/Outpost1/events org.outpost.Outpost1.Events"
M="org.outpost.Outpost1 /org/outpost/Outpost1/messages org.outpost.Outpost1.Messages"

field() {  # field JSON KEY: a key of the first a{sv} in a busctl --json reply
	/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["data"][0][sys.argv[2]]["data"])' "$1" "$2"
}

step "Start outpostd on a private bus ($address)"
start_daemon
run $B introspect org.outpost.Outpost1 /org/outpost/Outpost1/users --xml-interface | sed -n '/Outpost1.Users/,/<\/interface>/p' | grep -E 'method|arg' | head -12

step "The registry lists the managers"
run $B call org.outpost.Outpost1 /org/outpost/Outpost1 org.outpost.Outpost1.Registry ListManagers

step "Create two users"
run $B call $U CreateUser 'a{sv}' 3 name s ann display-name s "Ann Example" attributes 'a{ss}' 1 desk 12
run $B call $U CreateUser 'a{sv}' 1 name s bob
ann=$($B --json=short call $U LookupUser s ann)
id=$(field "$ann" id); tag=$(field "$ann" tag)

step "List them, one per page"
run $B call $U ListUsers su "" 1
run $B call $U ListUsers su ann 1

step "Save with the current tag, then again with the now stale tag"
run $B call $U SaveUser 'ssa{sv}' "$id" "$tag" 1 email s ann@example.org
run $B call $U SaveUser 'ssa{sv}' "$id" "$tag" 1 email s other@example.org || true

step "Bad input gets a clear error"
run $B call $U CreateUser 'a{sv}' 1 name s "Not A Name" || true

step "Ann goes online, held by a client that stays connected; the model shows it"
# A hold belongs to the connection that made it, so the holder must stay.
/usr/bin/python3 - "$id" <<'PY' &
import sys, time
from gi.repository import Gio, GLib
bus = Gio.bus_get_sync(Gio.BusType.SYSTEM)
gen = bus.call_sync("org.outpost.Outpost1", "/org/outpost/Outpost1/presence", "org.outpost.Outpost1.Presence",
                    "GoOnline", GLib.Variant("(su)", (sys.argv[1], 0)), None, 0, -1).unpack()[0]
print("holder: Ann is online, generation", gen, flush=True)
time.sleep(30)
PY
pids+=($!)
until $B get-property $P Online | grep -q "$id"; do sleep 0.05; done
run $B get-property $P Online Generation
step "A busctl call holds only as long as busctl lives: Bob comes and goes at once"
bob=$(field "$($B --json=short call $U LookupUser s bob)" id)
run $B call $P GoOnline su "$bob" 0
run $B get-property $P Online Generation

step "A message to Ann, and the event history"
run $B call $M Send ass 1 "$id" "Welcome to the shop"
run $B call $E Publish 'sa{sv}' shop/door 1 open b true
run $B call $E FetchSince stasu "" 0 0 20

step "Restart the daemon: users and history are kept, presence is volatile"
kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
start_daemon
run $B call $U GetUser s "$id"
run $B get-property $P Online
run $B get-property $E LastSeq

step "Done. The daemon's log:"
cat "$work/outpostd.log"
