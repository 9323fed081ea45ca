#!/usr/bin/env bash
# Build dist/cert-agent_VERSION_ARCH.deb: the desktop agent in a virtual environment at
# /opt/cert-agent (Debian's own python3), its systemd user unit, an XDG autostart entry for
# desktops without a systemd user session, /etc/cert-agent/config.toml with the tax bureau
# origins, and (at install) the browsers' managed policy for those origins.
#   bash installer/linux/build-deb.sh [--origin https://etax.example.com ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
origins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --origin) origins+=(--origin "$2"); shift 2 ;;
    *) echo "usage: $0 [--origin ORIGIN ...]" >&2; exit 2 ;;
  esac
done
[ "${#origins[@]}" -gt 0 ] || origins=(--origin https://etax.example.com)

version=$(/usr/bin/python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
arch=$(dpkg --print-architecture)
prefix=/opt/cert-agent
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"

# The agent and its desktop dependencies, on the system's Python (pyscard builds with swig).
/usr/bin/python3 -m venv "$stage$prefix"
"$stage$prefix/bin/pip" install -q --disable-pip-version-check --no-compile ".[desktop]" 2>&1 | grep -v '^WARNING: Location' || true
"$stage$prefix/bin/python" -c 'import pkcs11, smartcard, cert_agent.agent.cli'
rm -rf build  # pip's in-tree build folder
rm -rf "$stage$prefix/bin/pip"* "$stage$prefix/bin/activate"* "$stage$prefix/bin/Activate.ps1"
# The server's command and code: the desktop package carries the agent only (it never imports them).
rm -f "$stage$prefix/bin/cert-verifier"
rm -rf "$stage$prefix"/lib/python3*/site-packages/cert_agent/verifier
find "$stage$prefix" -name __pycache__ -type d -prune -exec rm -rf {} +  # compiled at install instead
# Built in the staging folder: point the scripts and the environment at where they will live.
grep -rlI "$stage$prefix" "$stage$prefix" | xargs -r sed -i "s#$stage$prefix#$prefix#g"

python=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
"$stage$prefix/bin/python" -m installer.render "${origins[@]}" --deb-stage "$stage" --version "$version" --arch "$arch" --python "$python"
mkdir -p "$stage/usr/share/doc/cert-agent"
cp README.md "$stage/usr/share/doc/cert-agent/README.md"
mkdir -p dist
dpkg-deb --root-owner-group --build "$stage" "dist/cert-agent_${version}_${arch}.deb" >/dev/null
echo "dist/cert-agent_${version}_${arch}.deb"
