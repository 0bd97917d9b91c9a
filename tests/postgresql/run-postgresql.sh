#!/bin/bash
# Runs a daemon test program (named in the .postgresql file) unchanged, but
# with outpostd keeping its store in PostgreSQL: a private cluster is made
# for the run (initdb and pg_ctl as an unprivileged account, a unix socket
# in a temporary directory, a random port), and the harness gives every
# test a database of its own in it (OUTPOST_TEST_POSTGRESQL).
set -u
prog=$(cat "$1")

bindir=${OUTPOST_TEST_PG_BINDIR:-}
if [ -z "$bindir" ]; then
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && bindir=$d
	done
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ] || [ ! -x "$bindir/pg_ctl" ]; then
	echo "1..0 # SKIP PostgreSQL's initdb and pg_ctl not found (apt-get install postgresql; tools/dev.sh does)"
	exit 0
fi

dir=$(mktemp -d /tmp/outpost-pg.XXXXXX) || exit 1
# PostgreSQL refuses to run as root: the cluster belongs to nobody then.
as=()
if [ "$(id -u)" = 0 ]; then
	chown nobody: "$dir"
	as=(setpriv --reuid=nobody --regid=nogroup --clear-groups --reset-env)
fi
port=$((20000 + RANDOM % 20000))

cleanup() {
	"${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
	rm -rf "$dir"
}
trap cleanup EXIT

if ! "${as[@]}" "$bindir/initdb" -D "$dir/data" -A trust -U outpost --no-sync >"$dir/initdb.log" 2>&1; then
	echo "Bail out! initdb failed:"; sed 's/^/# /' "$dir/initdb.log"; exit 1
fi
# fsync stays on: the store's durability is what is being tested.
if ! "${as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
	-o "-k $dir -p $port -c listen_addresses= -c max_connections=200" start >/dev/null 2>&1; then
	echo "Bail out! the PostgreSQL server did not start:"; sed 's/^/# /' "$dir/server.log"; exit 1
fi

OUTPOST_TEST_POSTGRESQL="host=$dir port=$port user=outpost"
export OUTPOST_TEST_POSTGRESQL
# A test may restart the server under a running outpostd (test-standby):
# a fast restart, as an operator's, with the options it was started with.
cat >"$dir/restart" <<EOF
#!/bin/sh
exec ${as[*]} "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -m fast restart >/dev/null
EOF
chmod +x "$dir/restart"
OUTPOST_TEST_PG_RESTART=$dir/restart
export OUTPOST_TEST_PG_RESTART
"./$prog" --tap
