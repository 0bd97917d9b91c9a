# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced inside the container by checks.sh and demo-inside.sh: the bridge
# set up as an operator would, and a machine on a second bus.
#
#   setup_tls DIR        certificates made in DIR (make-test-certs.sh); the
#                        CA, the server certificate and its key in
#                        /etc/outpost/tls, named by /etc/outpost/bridge.conf
#   start_machine DIR    a second, system-like bus (unit outpost-machine-bus)
#                        and an importer on it whose upstream is the
#                        listener on port 7411 (unit outpost-machine-bridge,
#                        Type=notify: systemd-run returns once it is ready)
# Both transient units are started with systemd-run, so they are bounded,
# logged and stopped like any other.

here=$(dirname "$(readlink -f "$0")")
machine_dir=/run/outpost-machine
machine=unix:path=$machine_dir/bus

setup_tls() {
	sh "$here/make-test-certs.sh" "$1" || return 1
	install -d -m 0755 /etc/outpost/tls
	install -m 0644 "$1/ca.pem" /etc/outpost/tls/ca.pem
	install -m 0644 "$1/server.pem" /etc/outpost/tls/bridge.pem
	install -m 0600 -o outpost-bridge -g outpost-bridge "$1/server.key" /etc/outpost/tls/bridge-key.pem
	# bridge.conf has no default for these: the operator names them.
	grep -q '^tls-ca=' /etc/outpost/bridge.conf ||
		printf 'tls-ca=/etc/outpost/tls/ca.pem\ntls-cert=/etc/outpost/tls/bridge.pem\ntls-key=/etc/outpost/tls/bridge-key.pem\n' \
			>>/etc/outpost/bridge.conf
}

start_machine() {
	certs=$1
	mkdir -p "$machine_dir"
	sh "$here/system-bus-conf.sh" "$machine_dir/bus" /usr/share/dbus-1/system.d/org.outpost.Outpost1.conf \
		>"$machine_dir/bus.conf"
	timeout 30 systemd-run --quiet --unit=outpost-machine-bus -p Type=notify -p TimeoutStartSec=20 \
		dbus-daemon --config-file="$machine_dir/bus.conf" --nofork --nopidfile || return 1
	install -m 0600 "$certs/site1.key" "$machine_dir/site1.key"
	: >"$machine_dir/none.conf"
	timeout 60 systemd-run --quiet --unit=outpost-machine-bridge -p Type=notify -p TimeoutStartSec=45 \
		/usr/bin/outpost-bridge --address="$machine" --config="$machine_dir/none.conf" \
		--upstream=tls:host=127.0.0.1,port=7411 --tls-ca="$certs/ca.pem" \
		--tls-cert="$certs/site1.pem" --tls-key="$machine_dir/site1.key" \
		--reconnect-min-ms=200 --reconnect-max-ms=1000 --heartbeat-ms=300 --heartbeat-timeout-ms=900
}
