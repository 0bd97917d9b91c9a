#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The real polkitd, not the mock, judging outpostd's callers (issue 6): the
# installed actions parse, the rules file grants every action to the
# bridge's system account, and anyone else without an active session is
# refused with an error that names the action, changing nothing.
#
# polkitd reads its actions and rules only from fixed system directories,
# and the rule names the account outpost-bridge. So the test runs in a
# private mount namespace where those directories, /etc/passwd and
# /etc/group are bind-mounted copies with the project's files and the
# account added: nothing outside the namespace changes. TAP output;
# skipped with a message when not root, without polkitd or without mount
# namespaces.

builddir=${OUTPOST_BUILDDIR:-$PWD}
srcdir=${OUTPOST_SRCDIR:-$builddir/..}
polkitd=${POLKITD:-/usr/lib/polkit-1/polkitd}
dbus_daemon=${DBUS_DAEMON:-dbus-daemon}
busctl=${BUSCTL:-busctl}

skip() { echo "1..0 # SKIP $1"; exit 0; }

if [ -z "$OUTPOST_IN_MOUNT_NAMESPACE" ]; then
	[ "$(id -u)" = 0 ] || skip "needs root (a mount namespace, calls as other users)"
	[ -x "$polkitd" ] || skip "$polkitd is missing (Debian package polkitd)"
	command -v pkaction >/dev/null 2>&1 || skip "pkaction is missing (Debian package polkitd)"
	command -v gdbus >/dev/null 2>&1 || skip "gdbus is missing (Debian package libglib2.0-bin)"
	unshare --mount --propagation private true 2>/dev/null || skip "cannot make a mount namespace here"
	OUTPOST_IN_MOUNT_NAMESPACE=1 exec unshare --mount --propagation private sh "$0" "$@"
fi

set -u
tmp=$(mktemp -d)
pids=
cleanup() {
	for pid in $pids; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
	umount /usr/share/polkit-1/actions /etc/polkit-1/rules.d /etc/passwd /etc/group 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
chmod 0711 "$tmp"
. "$(dirname "$0")/../common/tap.sh"

# --- the namespace: project's actions and rules, and the bridge's account
mkdir -p "$tmp/actions" "$tmp/rules" "$tmp/state"
cp /usr/share/polkit-1/actions/* "$tmp/actions/" 2>/dev/null
cp "$builddir/data/org.outpost.Outpost1.policy" "$tmp/actions/" || skip "data/org.outpost.Outpost1.policy is not built"
cp /etc/polkit-1/rules.d/* "$tmp/rules/" 2>/dev/null
cp "$srcdir/data/org.outpost.Outpost1.rules" "$tmp/rules/50-org.outpost.Outpost1.rules"
cp /etc/passwd "$tmp/passwd"
cp /etc/group "$tmp/group"
if ! getent passwd outpost-bridge >/dev/null; then
	echo "outpost-bridge:x:61234:61234:Outpost bridge:/nonexistent:/usr/sbin/nologin" >>"$tmp/passwd"
	echo "outpost-bridge:x:61234:" >>"$tmp/group"
fi
mount --bind "$tmp/actions" /usr/share/polkit-1/actions &&
	mount --bind "$tmp/rules" /etc/polkit-1/rules.d &&
	mount --bind "$tmp/passwd" /etc/passwd &&
	mount --bind "$tmp/group" /etc/group || skip "cannot bind-mount in the mount namespace"
bridge_uid=$(getent passwd outpost-bridge | cut -d: -f3)
bridge_gid=$(getent passwd outpost-bridge | cut -d: -f4)

# --- a system-like bus with the project's policy and polkit's own
sh "$(dirname "$0")/../common/system-bus-conf.sh" "$tmp/system_bus_socket" \
	/usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf "$srcdir/data/org.outpost.Outpost1.conf" >"$tmp/bus.conf"
"$dbus_daemon" --config-file="$tmp/bus.conf" --nofork --nopidfile --print-address=1 >"$tmp/address" 2>"$tmp/bus.log" &
pids="$pids $!"
address=
for i in $(seq 100); do
	address=$(head -n 1 "$tmp/address" 2>/dev/null)
	[ -n "$address" ] && break
	sleep 0.1
done
[ -n "$address" ] || { cat "$tmp/bus.log"; echo "Bail out! dbus-daemon did not start"; exit 1; }
export DBUS_SYSTEM_BUS_ADDRESS=$address

# wait_for NAME: until NAME has an owner on the bus (10 s at most).
wait_for() {
	for i in $(seq 100); do
		"$busctl" --address="$address" status "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

"$polkitd" --no-debug >"$tmp/polkitd.log" 2>&1 &
pids="$pids $!"
wait_for org.freedesktop.PolicyKit1 || { cat "$tmp/polkitd.log"; echo "Bail out! polkitd did not start"; exit 1; }
printf '' >"$tmp/none.conf"
"$builddir/outpostd" --address="$address" --state-dir="$tmp/state" --config="$tmp/none.conf" >"$tmp/outpostd.log" 2>&1 &
pids="$pids $!"
wait_for org.outpost.Outpost1 || { cat "$tmp/outpostd.log"; echo "Bail out! outpostd did not start"; exit 1; }

echo "1..10"

# as UID GID: busctl ARGS..., with the output in $tmp/out
as() {
	uid=$1 gid=$2; shift 2
	setpriv --reuid="$uid" --regid="$gid" --clear-groups \
		"$busctl" --address="$address" --allow-interactive-authorization=no "$@" >"$tmp/out" 2>&1
}
call_as() {
	uid=$1 gid=$2 object=$3 method=$4; shift 4
	as "$uid" "$gid" call org.outpost.Outpost1 "/org/outpost/Outpost1/$object" \
		"org.outpost.Outpost1.$(echo "$object" | sed 's/^./\U&/')" "$method" "$@"
}

for action in manage-users set-presence send-messages publish-events manage-bridge relay-for-peers; do
	if pkaction --action-id "org.outpost.Outpost1.$action" --verbose >"$tmp/out" 2>&1 &&
		grep -q "implicit any: *no" "$tmp/out"; then
		ok "polkitd reads org.outpost.Outpost1.$action, not allowed to any user by default"
	else
		not_ok "polkitd reads org.outpost.Outpost1.$action, not allowed to any user by default"
	fi
done

# The bridge's account: granted by the rules file, with no session at all.
if call_as "$bridge_uid" "$bridge_gid" users CreateUser 'a{sv}' 1 name s from_site &&
	id=$(sed -n 's/^ss "\([^"]*\)".*/\1/p' "$tmp/out") && [ -n "$id" ] &&
	call_as "$bridge_uid" "$bridge_gid" presence GoOnline su "$id" 0 &&
	call_as "$bridge_uid" "$bridge_gid" messages Send ass 1 "$id" hello &&
	call_as "$bridge_uid" "$bridge_gid" events Publish 'sa{sv}' site/x 0; then
	ok "the outpost-bridge account may create users, set presence, send and publish"
else
	not_ok "the outpost-bridge account may create users, set presence, send and publish"
fi
# ... and send in the name of the peers it relays for.
if call_as "$bridge_uid" "$bridge_gid" messages SendWithOptions 'assa{sv}' 1 "$id" hello \
	1 relayed-by as 1 site-1; then
	ok "the outpost-bridge account may send in the name of its peers (relay-for-peers)"
else
	not_ok "the outpost-bridge account may send in the name of its peers (relay-for-peers)"
fi

# Anyone else without an active session: refused, naming the action.
# (gdbus, not busctl: busctl shows AccessDenied as "Access denied" alone.)
if ! setpriv --reuid=65534 --regid=65534 --clear-groups gdbus call --system --dest org.outpost.Outpost1 \
	--object-path /org/outpost/Outpost1/users --method org.outpost.Outpost1.Users.CreateUser \
	"{'name': <'from_nobody'>}" >"$tmp/out" 2>&1 &&
	grep -q "org.freedesktop.DBus.Error.AccessDenied: .*org.outpost.Outpost1.manage-users" "$tmp/out"; then
	ok "nobody is refused CreateUser with AccessDenied naming the action"
else
	not_ok "nobody is refused CreateUser with AccessDenied naming the action"
fi

# ... and nothing was written.
if call_as 0 0 users LookupUser s from_nobody; then
	not_ok "the refused CreateUser created nothing"
else
	grep -q "No user named 'from_nobody'" "$tmp/out" && ok "the refused CreateUser created nothing" ||
		not_ok "the refused CreateUser created nothing"
fi

[ -n "${OUTPOST_TEST_DEBUG:-}" ] && sed "s/^/# bus: /" "$tmp/bus.log" && sed "s/^/# polkitd: /" "$tmp/polkitd.log" && sed "s/^/# outpostd: /" "$tmp/outpostd.log"
[ -s "$tmp/outpostd.log" ] && grep -q "<[0-3]>" "$tmp/outpostd.log" && sed 's/^/# outpostd: /' "$tmp/outpostd.log"
[ "$failed" -eq 0 ]
