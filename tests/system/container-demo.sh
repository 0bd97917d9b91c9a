#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# container-demo.sh BUILD_DIR: the demo as deployed. BUILD_DIR (configured
# with --prefix=/usr --sysconfdir=/etc --localstatedir=/var) is installed
# with make install DESTDIR= into a copy of the Debian 12 root of the
# system test, which systemd-nspawn boots; demo-inside.sh runs at boot
# under the shipped units. On a terminal the container then stays up: log
# in as root (no password) to look around, `poweroff` to leave. Otherwise
# it powers off after the demo. Run by `tools/dev.sh container-demo`.
set -eu

srcdir=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$srcdir/build}
here=$srcdir/tests/system
. "$here/container.sh"

[ "$(id -u)" = 0 ] || { echo "container-demo.sh: needs root (debootstrap, systemd-nspawn)" >&2; exit 1; }
grep -q '^prefix = /usr$' "$build/Makefile" ||
	{ echo "container-demo.sh: $build is not configured with --prefix=/usr" >&2; exit 1; }

tmp=$(mktemp -d /var/tmp/outpost-container-demo.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root

[ -d "$base" ] || echo "== Making the Debian 12 root in $base (once: a few minutes)"
base_root >"$tmp/log" 2>&1 || { tail -n 30 "$tmp/log"; exit 1; }
echo "== make install DESTDIR= into a copy of $base"
install_root "$build" "$root" >"$tmp/log" 2>&1 || { tail -n 30 "$tmp/log"; exit 1; }
cp "$here/outpost-demo.service" "$root/etc/systemd/system/"
ln -s ../outpost-demo.service "$root/etc/systemd/system/multi-user.target.wants/"

if [ -t 0 ] && [ -t 1 ]; then
	sed -i 's/^root:[^:]*:/root::/' "$root/etc/shadow"
	echo "== Booting; after the demo, log in as root (no password); poweroff leaves"
	boot_root "$root"
else
	mkdir -p "$root/etc/systemd/system/outpost-demo.service.d"
	printf '[Unit]\nSuccessAction=poweroff\nFailureAction=poweroff\n' \
		>"$root/etc/systemd/system/outpost-demo.service.d/poweroff.conf"
	echo "== Booting; the container powers off after the demo"
	timeout --kill-after=15 300 sh -c '. "$1"; boot_root "$2" --console=read-only systemd.show_status=no' \
		sh "$here/container.sh" "$root" </dev/null
fi
