#!/bin/sh
# Runs one GLib test program with TAP output for automake's tap-driver.
exec "$@" --tap
