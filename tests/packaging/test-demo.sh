#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The README's first command ends in tools/demo.sh: its scenario (three
# private buses, two TLS hops, an outage and the recovery) runs to its end
# with the programs just built. TAP output.

builddir=${OUTPOST_BUILDDIR:-$PWD}
srcdir=${OUTPOST_SRCDIR:?run this from make check}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "1..1"
if timeout 300 "$srcdir/tools/demo.sh" "$builddir" >"$log" 2>&1; then
	echo "ok 1 - the demo deployment runs its scenario to the end"
else
	echo "not ok 1 - the demo deployment runs its scenario to the end"
	tail -n 40 "$log" | sed 's/^/# /'
fi
