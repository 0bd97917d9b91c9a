#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The demo as deployed, run at boot inside the container of
# container-demo.sh by outpost-demo.service: outpostd started by bus
# activation, the bridge by its socket, a machine importing over TLS, a
# crash and a restart, and the journal: all under the shipped units.
set -u
. "$(dirname "$(readlink -f "$0")")/site.sh"
tmp=$(mktemp -d)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '# %s\n' "$*"; "$@"; }

step "outpostd.service is installed, not running: the first call starts it (bus activation)"
run systemctl is-active outpostd.service
run outpostctl status
run systemctl status --no-pager --lines=0 outpostd.service

step "Root may change things; anyone else may read, and polkit refuses their changes"
run outpostctl users create alice display-name="Alice Example"
useradd --no-create-home --shell /bin/sh visitor
run setpriv --reuid=visitor --regid=visitor --init-groups outpostctl users list
run setpriv --reuid=visitor --regid=visitor --init-groups outpostctl users create mallory

step "kill -9: systemd restarts outpostd (Restart=on-failure), nothing acknowledged is lost"
run systemctl kill -s KILL outpostd.service
for i in $(seq 50); do systemctl is-active --quiet outpostd.service && break; sleep 0.2; done
run systemctl show -p NRestarts outpostd.service
run outpostctl users show alice

step "The bridge's listener on port 7411, started by outpost-bridge.socket when a peer comes"
setup_tls "$tmp/certs" >/dev/null
run systemctl enable --now outpost-bridge.socket
run systemctl is-active outpost-bridge.service

step "A machine: a second bus, with an importer whose upstream is the listener (mutual TLS)"
run start_machine "$tmp/certs"
run systemctl status --no-pager --lines=0 outpost-bridge.service
run outpostctl --address="$machine" bridge status
run outpostctl --address="$machine" users create bob
run outpostctl users list

step "The journal, by unit and priority"
run journalctl --no-pager -o short -u outpostd.service -u outpost-bridge.service -p info
