#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# system-bus-conf.sh SOCKET [INCLUDE...]: prints the configuration of a
# private dbus-daemon that behaves like Debian's system bus (deny by
# default: no names owned, no method calls but to the bus driver),
# listening on the unix socket SOCKET and including each INCLUDE (the
# project's policy, polkit's). For the demo and the shell tests; the C
# harness writes the same in tests/common/harness.c.
socket=$1
shift
cat <<EOF_CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
  </policy>
EOF_CONF
for include in "$@"; do
	echo "  <include ignore_missing=\"yes\">$include</include>"
done
echo "</busconfig>"
