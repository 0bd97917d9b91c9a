#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-translation.sh: outpostctl speaks German under LANGUAGE=de, and the
# polkit actions carry the German translations (po/de.po).
#
# OUTPOST_TRANSLATED_CTL is outpostctl built with its LOCALEDIR in the build
# tree (see po/Makefile.inc), OUTPOST_POLKIT_POLICY the built .policy.
# Run from the top build directory by "make check"; speaks TAP.
set -u

ctl=${OUTPOST_TRANSLATED_CTL:?run this from make check}
policy=${OUTPOST_POLKIT_POLICY:?run this from make check}

# glibc's gettext ignores LANGUAGE when the locale is "C"; C.UTF-8 is a
# real locale and always present on Debian, so LANGUAGE=de works without a
# de_DE locale being generated.
run_de() {
	env -u LC_ALL -u LC_MESSAGES LANG=C.UTF-8 LANGUAGE=de "$ctl" "$@"
}

echo "1..5"
out=$(run_de --help 2>&1)
case $out in
Aufruf:\ outpostctl*) echo "ok 1 - outpostctl --help is in German" ;;
*) echo "not ok 1 - outpostctl --help is not in German:"; printf '%s\n' "$out" | sed 's/^/# /' ;;
esac

out=$(run_de frobnicate 2>&1)
status=$?
if [ "$status" -eq 1 ] && [ "$out" = "outpostctl: Unbekanntes Verb »frobnicate« (siehe outpostctl --help)" ]; then
	echo "ok 2 - an error message is in German, exit status 1"
else
	echo "not ok 2 - status $status, message: $out"
fi

out=$(run_de users delete ann --if-tag 2>&1)
case $out in
"outpostctl: Die Option --if-tag braucht einen Wert") echo "ok 3 - a message with an argument is in German" ;;
*) echo "not ok 3 - got: $out" ;;
esac

out=$(env -u LC_ALL -u LC_MESSAGES -u LANGUAGE LANG=C.UTF-8 "$ctl" frobnicate 2>&1)
if [ "$out" = "outpostctl: Unknown verb 'frobnicate' (see outpostctl --help)" ]; then
	echo "ok 4 - without LANGUAGE the messages stay in English"
else
	echo "not ok 4 - got: $out"
fi

if grep -q '<description xml:lang="de">Outpost-Benutzer verwalten</description>' "$policy"; then
	echo "ok 5 - the polkit actions are translated"
else
	echo "not ok 5 - $policy has no German description of manage-users"
fi
