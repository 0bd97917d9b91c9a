# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by tests/system/test-system.sh and tests/system/container-demo.sh:
# a Debian 12 root with Outpost installed, booted with systemd-nspawn.
#
#   base_root            the cached base root in $base, made once (needs
#                        debootstrap and the network the first time)
#   install_root BUILD ROOT
#                        a copy of $base in ROOT with `make install` from
#                        BUILD, and the files of tests/system in
#                        /usr/local/lib/outpost-system-test
#   boot_root ROOT ARGS...
#                        boots ROOT (systemd-nspawn -b ARGS...), loopback only
#
# $srcdir must be set. The base root is kept in $OUTPOST_SYSTEM_TEST_CACHE
# (default /var/cache/outpost-system-test), keyed by the suite, the mirror
# and the package list, so that changing any of them makes a new one.

suite=bookworm
# The archive to install from: debootstrap's own default unless set.
mirror=${OUTPOST_SYSTEM_TEST_MIRROR:-}
cache=${OUTPOST_SYSTEM_TEST_CACHE:-/var/cache/outpost-system-test}
# Besides Outpost's own libraries (libpq5 for [Store] Backend=postgresql): polkitd, certtool and gnutls-cli, and
# procps for the kill of outpost-bridge.service's ExecReload=.
packages="systemd systemd-sysv dbus polkitd libglib2.0-0 libgnutls30 libsqlite3-0 libpq5 libuuid1 gnutls-bin procps"
base=$cache/$suite-$(printf '%s %s %s\n' "$suite" "$mirror" "$packages" | sha256sum | cut -c1-16)

# nspawn without -b is the chroot apt runs in: it mounts /proc, /sys and
# /dev for it and takes them all away again.
make_base() {
	work=$(mktemp -d "$cache/.new-XXXXXX")
	timeout 1800 debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus \
		"$suite" "$work/root" ${mirror:+"$mirror"} || return 1
	timeout 900 systemd-nspawn --quiet --register=no --keep-unit --pipe -D "$work/root" \
		-E DEBIAN_FRONTEND=noninteractive sh -c \
		"apt-get update -qq && apt-get install -y -qq --no-install-recommends $packages && apt-get clean" \
		</dev/null || return 1
	rm -rf "$work/root/var/lib/apt/lists/"*
	mv "$work/root" "$base" && rmdir "$work"
}

# One run makes it; the others wait for it (40 minutes at most).
base_root() {
	mkdir -p "$cache" || return 1
	(
		flock -w 2400 9 || exit 1
		[ -d "$base" ] && exit 0
		rm -rf "$cache"/.new-*
		make_base
	) 9>"$cache/lock"
}

install_root() {
	build=$1 root=$2
	cp -a --reflink=auto "$base" "$root" || return 1
	# The nested make must not inherit the jobserver of the make running us.
	(cd "$build" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL ${MAKE:-make} install DESTDIR="$root") || return 1
	ldconfig -r "$root"
	mkdir -p "$root/usr/local/lib/outpost-system-test"
	cp "$srcdir"/tests/system/*.sh "$srcdir/tests/common/tap.sh" "$srcdir/tests/common/make-test-certs.sh" \
		"$srcdir/tests/common/system-bus-conf.sh" "$root/usr/local/lib/outpost-system-test/"
}

# --private-network: only loopback inside, so the bridge's port is the
# container's own.
boot_root() {
	root=$1; shift
	systemd-nspawn --quiet --register=no --keep-unit --private-network \
		--machine="outpost-$$" -D "$root" -b "$@"
}
