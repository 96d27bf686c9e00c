#!/usr/bin/env bash
# .ci/packages.sh: the Debian packages, tested as an operator would use them. Builds `herd` and
# `herd-agent` (`cargo xtask deb`, one release build), installs them into this machine with dpkg
# (CI machines are throwaway, and run as root), checks the installed units with
# `systemd-analyze verify`, checks the `herd` user exists, runs the installed binaries — the
# center as the `herd` user in the unit's data directory, answering on loopback — and purges
# everything at the end, so the machine is left as it was found. systemd is not PID 1 here, so
# the units themselves cannot be started.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "packages: needs root (dpkg -i); skipped" >&2
    exit 0
fi

out="$(mktemp -d)"
center_pid=""
user_existed=no
getent passwd herd >/dev/null && user_existed=yes

cleanup() {
    status=$?
    if [ -n "$center_pid" ]; then
        kill "$center_pid" 2>/dev/null || true
        wait "$center_pid" 2>/dev/null || true
    fi
    dpkg --purge herd herd-agent >/dev/null 2>&1 || true
    # The packages keep their data and user on purge (losing a center's CA by accident would
    # orphan its terminals); this throwaway installation removes them.
    rm -rf /var/lib/herd /var/lib/herd-agent /etc/herd /etc/herd-agent
    if [ "$user_existed" = no ] && getent passwd herd >/dev/null; then
        userdel herd 2>/dev/null || true
        getent group herd >/dev/null && groupdel herd 2>/dev/null || true
    fi
    rm -rf "$out"
    exit "$status"
}
trap cleanup EXIT

cargo xtask deb --out "$out"
ls -l "$out"
for deb in "$out"/*.deb; do
    dpkg-deb --info "$deb" | sed -n '/Package:/,/Description:/p'
    # awk stops printing, not reading: `head` would close the pipe early, and with pipefail
    # the SIGPIPE dpkg-deb or awk then gets fails the script once a listing passes 12 lines.
    dpkg-deb --contents "$deb" | awk 'NR <= 12 {print $1, $6}'
done

dpkg -i "$out"/herd_*.deb "$out"/herd-agent_*.deb

# The maintainer scripts' work.
getent passwd herd
[ "$(stat -c '%U:%G %a' /etc/herd/center.toml)" = "root:herd 640" ]
[ "$(stat -c '%U:%G %a' /etc/herd/ca.kek)" = "root:root 600" ]   # the CA key's KEK, root's alone
[ "$(stat -c '%a' /etc/herd-agent)" = "700" ]
[ -e /etc/systemd/system/multi-user.target.wants/herd-center.service ]
[ -e /etc/systemd/system/multi-user.target.wants/herd-agent.service ]
[ ! -e /etc/systemd/system/multi-user.target.wants/herd-site.service ]

# The installed units, with the installed binaries and man pages they name.
if ! command -v systemd-analyze >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
man_check=yes
command -v man >/dev/null 2>&1 || man_check=no
for unit in herd-center herd-site herd-agent herd-agent-watch; do
    systemd-analyze verify --man="$man_check" "/lib/systemd/system/$unit.service"
done
# What systemd would make of the sandbox (informational: needs no running systemd).
systemd-analyze security --offline=yes /lib/systemd/system/herd-center.service 2>/dev/null | tail -n 1 || true

/usr/bin/herd --version
/usr/bin/herd-agent --version
/usr/bin/herd-agent --help >/dev/null
man -w herd-serve >/dev/null 2>&1 || [ "$man_check" = no ]

# The installed center as the unit runs it: user herd, umask 0077, in /var/lib/herd (created as
# StateDirectory= would), with the installed configuration; on a free loopback port.
install -d -o herd -g herd -m 0700 /var/lib/herd
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
# The KEK as LoadCredential= hands it over: a copy only the service user reads.
credentials="$(mktemp -d)"
install -o herd -g herd -m 0400 /etc/herd/ca.kek "$credentials/herd-ca-kek"
chown herd:herd "$credentials"
(
    cd /var/lib/herd
    umask 0077
    export CREDENTIALS_DIRECTORY="$credentials"
    exec setpriv --reuid=herd --regid=herd --init-groups --no-new-privs \
        /usr/bin/herd serve --config /etc/herd/center.toml --listen "127.0.0.1:$port"
) &
center_pid=$!
for _ in $(seq 1 100); do
    [ -s /var/lib/herd/ca.pem ] && [ -s /var/lib/herd/operator.token ] && break
    kill -0 "$center_pid" 2>/dev/null || { echo "packages: the installed center exited" >&2; exit 1; }
    sleep 0.2
done
answered=no
for _ in $(seq 1 50); do
    if /usr/bin/herd terminals --server "https://127.0.0.1:$port" --ca /var/lib/herd/ca.pem \
        --token-file /var/lib/herd/operator.token --json >/dev/null 2>&1; then
        answered=yes
        break
    fi
    sleep 0.2
done
[ "$answered" = yes ] || { echo "packages: the installed center did not answer on 127.0.0.1:$port" >&2; exit 1; }
# Its files are the herd user's and private, as the unit's UMask=0077 asks.
[ "$(stat -c '%U %a' /var/lib/herd/herd.db)" = "herd 600" ]
[ "$(stat -c '%U %a' /var/lib/herd/operator.token)" = "herd 600" ]
# The CA key was sealed under the credential's KEK: none was generated beside the database.
[ ! -e /var/lib/herd/ca.kek ]
rm -rf "$credentials"
kill "$center_pid"
wait "$center_pid" || true
center_pid=""
echo "packages: built, installed, verified, run and purged"
