#!/usr/bin/env bash
# Make a fresh Debian machine a httpov render node: povray, bubblewrap, httpov in a venv, a system user, the
# environment file and the systemd unit. Run as root from a httpov checkout:
#   sudo bash workers/setup-node.sh                 # then edit /etc/httpov/worker.env and:
#   sudo systemctl restart httpov-worker && httpov-healthcheck --worker
# Options: --source DIR|SPEC (what pip installs; default this checkout), --extras s3 (pip extras),
#          --prefix /opt/httpov, --user httpov, --root DIR (install under DIR: packaging and tests),
#          --no-start (install the unit without starting it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_spec=$(dirname "$here") extras=s3 prefix=/opt/httpov user=httpov root= start=1
while [ $# -gt 0 ]; do
    case "$1" in
        --source) source_spec=$2; shift 2 ;;
        --extras) extras=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        --user) user=$2; shift 2 ;;
        --root) root=$2; shift 2 ;;
        --no-start) start=0; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "setup-node.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "setup-node.sh: run as root (it installs packages and a service)" >&2; exit 2; }

# 1. What a render node runs: Debian's povray and its include library, bubblewrap, a Python with venv, and a C
#    compiler that builds povray's quick waits (httpov/worker/waits.py).
need=()
command -v povray >/dev/null || need+=(povray povray-includes)
[ -d /usr/share/povray-3.7/include ] || need+=(povray-includes)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v cc >/dev/null || need+=(gcc libc6-dev)
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
fi

# 2. An unprivileged user that owns nothing but the node's cache and state.
if ! id "$user" >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/httpov --shell /usr/sbin/nologin "$user"
fi

# 3. httpov in its own virtual environment.
[ -x "$prefix/bin/python" ] || python3 -m venv "$prefix"
"$prefix/bin/pip" install -q --disable-pip-version-check "${source_spec}${extras:+[$extras]}"
sed "s|^PREFIX=.*|PREFIX=\${HTTPOV_PREFIX_DIR:-$prefix}|; s|/etc/httpov/worker.env|$root/etc/httpov/worker.env|" \
    "$here/httpov-healthcheck" > "$prefix/bin/httpov-healthcheck"
chmod 755 "$prefix/bin/httpov-healthcheck"

# 4. Settings (never overwritten) and the unit, pointed at this prefix and user.
install -d -m 755 "$root/etc/httpov" "$root/etc/systemd/system"
if [ ! -e "$root/etc/httpov/worker.env" ]; then
    install -m 640 -g "$(id -gn "$user")" "$here/worker.env.example" "$root/etc/httpov/worker.env"
    echo "edit $root/etc/httpov/worker.env: broker, storage (README, Configuration)"
fi
sed "s|/opt/httpov|$prefix|g; s|^User=.*|User=$user|; s|^Group=.*|Group=$(id -gn "$user")|" \
    "$here/httpov-worker.service" > "$root/etc/systemd/system/httpov-worker.service"

if [ -z "$root" ] && [ "$start" -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now httpov-worker.service
fi
echo "render node installed in $prefix; check it with: $prefix/bin/httpov-healthcheck --worker"
