#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-install.sh: "make install DESTDIR=..." puts every file where it
# belongs, and with --prefix=/usr where Debian 12's dbus-daemon, systemd,
# polkit, man and bash-completion look; "make uninstall" takes it all back.
# Run from the top build directory by "make check" (docs/Makefile.inc sets
# OUTPOST_MAKE, OUTPOST_INSTALL_DIRS, OUTPOST_INSTALL_FEATURES and
# OUTPOST_LINGUAS_FILE); speaks TAP.
set -u

: "${OUTPOST_INSTALL_DIRS:?run this from make check}"
make=${OUTPOST_MAKE:-make}
for kv in $OUTPOST_INSTALL_DIRS $OUTPOST_INSTALL_FEATURES; do
	eval "dir_${kv%%=*}=\${kv#*=}"
done
linguas=$(grep -v '^#' "$OUTPOST_LINGUAS_FILE")

dest=$(mktemp -d)
log=$(mktemp)
trap 'chmod -R u+w "$dest" 2>/dev/null; rm -rf "$dest" "$log"' EXIT

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $*"; }

# The nested make must not inherit the jobserver of the make running us.
if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $make install DESTDIR="$dest" >"$log" 2>&1; then
	ok "make install DESTDIR=..."
else
	not_ok "make install DESTDIR=... failed:"
	tail -n 30 "$log" | sed 's/^/# /'
	echo "1..$n"
	exit 0
fi

# expect DIR FILE... : each is installed, as a regular file or a symlink.
expected=$(mktemp)
trap 'chmod -R u+w "$dest" 2>/dev/null; rm -rf "$dest" "$log" "$expected"' EXIT
expect() {
	d=$1; shift
	for f in "$@"; do
		echo "$d/$f" >> "$expected"
		if [ -f "$dest$d/$f" ] || [ -L "$dest$d/$f" ]; then
			ok "installed $d/$f"
		else
			not_ok "missing $d/$f"
		fi
	done
}
expect "$dir_bindir" outpostctl outpost-bridge
expect "$dir_libexecdir" outpostd
expect "$dir_libdir" liboutpost-1.so liboutpost-1.so.0
expect "$dir_includedir/outpost-1/outpost" outpost.h outpost-client.h outpost-error.h outpost-generated.h
expect "$dir_pkgconfigdir" outpost-1.pc
expect "$dir_interfacesdir" org.outpost.Outpost1.Registry.xml org.outpost.Outpost1.Users.xml \
	org.outpost.Outpost1.Presence.xml org.outpost.Outpost1.Messages.xml \
	org.outpost.Outpost1.Events.xml org.outpost.Outpost1.Bridge.xml \
	org.outpost.Outpost1.Listener.xml
expect "$dir_dbuspolicydir" org.outpost.Outpost1.conf
expect "$dir_dbussystemservicedir" org.outpost.Outpost1.service
expect "$dir_systemdsystemunitdir" outpostd.service outpost-bridge.service outpost-bridge.socket
expect "$dir_polkitactionsdir" org.outpost.Outpost1.policy
expect "$dir_polkitrulesdir" org.outpost.Outpost1.rules
expect "$dir_sysconfdir/outpost" outpostd.conf bridge.conf
expect "$dir_mandir/man1" outpostctl.1
expect "$dir_mandir/man5" outpostd.conf.5 outpost-bridge.conf.5 org.outpost.Outpost1.5
expect "$dir_mandir/man8" outpostd.8 outpost-bridge.8
expect "$dir_bashcompletiondir" outpostctl
for lang in $linguas; do
	expect "$dir_localedir/$lang/LC_MESSAGES" outpost.mo
done
if [ "$dir_introspection" = yes ]; then
	expect "$dir_girdir" Outpost-1.0.gir
	expect "$dir_typelibdir" Outpost-1.0.typelib
fi
if [ "$dir_docs" = yes ]; then
	expect "$dir_docdir/dbus" outpost-dbus-org.outpost.Outpost1.Users.xml
	expect "$dir_gidocdir" index.html
fi

# Programs are executable, and what the activation file and the units start
# is what was installed.
for f in "$dir_bindir/outpostctl" "$dir_bindir/outpost-bridge" "$dir_libexecdir/outpostd"; do
	if [ -x "$dest$f" ]; then ok "$f is executable"; else not_ok "$f is not executable"; fi
done
for f in "$dir_dbussystemservicedir/org.outpost.Outpost1.service" \
	"$dir_systemdsystemunitdir/outpostd.service" "$dir_systemdsystemunitdir/outpost-bridge.service"; do
	prog=$(sed -n 's/^\(Exec\|ExecStart\)=[-@:+!]*\([^ ]*\).*/\2/p' "$dest$f" 2>/dev/null | head -n 1)
	if [ -n "$prog" ] && [ -x "$dest$prog" ]; then
		ok "$f starts $prog, which is installed"
	else
		not_ok "$f starts '$prog', which is not installed"
	fi
done

# With --prefix=/usr, the directories are the ones the system reads.
if [ "$dir_prefix" = /usr ]; then
	check_dir() {
		name=$1 value=$2; shift 2
		for want in "$@"; do
			if [ "$value" = "$want" ]; then ok "$name is $value"; return; fi
		done
		not_ok "$name is $value, not one of: $*"
	}
	check_dir "D-Bus policy dir" "$dir_dbuspolicydir" /usr/share/dbus-1/system.d /etc/dbus-1/system.d
	check_dir "D-Bus activation dir" "$dir_dbussystemservicedir" /usr/share/dbus-1/system-services
	check_dir "systemd unit dir" "$dir_systemdsystemunitdir" /lib/systemd/system /usr/lib/systemd/system
	check_dir "polkit actions dir" "$dir_polkitactionsdir" /usr/share/polkit-1/actions
	check_dir "polkit rules dir" "$dir_polkitrulesdir" /usr/share/polkit-1/rules.d /etc/polkit-1/rules.d
	check_dir "bash completion dir" "$dir_bashcompletiondir" /usr/share/bash-completion/completions
	check_dir "man dir" "$dir_mandir" /usr/share/man
	check_dir "D-Bus interfaces dir" "$dir_interfacesdir" /usr/share/dbus-1/interfaces
fi

# Nothing lands outside the prefix, sysconfdir and the system directories;
# files that are not in the list above are named (not a failure: other
# parts of the project may install more).
strays=
others=
for f in $(cd "$dest" && find . \( -type f -o -type l \) | sed 's|^\.||' | sort); do
	grep -qxF "$f" "$expected" && continue
	case $f in
	"$dir_prefix"/* | "$dir_sysconfdir"/* | "$dir_dbuspolicydir"/* | "$dir_dbussystemservicedir"/* | \
		"$dir_systemdsystemunitdir"/* | "$dir_polkitactionsdir"/* | "$dir_polkitrulesdir"/* | \
		"$dir_bashcompletiondir"/*)
		others="$others $f" ;;
	*) strays="$strays $f" ;;
	esac
done
if [ -z "$strays" ]; then
	ok "nothing installed outside the configured directories"
else
	not_ok "installed outside the configured directories:$strays"
fi
for f in $others; do
	echo "# also installed: $f"
done

if env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $make uninstall DESTDIR="$dest" >"$log" 2>&1; then
	left=$(cd "$dest" && find . -type f -o -type l)
	if [ -z "$left" ]; then
		ok "make uninstall removes every file"
	else
		not_ok "make uninstall leaves:" $left
	fi
else
	not_ok "make uninstall DESTDIR=... failed:"
	tail -n 30 "$log" | sed 's/^/# /'
fi
echo "1..$n"
