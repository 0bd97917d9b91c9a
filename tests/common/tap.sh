# SPDX-License-Identifier: LGPL-2.1-or-later
# TAP for the shell tests: source it after setting $tmp (a scratch
# directory). ok/not_ok DESCRIPTION number the results; not_ok shows
# $tmp/out, where a check leaves what it saw. $failed counts the failures.
n=0
failed=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1))
	echo "not ok $n - $1"
	[ -s "$tmp/out" ] && sed 's/^/# /' "$tmp/out"
}
