#!/usr/bin/env bash
# Build the appban .rpm with rpmbuild from packaging/rpm/appban.spec.
# Usage: packaging/rpm/build.sh [OUTDIR]   (PYTHON picks the interpreter that stages the agent;
# RPM_RELEASE=N builds release N, e.g. a test's upgrade)
# Prints the path of the .rpm.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mkdir -p "${1:-$top/dist}" && cd "${1:-$top/dist}" && pwd)
python=${PYTHON:-python3}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/pyproject.toml" | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/rpmbuild/SOURCES"
# The agent as the wheel lays it out (agent.bundled, agent.systemd), without its dependencies.
"$python" -m pip install --disable-pip-version-check -q --no-compile --no-deps \
    --target "$work/src/lib" "$top"
cp "$top/packaging/systemd/appban.service" "$work/src/appban.service"
cp "$top/config/agent.example.yaml" "$work/src/agent.yaml"
tar -C "$work/src" -cf "$work/rpmbuild/SOURCES/appban-$version.tar" lib appban.service agent.yaml
rpmbuild --quiet -bb --define "_topdir $work/rpmbuild" --define "version $version" --define "appban_release ${RPM_RELEASE:-1}" \
    --define "_build_id_links none" "$top/packaging/rpm/appban.spec" >"$work/build.log" 2>&1 || {
    tail -40 "$work/build.log" >&2
    exit 1
}
rpm=$(find "$work/rpmbuild/RPMS" -name "appban-$version-*.noarch.rpm" | head -1)
mv "$rpm" "$out/"
echo "$out/$(basename "$rpm")"
