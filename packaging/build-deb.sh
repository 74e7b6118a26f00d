#!/usr/bin/env bash
# Build the Debian packages homesync and homesync-server, and the wheel, into dist/.
# The Python environment the packages carry (/opt/homesync) is made with Debian's own
# python3 from packaging/requirements.txt (pinned), then moved into place: its
# scripts name /opt/homesync, not the build directory. Needs the build packages
# (`make build-packages`: python3-venv, python3-dev, gcc and borg's -dev libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
python=${PYTHON:-/usr/bin/python3}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -1)
debversion="$version-1"
arch=$(dpkg --print-architecture)
pyver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
out=$top/dist
build=$top/build/deb
rm -rf "$build"
mkdir -p "$out" "$build"

say() { echo "make deb: $*" >&2; }

say "the Python environment (pinned dependencies; borg builds from source the first time)"
stage=$build/homesync
env=$stage/opt/homesync
"$python" -m venv "$env"
"$env/bin/pip" install -q --disable-pip-version-check --upgrade pip
"$env/bin/pip" wheel -q --disable-pip-version-check --no-deps -w "$out" .
wheel=$(ls -t "$out"/homesync-"$version"-*.whl | head -1)
"$env/bin/pip" install -q --disable-pip-version-check --no-compile -r packaging/requirements.txt
"$env/bin/pip" install -q --disable-pip-version-check --no-compile --no-deps "$wheel"
"$env/bin/pip" check >/dev/null
rm -rf "$env"/lib/python*/site-packages/pip "$env"/lib/python*/site-packages/pip-* "$env"/bin/pip* \
    "$env"/bin/activate* "$env"/bin/Activate.ps1
find "$env" -name __pycache__ -type d -prune -exec rm -rf {} +
# The environment's own paths: from the build directory to where the package puts it.
grep -rlI --null "$env" "$env" | xargs -0 -r sed -i "s|$env|/opt/homesync|g"
if grep -rqI "$build" "$env"; then
    say "build paths left in the environment:"; grep -rlI "$build" "$env" >&2; exit 1
fi

say "homesync"
install -d "$stage/usr/bin" "$stage/usr/lib/systemd/user" "$stage/etc/homesync" "$stage/usr/share/doc/homesync"
ln -s /opt/homesync/bin/homesync "$stage/usr/bin/homesync"
install -m 0644 systemd/homesync-agent.service "$stage/usr/lib/systemd/user/"
install -m 0644 packaging/agent.toml "$stage/etc/homesync/agent.toml"
install -m 0644 README.md docs/user-guide.md docs/architecture.md "$stage/usr/share/doc/homesync/"

say "homesync-server"
server=$build/homesync-server
install -d "$server/usr/bin" "$server/usr/lib/systemd/system" "$server/etc/homesync" \
    "$server/usr/share/doc/homesync-server"
# The packaged server's data directory is /var/lib/homesync unless --data or
# HOMESYNC_SERVER_DATA says otherwise.
cat > "$server/usr/bin/homesync-server" <<'WRAPPER'
#!/bin/sh
# homesync-server from the homesync-server package: its data in /var/lib/homesync by default.
: "${HOMESYNC_SERVER_DATA:=/var/lib/homesync}"
export HOMESYNC_SERVER_DATA
exec /opt/homesync/bin/homesync-server "$@"
WRAPPER
chmod 0755 "$server/usr/bin/homesync-server"
# The configuration lives with the data (a data directory is whole on its own, as a
# backup of it must be); /etc/homesync/server.toml is where admins look for it.
ln -s /var/lib/homesync/server.toml "$server/etc/homesync/server.toml"
for unit in homesync-server.service homesync-drill.service homesync-drill.timer homesync-prune.service \
        homesync-prune.timer homesync-report.service homesync-report.timer; do
    install -m 0644 "systemd/$unit" "$server/usr/lib/systemd/system/"
done
install -m 0644 docs/admin-guide.md "$server/usr/share/doc/homesync-server/"

for pkg in homesync homesync-server; do
    root=$build/$pkg
    install -d "$root/DEBIAN"
    for script in postinst prerm postrm conffiles; do
        [ -e "packaging/debian/$pkg/$script" ] && install -m "$([ $script = conffiles ] && echo 0644 || echo 0755)" \
            "packaging/debian/$pkg/$script" "$root/DEBIAN/"
    done
    size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
    sed -e "s/@VERSION@/$debversion/g" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@PYVER@/$pyver/g" \
        "packaging/debian/$pkg/control" > "$root/DEBIAN/control"
    dpkg-deb --root-owner-group -Zgzip -z6 --build "$root" "$out/${pkg}_${debversion}_${arch}.deb" >/dev/null
    say "built dist/${pkg}_${debversion}_${arch}.deb"
done
say "built dist/$(basename "$wheel")"
