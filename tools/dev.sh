#!/bin/bash
# Set up a Debian 12 machine for Outpost, build it, and run either the demo
# or the whole test suite.
#
#   tools/dev.sh demo    install, build, run the demo deployment
#   tools/dev.sh container-demo
#                        install, build, run the demo in a booted Debian 12
#                        container under the shipped units (root)
#   tools/dev.sh test    install, build, run make check, the sanitizer run,
#                        make distcheck and the fuzz targets (FUZZ_SECONDS
#                        each, default 20); ends with "N passed, N failed"
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

packages=(
	build-essential autoconf automake autoconf-archive autopoint libtool pkg-config gettext
	libsystemd-dev libglib2.0-dev libglib2.0-bin libsqlite3-dev uuid-dev libpq-dev postgresql
	dbus dbus-daemon systemd python3 python3-gi python3-dbusmock libglib-testing-0-dev
	libgnutls28-dev gnutls-bin libxml2-utils xz-utils
	libgirepository1.0-dev gobject-introspection gir1.2-glib-2.0 gi-docgen
	clang libclang-rt-14-dev
	bash-completion man-db groff-base iproute2 polkitd util-linux
	debootstrap systemd-container
)

install_packages() {
	local missing=()
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "== Installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# build DIR [configure options]: an out-of-tree build in DIR.
build() {
	local dir=$1; shift
	[ -x configure ] || NOCONFIGURE=1 ./autogen.sh >/dev/null 2>&1
	mkdir -p "$dir"
	(cd "$dir" && "$top/configure" --quiet --enable-werror --prefix=/usr --sysconfdir=/etc \
		--localstatedir=/var "$@" && make -j"$(nproc)" --quiet)
}

# The libFuzzer build (clang): without --enable-werror, since the code is
# kept free of GCC's warnings, not of every one clang has.
build_fuzz() {
	[ -x configure ] || NOCONFIGURE=1 ./autogen.sh >/dev/null 2>&1
	mkdir -p build-fuzz
	(cd build-fuzz && CC=clang "$top/configure" --quiet --prefix=/usr --sysconfdir=/etc \
		--localstatedir=/var --enable-fuzzing)
}

passed=0
failed=0

# check DIR TARGET [MAKE ARGS]: run a make target, add its automake summary
# to the totals.
check() {
	local dir=$1 target=$2 log
	shift 2
	log=$(mktemp)
	echo "== make $target $* in $dir"
	if (cd "$dir" && make -j"$(nproc)" "$target" "$@") >"$log" 2>&1; then :; else
		tail -n 60 "$log"
		find "$dir" -name 'test-suite.log' -newer "$log" -exec tail -n 120 {} \; 2>/dev/null || true
	fi
	local p f
	p=$(awk '/^# PASS:/ {s += $3} END {print s + 0}' "$log")
	f=$(awk '/^# (FAIL|ERROR|XPASS):/ {s += $3} END {print s + 0}' "$log")
	grep -E '^# (TOTAL|PASS|SKIP|XFAIL|FAIL|XPASS|ERROR):' "$log" || true
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
		# The target itself failed before any test ran.
		grep -q '^# TOTAL' "$log" || f=1
	fi
	passed=$((passed + p))
	failed=$((failed + f))
	rm -f "$log"
}

case "${1:-}" in
demo)
	install_packages
	build build
	exec "$top/tools/demo.sh" "$top/build"
	;;
container-demo)
	install_packages
	build build
	exec "$top/tests/system/container-demo.sh" "$top/build"
	;;
test)
	install_packages
	build build
	check build check
	build build-sanitizers --enable-sanitizers
	check build-sanitizers check
	check build distcheck
	# Each fuzz target counts as one test.
	if build_fuzz; then
		check build-fuzz fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
	else
		echo "== configure --enable-fuzzing failed"
		failed=$((failed + 1))
	fi
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	;;
*)
	echo "usage: $0 demo|container-demo|test" >&2
	exit 2
	;;
esac
