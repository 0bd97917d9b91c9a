#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The system test: Outpost deployed as systemd deploys it. The project,
# built for /usr, /etc and /var, is installed with `make install DESTDIR=`
# into a copy of a Debian 12 root, which systemd-nspawn boots; the checks
# (checks.sh, run by outpost-system-test.service inside) exercise the
# shipped units, bus activation, polkit, restarts, the bridge's socket
# activation and the journal, and power the container off.
#
# The base root (debootstrap and the runtime dependencies, about 300 MB) is
# cached in $OUTPOST_SYSTEM_TEST_CACHE (default /var/cache/outpost-system-test),
# keyed by the suite and the package list, so only the first run downloads.
# TAP output; skipped with the reason when not root, without systemd-nspawn
# or debootstrap, or with OUTPOST_SYSTEM_TEST=no. Run from the top build
# directory by `make check` (tests/system/Makefile.inc sets the paths).
set -u

builddir=${OUTPOST_BUILDDIR:-$PWD}
srcdir=${OUTPOST_SRCDIR:-$builddir/..}
here=$srcdir/tests/system
. "$here/container.sh"
boot_timeout=${OUTPOST_SYSTEM_TEST_TIMEOUT:-420}

skip() { echo "1..0 # SKIP $1"; exit 0; }

[ "${OUTPOST_SYSTEM_TEST:-yes}" != no ] || skip "OUTPOST_SYSTEM_TEST=no"
[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, systemd-nspawn)"
command -v systemd-nspawn >/dev/null 2>&1 || skip "systemd-nspawn is missing (Debian package systemd-container)"
[ "${OUTPOST_SANITIZERS:-no}" = no ] ||
	skip "a sanitizer build: the system test runs the binaries a distribution ships, in the plain build"
[ -d "$base" ] || command -v debootstrap >/dev/null 2>&1 ||
	skip "debootstrap is missing (Debian package debootstrap) and $base is not cached"

tmp=$(mktemp -d /var/tmp/outpost-system-test.XXXXXX)
nspawn_pid=
cleanup() {
	if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		kill "$nspawn_pid" 2>/dev/null; wait "$nspawn_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
. "$srcdir/tests/common/tap.sh"

# bail REASON: stop here (nothing further can run), showing $tmp/out.
bail() {
	[ -s "$tmp/out" ] && tail -n 40 "$tmp/out" | sed 's/^/# /'
	echo "Bail out! $1"
	exit 1
}
elapsed() { echo $(($(date +%s) - start)); }
start=$(date +%s)

# --- the base root, made once ------------------------------------------------
[ -d "$base" ] || echo "# making the Debian $suite base root in $base (once)"
base_root >"$tmp/out" 2>&1 || bail "cannot make the Debian $suite root in $base"
ok "a Debian $suite root with systemd, dbus and polkitd ($base, $(elapsed) s)"

# --- Outpost, built for the paths a distribution uses -------------------------
build=$builddir
if [ "${OUTPOST_PREFIX:-}" != /usr ] || [ "${OUTPOST_SYSCONFDIR:-}" != /etc ] ||
	[ "${OUTPOST_LOCALSTATEDIR:-}" != /var ]; then
	build=$tmp/build
	echo "# $builddir is configured for ${OUTPOST_PREFIX:-?}: building again for /usr in $build"
	mkdir -p "$build"
	(cd "$build" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL sh -c \
		"'$srcdir/configure' --quiet --prefix=/usr --sysconfdir=/etc --localstatedir=/var &&
		 timeout 1800 ${MAKE:-make} -j2 --quiet") >"$tmp/out" 2>&1 || bail "cannot build $srcdir for /usr"
fi
root=$tmp/root
install_root "$build" "$root" >"$tmp/out" 2>&1 || bail "make install DESTDIR= into a copy of the root failed"
ok "make install DESTDIR= into a copy of the root"
cp "$here/outpost-system-test.service" "$root/etc/systemd/system/"
ln -s ../outpost-system-test.service "$root/etc/systemd/system/multi-user.target.wants/"
for unit in outpostd outpost-bridge outpost-machine-bridge; do
	mkdir -p "$root/etc/systemd/system/$unit.service.d"
	cp "$here/exit-record.conf" "$root/etc/systemd/system/$unit.service.d/"
done
mkdir -p "$tmp/results"
echo "$n" >"$tmp/results/offset"

# --- boot it: the checks run inside and power the container off --------------
boot_start=$(date +%s)
timeout --kill-after=15 "$boot_timeout" sh -c '. "$1"; boot_root "$2" --bind="$3:/outpost-results" --console=pipe' \
	sh "$here/container.sh" "$root" "$tmp/results" </dev/null >"$tmp/boot.log" 2>&1 &
nspawn_pid=$!
wait "$nspawn_pid"
status=$?
nspawn_pid=
cat "$tmp/results/tap" 2>/dev/null
if [ -s "$tmp/results/done" ]; then
	read -r n in_failed <"$tmp/results/done"
	failed=$((failed + in_failed))
else
	n=$(sed -n 's/^\(not \)\{0,1\}ok \([0-9]*\) .*/\2/p' "$tmp/results/tap" 2>/dev/null | tail -n 1)
	n=${n:-1}
	failed=$((failed + 1))
	tail -n 60 "$tmp/boot.log" >"$tmp/out"
	not_ok "the checks inside the container ran to the end (systemd-nspawn: status $status)"
fi
echo "# boot, checks and power-off: $(($(date +%s) - boot_start)) s"
if [ "$status" -eq 0 ]; then
	ok "the container powered itself off"
else
	tail -n 40 "$tmp/boot.log" >"$tmp/out"
	not_ok "the container powered itself off (systemd-nspawn: status $status; 124 is the $boot_timeout s timeout)"
fi
if [ "$failed" -gt 0 ] && [ -s "$tmp/results/journal.txt" ]; then
	grep -E 'outpost|polkit|dbus-daemon' "$tmp/results/journal.txt" | tail -n 80 | sed 's/^/# journal: /'
fi
[ -s "$tmp/results/checks.log" ] && [ "$failed" -gt 0 ] && sed 's/^/# checks.sh: /' "$tmp/results/checks.log"
echo "# the system test took $(elapsed) s"
echo "1..$n"
[ "$failed" -eq 0 ]
