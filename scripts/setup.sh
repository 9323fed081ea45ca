#!/usr/bin/env bash
# Set up cert-agent on Debian (or Ubuntu): the system packages it needs and a Python
# virtual environment in .venv with the project installed in it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# softhsm2: the token the tests and the demo run on; opensc: pkcs11-tool, an independent
# PKCS#11 client for tests, and the generic smart-card module; pcscd, libpcsclite-dev, swig:
# PC/SC for pyscard; chromium and fonts-noto-cjk: the browser the end-to-end tests drive,
# with the Chinese glyphs its screenshots need; firefox-esr: the browser some taxpayers use,
# driven through Marionette in the same flows; postgresql: the verifier's shared store, which the
# tests start in a temporary directory of their own (tests/harness/postgres.py); swtpm ... dbus:
# tpm2-pkcs11 over a software TPM, the second PKCS#11 implementation the agent is tested on
# (tests/harness/tpm.py); vsmartcard-vpcd: a virtual reader in pcscd, for the PC/SC hot-plug tests
# (tests/harness/vcard.py); libssl-dev: the software SKF device (softskf/, built below over
# libcrypto), the SM2 medium the tests and the demo use; strace: which thread of the verifier
# syncs the SQLite files (tests/verifier/test_sqlite_database.py).
APT_PACKAGES=(softhsm2 opensc pcscd libpcsclite-dev swig gcc libssl-dev python3-venv python3-dev postgresql
  swtpm swtpm-tools tpm2-tools tpm2-abrmd libtss2-tcti-tabrmd0 libtpm2-pkcs11-1 libtpm2-pkcs11-tools dbus
  vsmartcard-vpcd strace)
if [ "${CERT_AGENT_BROWSER:-1}" = 1 ]; then APT_PACKAGES+=(chromium firefox-esr fonts-noto-cjk); fi

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: cert-agent needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'  # dev = desktop + verifier + test tools
.venv/bin/python -c 'import pkcs11, PyKCS11, smartcard, cert_agent' # fail here, not later, if an install went wrong
bash softskf/build.sh  # softskf/lib/libsoftskf.so: the software SKF device
