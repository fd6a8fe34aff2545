#!/usr/bin/env bash
# Build the appban .deb with debhelper and pybuild from packaging/deb/debian: the agent into
# Debian's dist-packages, depending on Debian's own python3-psutil, -requests, -yaml, -schedule,
# -cryptography and -idna (nothing bundled, so it runs with whatever python3 the
# release ships); /usr/bin/appban; the systemd unit, installed but neither enabled nor started;
# the example config as the conffile /etc/appban/agent.yaml; state removed on purge only.
#
# Usage: packaging/deb/build.sh [OUTDIR]   Prints the path of the .deb. DEB_VERSION=V builds
# version V instead (a snapshot or a test's upgrade), with a changelog entry saying so. Needs dpkg-dev, debhelper,
# dh-python, pybuild-plugin-pyproject, python3-all, python3-setuptools (scripts/apt-packages.txt).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mkdir -p "${1:-$top/dist}" && cd "${1:-$top/dist}" && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/pyproject.toml" | head -1)
logged=$(dpkg-parsechangelog -l "$top/packaging/deb/debian/changelog" -S Version)
if [ "$logged" != "$version" ]; then
    echo "build.sh: debian/changelog is at $logged but pyproject.toml at $version: add a changelog entry (dch -v $version)" >&2
    exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/appban-$version"
mkdir "$src"
# The tracked and new files of the checkout (no .venv, caches or build output).
(cd "$top" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src" 2>/dev/null) \
    || (cd "$top" && tar --exclude=.venv --exclude=.git --exclude='*.egg-info' --exclude=dist -cf - . | tar -xf - -C "$src")
rm -rf "$src/debian"
cp -r "$top/packaging/deb/debian" "$src/debian"
cp "$top/packaging/systemd/appban.service" "$src/debian/appban.service"
if [ -n "${DEB_VERSION:-}" ]; then
    { printf 'appban (%s) unstable; urgency=medium\n\n  * Snapshot build of %s.\n\n -- %s  %s\n\n' \
        "$DEB_VERSION" "$version" "appban developers <appban@example.invalid>" "$(date -R)"
      cat "$top/packaging/deb/debian/changelog"; } > "$src/debian/changelog"
    version=$DEB_VERSION
fi
# Debian's tools, with Debian's python3, whatever a developer's PATH puts first.
(cd "$src" && env PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b >"$work/build.log" 2>&1) || {
    tail -40 "$work/build.log" >&2
    exit 1
}
deb="$out/appban_${version}_all.deb"
mv "$work/appban_${version}_all.deb" "$deb"
echo "$deb"
