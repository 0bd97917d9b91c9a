#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The checks of the system test, run inside the container that
# tests/system/test-system.sh boots, as outpost-system-test.service: Outpost
# as `make install` put it into a Debian 12 system, under its units exactly
# as shipped, with the real systemd, dbus-daemon and polkitd.
#
# TAP goes to /outpost-results/tap, numbered on from the count in
# /outpost-results/offset (the host's own checks come first); when all is
# done, /outpost-results/done holds "COUNT FAILED". Every wait is bounded.
set -u
here=$(dirname "$(readlink -f "$0")")
results=/outpost-results
tmp=$(mktemp -d)
exec >>"$results/tap" 2>>"$results/checks.log"
. "$here/tap.sh"
. "$here/site.sh"
n=$(cat "$results/offset")

bus=org.outpost.Outpost1
port=7411

# ok/not_ok from tap.sh; this adds the SKIP directive.
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
# check DESCRIPTION COMMAND...: ok when COMMAND succeeds; its output in $tmp/out.
check() {
	desc=$1; shift
	if "$@" >"$tmp/out" 2>&1; then ok "$desc"; else not_ok "$desc"; fi
}
# wait_until SECONDS COMMAND...: until COMMAND succeeds, at most SECONDS.
wait_until() {
	limit=$(($(date +%s) + $1)); shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$limit" ] || return 1
		sleep 0.2
	done
}
prop() { systemctl show -p "$2" --value "$1"; }
is_active() { [ "$(prop "$1" ActiveState)" = active ]; }
owner_pid() { busctl ${2:+--address="$2"} status "$1" 2>/dev/null | sed -n 's/^PID=//p'; }
# serving PID: outpostd runs as a new process (not PID) and owns the name.
serving() {
	pid=$(prop outpostd.service MainPID)
	[ "$pid" != 0 ] && [ "$pid" != "$1" ] && is_active outpostd.service && [ "$(owner_pid $bus)" = "$pid" ]
}
as_tester() { setpriv --reuid=tester --regid=tester --init-groups "$@"; }
bridge_state() {
	busctl --address="$machine" get-property $bus /org/outpost/Outpost1/bridge \
		org.outpost.Outpost1.Bridge State 2>/dev/null | sed 's/^s "\(.*\)"$/\1/'
}
connected() { [ "$(bridge_state)" = connected ]; }
# journal_has UNIT PRIORITY TEXT: a message of UNIT at PRIORITY or more urgent.
journal_has() { journalctl --no-pager -q -o cat -u "$1" -p "$2" | grep -q -- "$3"; }
# last_exit UNIT: how its main process last ended (exit-record.conf).
last_exit() { tail -n 1 "/run/outpost-exits/$1" 2>/dev/null; }
# stopped_cleanly UNIT: it is stopped, and its process exited with status 0
# (not killed, no timeout).
stopped_cleanly() {
	echo "$1: $(prop "$1" ActiveState), ended: $(last_exit "$1")"
	[ "$(prop "$1" ActiveState)" = inactive ] && [ "$(last_exit "$1")" = "success exited 0" ]
}

# --- the package as installed: accounts, units, polkit ----------------------
entry=$(getent passwd outpost-bridge)
echo "$entry" >"$tmp/out"
uid=$(echo "$entry" | cut -d: -f3)
if [ -n "$entry" ] && [ "$uid" -lt 1000 ] && [ "$(echo "$entry" | cut -d: -f7)" = /usr/sbin/nologin ]; then
	ok "systemd-sysusers made the system account outpost-bridge at boot ($entry)"
else
	not_ok "systemd-sysusers made the system account outpost-bridge at boot"
fi

for unit in outpostd.service outpost-bridge.service outpost-bridge.socket; do
	# verify may print findings and still exit 0: both must be clean.
	if SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no "$unit" >"$tmp/out" 2>&1 && [ ! -s "$tmp/out" ]; then
		ok "systemd-analyze verify $unit"
	else
		not_ok "systemd-analyze verify $unit"
	fi
done

# The rating tests/packaging/test-units.sh asks of the units offline: 2.0 at most.
for unit in outpostd.service outpost-bridge.service; do
	systemd-analyze security --no-pager "$unit" >"$tmp/security" 2>&1
	level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$tmp/security")
	if [ -n "$level" ] && awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }'; then
		ok "systemd-analyze security rates $unit $level (at most 2.0)"
	else
		grep -v '✓' "$tmp/security" >"$tmp/out"
		not_ok "systemd-analyze security rates $unit ${level:-?} (at most 2.0)"
	fi
done

check "polkitd knows the installed action org.outpost.Outpost1.manage-users" \
	pkaction --action-id org.outpost.Outpost1.manage-users

# --- bus activation, and who may do what with the real polkitd --------------
state=$(prop outpostd.service ActiveState)
echo "outpostd.service: $state" >"$tmp/out"
if [ "$state" = inactive ]; then ok "outpostd.service is not running before anyone calls it"
else not_ok "outpostd.service is not running before anyone calls it"; fi

if outpostctl status >"$tmp/out" 2>&1 && wait_until 10 serving 0; then
	ok "the first call to $bus starts outpostd.service, which owns the name"
else
	systemctl status --no-pager outpostd.service >>"$tmp/out" 2>&1
	not_ok "the first call to $bus starts outpostd.service, which owns the name"
fi

useradd --no-create-home --shell /bin/sh tester 2>"$tmp/out"
check "outpostctl status works for an unprivileged user" as_tester outpostctl status
if as_tester outpostctl users create from_tester >"$tmp/out" 2>&1; then
	not_ok "an unprivileged user may not create a user (polkit refuses)"
elif grep -q "org.outpost.Outpost1.manage-users" "$tmp/out"; then
	ok "an unprivileged user may not create a user (polkit refuses, naming the action)"
else
	not_ok "an unprivileged user may not create a user (polkit refuses, naming the action)"
fi
if outpostctl users show from_tester >"$tmp/out" 2>&1; then
	not_ok "the refused change changed nothing"
else
	ok "the refused change changed nothing"
fi

# --- kill -9: systemd restarts outpostd, nothing acknowledged is lost ------
outpostctl users create alice >"$tmp/out" 2>&1 &&
	outpostctl publish site/before-kill note=acknowledged >>"$tmp/out" 2>&1 ||
	not_ok "a user created and an event published before the kill"
pid=$(prop outpostd.service MainPID)
restarts=$(prop outpostd.service NRestarts)
kill -KILL "$pid"
if wait_until 30 serving "$pid" && [ "$(prop outpostd.service NRestarts)" -gt "$restarts" ]; then
	ok "outpostd killed with SIGKILL is restarted by systemd (Restart=on-failure)"
else
	systemctl status --no-pager outpostd.service >"$tmp/out" 2>&1
	not_ok "outpostd killed with SIGKILL is restarted by systemd (Restart=on-failure)"
fi
if outpostctl users show alice >"$tmp/out" 2>&1 &&
	outpostctl events --topic=site/before-kill >>"$tmp/out" 2>&1 && grep -q acknowledged "$tmp/out"; then
	ok "the user and the event acknowledged before the kill are still there"
else
	not_ok "the user and the event acknowledged before the kill are still there"
fi

# --- the bridge as a site server ---------------------------------------------
# As an operator would: the certificates in /etc/outpost/tls, the key the
# bridge's own, and the shipped bridge.conf naming them; the listener comes
# from outpost-bridge.socket.
setup_tls "$tmp/certs" >"$tmp/out" 2>&1 || not_ok "certificates made with certtool, installed in /etc/outpost/tls"

systemctl enable --now outpost-bridge.socket >"$tmp/out" 2>&1
if is_active outpost-bridge.socket && [ "$(prop outpost-bridge.service ActiveState)" = inactive ]; then
	ok "outpost-bridge.socket listens on port $port; the bridge waits for a peer"
else
	not_ok "outpost-bridge.socket listens on port $port; the bridge waits for a peer"
fi

# The machine: a second, system-like bus with the project's policy, and an
# importer on it whose upstream is the listener, over TLS. systemd-run
# returns once the importer is started, which for Type=notify is READY=1:
# the importer says so once it serves its first snapshot.
check "a machine's importer on a second bus starts (Type=notify), through the socket-activated listener" \
	start_machine "$tmp/certs"
# No waiting here: readiness means the snapshot is served already.
echo "Bridge.State: $(bridge_state)" >"$tmp/out"
if connected && outpostctl --address="$machine" users show alice >>"$tmp/out" 2>&1; then
	ok "once the importer is ready, the machine's bus serves the central users (Type=notify readiness)"
else
	not_ok "once the importer is ready, the machine's bus serves the central users (Type=notify readiness)"
fi

bridge_pid=$(prop outpost-bridge.service MainPID)
{ systemctl show -p ActiveState -p TriggeredBy -p MainPID outpost-bridge.service
  journalctl --no-pager -q -o cat -u outpost-bridge.service; } >"$tmp/out" 2>&1
if is_active outpost-bridge.service && [ "$(stat -c %U "/proc/$bridge_pid")" = outpost-bridge ] &&
	grep -q "Listening on the socket passed by the service manager" "$tmp/out"; then
	ok "the peer started outpost-bridge.service, as outpost-bridge, on the socket systemd passed it"
else
	not_ok "the peer started outpost-bridge.service, as outpost-bridge, on the socket systemd passed it"
fi

if outpostctl --address="$machine" users create carol >"$tmp/out" 2>&1 &&
	outpostctl users show carol >>"$tmp/out" 2>&1; then
	ok "a change from the machine reaches outpostd (polkit trusts the bridge's account)"
else
	not_ok "a change from the machine reaches outpostd (polkit trusts the bridge's account)"
fi

check "systemctl reload outpost-bridge" timeout 60 systemctl reload outpost-bridge.service
if wait_until 10 connected && [ "$(prop outpost-bridge.service MainPID)" = "$bridge_pid" ] &&
	journalctl --no-pager -q -u outpost-bridge.service | grep -q "Reloaded the CA, certificate and key"; then
	ok "the reload re-read the certificates and kept the bridge and its good peer"
else
	journalctl --no-pager -q -u outpost-bridge.service | tail -n 8 >"$tmp/out" 2>&1
	not_ok "the reload re-read the certificates and kept the bridge and its good peer"
fi
if wait_until 45 connected; then
	ok "the machine's importer is connected through the listener"
else
	systemctl status --no-pager outpost-bridge.service outpost-machine-bridge.service >"$tmp/out" 2>&1
	not_ok "the machine's importer is connected through the listener"
fi

# --- the journal --------------------------------------------------------------
# A certificate from another CA: the listener refuses it with a warning.
timeout 20 gnutls-cli --x509cafile="$tmp/certs/ca.pem" --x509certfile="$tmp/certs/intruder.pem" \
	--x509keyfile="$tmp/certs/intruder.key" --port=$port 127.0.0.1 </dev/null >/dev/null 2>&1
if wait_until 15 journal_has outpost-bridge.service warning "Refused" &&
	journal_has outpost-bridge.service info "Peer .*: connected" &&
	! journal_has outpost-bridge.service warning "Peer .*: connected"; then
	ok "the bridge's messages carry their priority (a refused peer: warning; a peer connected: info)"
else
	journalctl --no-pager -q -o short-monotonic -u outpost-bridge.service >"$tmp/out" 2>&1
	not_ok "the bridge's messages carry their priority (a refused peer: warning; a peer connected: info)"
fi
if journal_has outpostd.service info "Serving $bus" && ! journal_has outpostd.service notice "Serving $bus" &&
	! journalctl --no-pager -q -o cat -u outpostd.service -u outpost-bridge.service | grep -q '^<[0-7]>'; then
	ok "outpostd's messages carry their priority (Serving: info), with no level prefix left in the text"
else
	journalctl --no-pager -q -o short-monotonic -u outpostd.service >"$tmp/out" 2>&1
	not_ok "outpostd's messages carry their priority (Serving: info), with no level prefix left in the text"
fi
# The audit trail: the change's result finds it, with its caller.
seq=$(busctl call org.outpost.Outpost1 /org/outpost/Outpost1/events org.outpost.Outpost1.Events \
	Publish 'sa{sv}' system/audit 0 2>"$tmp/out" | sed -n 's/^t //p')
if [ -n "$seq" ] && wait_until 10 sh -c "journalctl --no-pager -q -o verbose OUTPOST_METHOD=Events.Publish \
	OUTPOST_RESULT=$seq | grep -q OUTPOST_CALLER_UID=0"; then
	ok "journalctl OUTPOST_RESULT=<seq> finds a change with its caller"
else
	journalctl --no-pager -q -o verbose -u outpostd.service | tail -n 30 >>"$tmp/out" 2>&1
	not_ok "journalctl OUTPOST_RESULT=<seq> finds a change with its caller"
fi
check "journal lines do not repeat the program's name" \
	sh -c "! journalctl --no-pager -q -o cat -u outpostd.service -u outpost-bridge.service | grep -q '^outpost[a-z-]*: '"

# --- systemctl stop: each service ends cleanly within its timeout -----------
timeout 60 systemctl stop outpost-machine-bridge.service
check "systemctl stop ends the machine's importer with status 0" stopped_cleanly outpost-machine-bridge.service
timeout 120 systemctl stop outpost-bridge.service outpost-bridge.socket
check "systemctl stop ends outpost-bridge.service with status 0" stopped_cleanly outpost-bridge.service
timeout 30 systemctl stop outpost-machine-bus.service

# --- losing the bus: outpostd exits non-zero and systemd restarts it -------
pid=$(prop outpostd.service MainPID)
restarts=$(prop outpostd.service NRestarts)
timeout 60 systemctl restart dbus.service
if wait_until 30 serving "$pid" && [ "$(prop outpostd.service NRestarts)" -gt "$restarts" ]; then
	ok "outpostd that loses its bus connection exits non-zero and is restarted"
else
	{ systemctl show -p MainPID -p ActiveState -p Result -p ExecMainCode -p ExecMainStatus -p NRestarts outpostd.service
	  journalctl --no-pager -q -o short-monotonic -u outpostd.service | tail -n 8; } >"$tmp/out" 2>&1
	echo "outpostd.service ended: $(last_exit outpostd.service)" >>"$tmp/out"
	not_ok "outpostd that loses its bus connection exits non-zero and is restarted"
	timeout 60 systemctl restart outpostd.service
fi

# Last: a clean stop saves the state; the next call brings it all back.
outpostctl users create dave >"$tmp/out" 2>&1 || not_ok "a user created before the stop"
timeout 120 systemctl stop outpostd.service
check "systemctl stop ends outpostd.service with status 0" stopped_cleanly outpostd.service
check "after the stop, bus activation brings outpostd back with its state" \
	sh -c 'outpostctl users show dave && outpostctl users show carol'

journalctl --no-pager -b -o short-monotonic >"$results/journal.txt" 2>&1
echo "$n $failed" >"$results/done"
