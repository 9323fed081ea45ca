#!/usr/bin/env bash
# Build the software SKF device (softskf.c) into softskf/lib/libsoftskf.so, over the system's OpenSSL 3
# libcrypto (libssl-dev). Rebuilt only when the source is newer. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p softskf/lib  # not build/: pip and the Debian package build clear that one
if [ ! -f softskf/lib/libsoftskf.so ] || [ softskf/softskf.c -nt softskf/lib/libsoftskf.so ]; then
  gcc -std=c11 -Wall -Wextra -Werror -O2 -shared -fPIC -fvisibility=hidden \
    -o softskf/lib/libsoftskf.so.tmp softskf/softskf.c -lcrypto -lpthread
  mv softskf/lib/libsoftskf.so.tmp softskf/lib/libsoftskf.so
fi
