#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# test-completion.sh: the bash completion of outpostctl, sourced into bash,
# completes verbs, sub-verbs, options, and user names from "outpostctl
# users list" (a stand-in outpostctl prints a fixed list). Speaks TAP.
set -u

completion=${OUTPOST_COMPLETION:?run this from make check}

if ! command -v bash >/dev/null 2>&1; then
	echo "1..0 # SKIP bash is not installed"
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A stand-in outpostctl: "users list" and "presence" as the real one
# prints them, and the bus options it was given, so the test can see they
# are passed on.
cat > "$tmp/outpostctl" <<'STUB'
#!/bin/sh
echo "$*" >> "${0%/*}/calls"
case "$*" in
*presence)
	cat <<'LIST'
NAME  ID                                    SINCE
anna  0c0d7f6e-1111-4b0a-9a55-0b7c2f1d2e3f  2025-03-01 09:00:00 UTC
-     5d1e8a7b-3333-4b0a-9a55-0b7c2f1d2e3f  2025-03-01 09:05:00 UTC

2 users online.
LIST
	exit 0 ;;
esac
cat <<'LIST'
NAME  DISPLAY NAME  EMAIL  ENABLED  ID
ann   Ann           a@x    yes      6a3c5e0e-2d7b-4b0a-9a55-0b7c2f1d2e3f
anna  Anna                 yes      0c0d7f6e-1111-4b0a-9a55-0b7c2f1d2e3f
bob   Bob                  no       9f1e8a7b-2222-4b0a-9a55-0b7c2f1d2e3f

3 users listed.
LIST
STUB
chmod +x "$tmp/outpostctl"

# complete LINE: prints the completions bash offers at the end of LINE.
complete_line() {
	PATH="$tmp:$PATH" bash --norc --noprofile -c '
		. "$1" || exit 1
		line=$2
		read -r -a COMP_WORDS <<< "$line"
		case $line in *" ") COMP_WORDS+=("") ;; esac
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMP_LINE=$line COMP_POINT=${#line}
		_outpostctl outpostctl "${COMP_WORDS[COMP_CWORD]}"
		printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " " | sed "s/ \$//"
	' bash "$completion" "$1"
}

n=0
check() {
	n=$((n + 1))
	got=$(complete_line "$1")
	if [ "$got" = "$2" ]; then
		echo "ok $n - '$1' completes to '$2'"
	else
		echo "not ok $n - '$1' completes to '$got', expected '$2'"
	fi
}

echo "1..15"
check "outpostctl us" "users"
check "outpostctl " "bridge events presence publish send status users"
check "outpostctl users " "create delete list set show"
check "outpostctl bridge " "peers reconnect status"
check "outpostctl users show an" "ann anna"
check "outpostctl --session presence online b" "bob"
check "outpostctl --session presence offline " "anna"
check "outpostctl users set ann ena" "enabled="
check "outpostctl events --fo" "--follow"
check "outpostctl send ann -- he" ""
check "outpostctl send ann --req" "--request-id="
check "outpostctl users set ann enabled=t" "true"
check "outpostctl events --topic=pr" "presence"
check "outpostctl --address=unix:path=/tmp/bus users show b" "bob"
n=$((n + 1))
if grep -qx -- "--session users list" "$tmp/calls" &&
	grep -qx -- "--address=unix:path=/tmp/bus users list" "$tmp/calls"; then
	echo "ok $n - user names come from the bus the command line names"
else
	echo "not ok $n - the stand-in was called as: $(cat "$tmp/calls")"
fi
