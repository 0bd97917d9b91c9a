#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# make-test-certs.sh DIR: certificates for the bridge's TLS tests, made at
# test time so that none is ever shipped or expires in the tree.
#   ca.pem/ca.key            the CA the bridges trust
#   other-ca.pem/other-ca.key an unrelated CA
#   server.{pem,key}         "localhost", IP 127.0.0.1 and 10.231.0.2 (the test host in a
#                            network namespace of tests/bridge/test-bridge.c), signed by ca
#                            (server and client use)
#   site1.{pem,key}, site2.{pem,key}  client certificates signed by ca
#   intruder.{pem,key}       "site1" again, but signed by other-ca
#   site-1.{pem,key}         "site-1" for [Peers] patterns, with the server's names and uses
#                            (a site server dials up with it and listens with it)
#   kiosk-1.{pem,key}, kiosk-2.{pem,key}  client certificates "kiosk-1", "kiosk-2" signed by ca
#   stray.{pem,key}          "stray", signed by ca, for a name no pattern matches
#   empty.crl                ca's revocation list revoking nothing
#   revoked.crl              ca's revocation list revoking kiosk-2
#   revoked-server.crl       ca's revocation list revoking server
# Keys are ECDSA (fast to make) and mode 0600.
set -eu

dir=${1:?usage: make-test-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077
log=certtool.log
: > "$log"

run() {
        if ! "$@" >> "$log" 2>&1; then
                cat "$log" >&2
                echo "make-test-certs.sh: failed: $*" >&2
                exit 1
        fi
}

key() {
        run certtool --generate-privkey --key-type=ecdsa --outfile "$1.key"
        chmod 0600 "$1.key"
}

# ca NAME CN
ca() {
        key "$1"
        printf 'cn = "%s"\nca\ncert_signing_key\nexpiration_days = 2\n' "$2" > "$1.tmpl"
        run certtool --generate-self-signed --load-privkey "$1.key" --template "$1.tmpl" --outfile "$1.pem"
}

# leaf NAME CA TEMPLATE-LINES
leaf() {
        key "$1"
        printf '%s\nsigning_key\nexpiration_days = 2\n' "$3" > "$1.tmpl"
        run certtool --generate-certificate --load-privkey "$1.key" \
                --load-ca-certificate "$2.pem" --load-ca-privkey "$2.key" \
                --template "$1.tmpl" --outfile "$1.pem"
}

ca ca "Outpost test CA"
ca other-ca "Unrelated test CA"
# A site server both listens and imports: its certificate serves both ends.
leaf server ca 'cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
ip_address = "10.231.0.2"
tls_www_server
tls_www_client'
leaf site1 ca 'cn = "site1"
tls_www_client'
leaf site2 ca 'cn = "site2"
tls_www_client'
leaf intruder other-ca 'cn = "site1"
tls_www_client'
leaf site-1 ca 'cn = "site-1"
dns_name = "localhost"
ip_address = "127.0.0.1"
tls_www_server
tls_www_client'
for name in kiosk-1 kiosk-2 stray; do
        leaf "$name" ca "cn = \"$name\"
tls_www_client"
done

# crl NAME [CERTIFICATE]: ca's CRL, revoking CERTIFICATE when given.
crl() {
        printf 'crl_next_update = 2\ncrl_number = %s\n' "$(date +%s)" > "$1.tmpl"
        run certtool --generate-crl --load-ca-privkey ca.key --load-ca-certificate ca.pem \
                ${2:+--load-certificate "$2"} --template "$1.tmpl" --outfile "$1.crl"
}
crl empty
crl revoked kiosk-2.pem
crl revoked-server server.pem
rm -f ./*.tmpl
chmod 0644 ./*.pem ./*.crl
