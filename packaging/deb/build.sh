#!/usr/bin/env bash
# Build a self-contained .deb of appban: the agent and its Python dependencies (pip --target, as
# wheels for the building interpreter) under /usr/lib/appban, /usr/bin/appban, the systemd unit,
# and the documented example config as /etc/appban/agent.yaml (a conffile, so upgrades keep the
# administrator's edits). No maintainer scripts: installing never starts or enables the service;
# `systemctl enable --now appban` (or `appban service install`) is the administrator's choice.
#
# Usage: packaging/deb/build.sh [OUTDIR]   (PYTHON=/path/to/python3 picks the interpreter)
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$top/dist}
python=${PYTHON:-python3}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/pyproject.toml" | head -1)
arch=$(dpkg --print-architecture)
pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
pynext=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

"$python" -m pip install --disable-pip-version-check -q --no-compile --target "$stage/usr/lib/appban" "$top"
rm -rf "$stage/usr/lib/appban/bin"
install -D -m 0755 /dev/stdin "$stage/usr/bin/appban" <<'WRAPPER'
#!/bin/sh
# appban from its private library folder (its dependencies are bundled there, not in dist-packages)
exec /usr/bin/python3 -c 'import sys; sys.path.insert(0, "/usr/lib/appban"); from agent.cli import main; sys.exit(main())' "$@"
WRAPPER
install -D -m 0644 "$top/packaging/systemd/appban.service" "$stage/lib/systemd/system/appban.service"
install -D -m 0640 "$top/config/agent.example.yaml" "$stage/etc/appban/agent.yaml"
install -d -m 0755 "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: appban
Version: $version
Architecture: $arch
Maintainer: appban developers <appban@example.invalid>
Depends: python3 (>= $pyver), python3 (<< $pynext)
Section: admin
Priority: optional
Homepage: https://github.com/appban/appban
Description: endpoint agent that keeps banned apps off government devices
 Lists installed apps (package managers, app bundles, registry hives, phones, MDM exports),
 checks them against a signed ban list, reports, and blocks where local config allows it.
CONTROL
echo /etc/appban/agent.yaml > "$stage/DEBIAN/conffiles"
mkdir -p "$out"
deb="$out/appban_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
