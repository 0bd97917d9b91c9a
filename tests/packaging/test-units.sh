#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The systemd units as built: `systemd-analyze verify` finds nothing to say
# about them, and `systemd-analyze security --offline=true` rates each
# service 2.0 or lower (issue 6, Hardening). TAP output; skipped with a
# message when systemd-analyze is missing.
#
# verify needs the programs that ExecStart= names to exist; the test runs
# it on copies of the units whose ExecStart= points at the programs just
# built, after checking that the real ExecStart= names the installed path.

builddir=${OUTPOST_BUILDDIR:-$PWD}
libexecdir=${OUTPOST_LIBEXECDIR:-/usr/libexec}
bindir=${OUTPOST_BINDIR:-/usr/bin}
max_exposure=${OUTPOST_MAX_EXPOSURE:-2.0}
analyze=${SYSTEMD_ANALYZE:-systemd-analyze}

if ! command -v "$analyze" >/dev/null 2>&1; then
	echo "1..0 # SKIP systemd-analyze is missing (Debian package systemd)"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/../common/tap.sh"

# unit program installed-path: a copy of UNIT in $tmp whose ExecStart=
# runs the built PROGRAM, once the real one is checked to be INSTALLED-PATH.
prepare() {
	unit=$1 program=$2 installed=$3
	src=$builddir/data/$unit
	if [ ! -f "$src" ]; then
		echo "$src is missing" >"$tmp/out"; not_ok "$unit is built"; return 1
	fi
	if grep -q "^ExecStart=$installed\( \|\$\)" "$src"; then
		ok "$unit runs $installed"
	else
		grep '^ExecStart=' "$src" >"$tmp/out"; not_ok "$unit runs $installed"
	fi
	sed "s|^ExecStart=$installed|ExecStart=$builddir/$program|" "$src" >"$tmp/$unit"
}

prepare outpostd.service outpostd "$libexecdir/outpostd"
prepare outpost-bridge.service outpost-bridge "$bindir/outpost-bridge"
cp "${OUTPOST_SRCDIR:-.}/data/outpost-bridge.socket" "$tmp/" 2>/dev/null ||
	cp "$builddir/data/outpost-bridge.socket" "$tmp/" 2>/dev/null

for unit in outpostd.service outpost-bridge.service outpost-bridge.socket; do
	[ -f "$tmp/$unit" ] || { : >"$tmp/out"; not_ok "systemd-analyze verify $unit (not found)"; continue; }
	# verify prints its findings and may still exit 0: both must be clean.
	if (cd "$tmp" && SYSTEMD_LOG_LEVEL=notice "$analyze" verify --man=no --generators=no "./$unit") >"$tmp/out" 2>&1 &&
	   [ ! -s "$tmp/out" ]; then
		ok "systemd-analyze verify $unit"
	else
		not_ok "systemd-analyze verify $unit"
	fi
done

for unit in outpostd.service outpost-bridge.service; do
	[ -f "$tmp/$unit" ] || continue
	(cd "$tmp" && "$analyze" security --offline=true --no-pager "./$unit") >"$tmp/out" 2>&1
	level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$tmp/out")
	if [ -n "$level" ] && awk -v l="$level" -v m="$max_exposure" 'BEGIN { exit !(l <= m) }'; then
		echo "# $unit: exposure $level"
		ok "systemd-analyze security rates $unit $level (at most $max_exposure)"
	else
		grep -v '✓' "$tmp/out" >"$tmp/out2"; mv "$tmp/out2" "$tmp/out"
		not_ok "systemd-analyze security rates $unit ${level:-?} (at most $max_exposure)"
	fi
done

echo "1..$n"
[ "$failed" -eq 0 ]
