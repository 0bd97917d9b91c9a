#!/bin/sh
# Regenerate the build system from configure.ac and Makefile.am.
set -e
srcdir=$(dirname "$0")
test -n "$srcdir" || srcdir=.
cd "$srcdir"
autoreconf --force --install --verbose
if [ -z "$NOCONFIGURE" ]; then
	exec ./configure "$@"
fi
