#!/bin/sh
# Runs a daemon test program (named in the .bridged file) unchanged, but
# with the harness in bridged mode: the test talks to the machine bus of a
# central/site/machine deployment, two TLS bridge hops from outpostd.
prog=$(cat "$1")
OUTPOST_TEST_BRIDGED=1
export OUTPOST_TEST_BRIDGED
exec "./$prog" --tap
