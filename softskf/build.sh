#!/usr/bin/env bash
# Build the software SKF device (softskf.c) into build/libsoftskf.so, over the system's OpenSSL 3
# libcrypto (libssl-dev). Rebuilt only when the source is newer. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
if [ ! -f build/libsoftskf.so ] || [ softskf/softskf.c -nt build/libsoftskf.so ]; then
  gcc -std=c11 -Wall -Wextra -Werror -O2 -shared -fPIC -fvisibility=hidden \
    -o build/libsoftskf.so.tmp softskf/softskf.c -lcrypto -lpthread
  mv build/libsoftskf.so.tmp build/libsoftskf.so
fi
