#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-man.sh: every manual page of the build renders without a warning
# (man --warnings) and has a NAME section that whatis can read (lexgrog).
# Run from the top build directory by "make check", which sets
# OUTPOST_MAN_PAGES; speaks TAP.
set -u

pages=${OUTPOST_MAN_PAGES:?OUTPOST_MAN_PAGES is not set: run this from make check}

if ! command -v man >/dev/null 2>&1; then
	echo "1..0 # SKIP man (man-db) is not installed"
	exit 0
fi
have_lexgrog=no
command -v lexgrog >/dev/null 2>&1 && have_lexgrog=yes

export LC_ALL=C.UTF-8 MANWIDTH=80
# man-db's sandbox needs seccomp, which containers may lack.
export MAN_DISABLE_SECCOMP=1

set -- $pages
echo "1..$(($# * 2))"
n=0
err=$(mktemp)
trap 'rm -f "$err"' EXIT
for page in "$@"; do
	n=$((n + 1))
	if [ ! -s "$page" ]; then
		echo "not ok $n - $page: missing or empty"
	elif man --warnings -E UTF-8 -l "$page" >/dev/null 2>"$err" && [ ! -s "$err" ]; then
		echo "ok $n - $page renders without warnings"
	else
		echo "not ok $n - $page: man --warnings says:"
		sed 's/^/# /' "$err"
	fi
	n=$((n + 1))
	if [ "$have_lexgrog" = no ]; then
		echo "ok $n - $page: NAME section # SKIP lexgrog is not installed"
	elif out=$(lexgrog "$page" 2>&1) && ! printf '%s\n' "$out" | grep -q 'parse failed'; then
		echo "ok $n - $page: NAME section: ${out#*: }"
	else
		echo "not ok $n - $page: lexgrog cannot read its NAME section: $out"
	fi
done
