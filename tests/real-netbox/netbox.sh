#!/usr/bin/env bash
# netbox.sh: a real NetBox 4.7 (PyPI wheel) with PostgreSQL and Redis, all on 127.0.0.1,
# for pve2netbox's real-NetBox test tier.
#
#   netbox.sh up      install what is missing, start everything, wait for /api/status/ (idempotent)
#   netbox.sh down    stop gunicorn, PostgreSQL and Redis (the install is kept)
#   netbox.sh reset   back to an empty NetBox from the template database; tokens stay valid
#   netbox.sh env     print NETBOX_URL= / NETBOX_TOKEN= / NETBOX_TOKEN_V1= / NETBOX_TOKEN_RO= lines
#   netbox.sh status  say what is installed and what runs
#   netbox.sh purge   down, then delete the whole state directory
#
# NETBOX_INSTANCE=N (2-8) addresses a further NetBox on the same install, for running test
# shards at once: its own database netbox_N (copied from the template), gunicorn on
# NETBOX_PORT+N-1 and Redis databases 2N-2 and 2N-1; `up` needs instance 1 installed first.
#
# Debian bookworm has Python 3.11 only and NetBox 4.7 needs >= 3.12, so NetBox runs in a
# debootstrapped Debian trixie root (Python 3.13) inside the state directory; PostgreSQL and
# Redis are the host's own packages, run as private instances on their own ports and data
# directories (nothing shared with a system-wide cluster). The root shares the host's network
# namespace, so NetBox reaches them on 127.0.0.1. See README.md beside this file.
set -Eeuo pipefail
SELF="$(realpath "${BASH_SOURCE[0]}")"

# ---- settings (environment) -------------------------------------------------------------
NETBOX_VERSION="4.7.3" # pinned: the reference facts were measured on this release
STATE="${NETBOX_STATE_DIR:-/var/lib/pve2netbox-real-netbox}"
BASE_PORT="${NETBOX_PORT:-18000}"
INSTANCE="${NETBOX_INSTANCE:-1}"
PG_PORT="${NETBOX_PG_PORT:-15432}"
REDIS_PORT="${NETBOX_REDIS_PORT:-16379}"
# gunicorn workers: 2 cores; more workers only add memory and start time (concurrency buys
# nothing on this NetBox, see the reference).
WORKERS="${NETBOX_WORKERS:-3}"
# Bounded waits, in seconds. Starting gunicorn takes ~17 s on an idle 2-core machine; allow
# for the cores being shared with compilers.
START_TIMEOUT_S="${NETBOX_START_TIMEOUT:-300}"
STOP_TIMEOUT_S=30
PG_TIMEOUT_S=60
APT_TIMEOUT_S=900         # apt-get update + install of a few host packages
DEBOOTSTRAP_TIMEOUT_S=900 # ~1 min when the mirror is fast
PIP_TIMEOUT_S=1800        # ~1 min download + psycopg C build on 2 busy cores
UPGRADE_TIMEOUT_S=1800    # ~270 s on an idle 2-core machine, far more on busy cores
SUITE=trixie
ROOT_PACKAGES="python3,python3-venv,python3-dev,gcc,libc6-dev,libpq-dev,ca-certificates"
HOST_PACKAGES=(postgresql redis-server debootstrap curl ca-certificates)

ROOT="$STATE/root"              # the trixie root
NB_BASE=/opt/netbox             # instance 1's NETBOX_ROOT inside the root; holds the venv
VENV="$NB_BASE/venv"            # inside the root, shared by every instance
PG_DATA="$STATE/pg/data"
PG_SOCK="$STATE/pg/run"
PG_LOG="$STATE/pg/postgresql.log"
REDIS_DIR="$STATE/redis"
LOG_DIR="$STATE/log"
SECRETS="$STATE/secrets"
DB_TEMPLATE=netbox_template
DB_USER=netbox
# Per instance: NETBOX_ROOT inside the root (conf/configuration.py, run/gunicorn.pid), database,
# gunicorn port and log, Redis database indexes (tasks, caching).
case "$INSTANCE" in [1-8]) ;; *)
    printf '[netbox.sh] ERROR: NETBOX_INSTANCE must be 1-8 (got %s)\n' "$INSTANCE" >&2
    exit 1
    ;;
esac
if [ "$INSTANCE" = 1 ]; then
    NB_DIR="$NB_BASE" DB=netbox GUNICORN_LOG="$LOG_DIR/gunicorn.log"
else
    NB_DIR="$NB_BASE-$INSTANCE" DB="netbox_$INSTANCE" GUNICORN_LOG="$LOG_DIR/gunicorn-$INSTANCE.log"
fi
PORT=$((BASE_PORT + INSTANCE - 1))
REDIS_DB_TASKS=$((2 * INSTANCE - 2))
REDIS_DB_CACHE=$((2 * INSTANCE - 1))
GUNICORN_PID="$ROOT$NB_DIR/run/gunicorn.pid"
URL="http://127.0.0.1:$PORT"

# ---- output ------------------------------------------------------------------------------
say() { printf '[netbox.sh] %s\n' "$*" >&2; }
die() {
    printf '[netbox.sh] ERROR: %s\n' "$*" >&2
    exit 1
}
tail_log() { [ -f "$1" ] && { say "last lines of $1:"; tail -n "${2:-25}" "$1" | sed 's/^/    /' >&2; } || true; }
now() { date +%s; }

# Runs a step, printing its name and duration.
step() {
    local name="$1" t0
    shift
    say "-> $name"
    t0=$(now)
    "$@"
    say "   done: $name ($(($(now) - t0)) s)"
}

# ---- guards ------------------------------------------------------------------------------
need_root() { [ "$(id -u)" = 0 ] || die "must run as root (installs packages, chroots, runs daemons)"; }

check_state_dir() {
    case "$STATE" in /*) ;; *) die "NETBOX_STATE_DIR must be an absolute path (got '$STATE')" ;; esac
    # Never inside the repository: the install is ~1.3 GB and holds secrets.
    local here repo
    here="$(dirname "$SELF")"
    repo="$(cd "$here/../.." && pwd)"
    case "$(realpath -m "$STATE")/" in "$repo"/*) die "NETBOX_STATE_DIR ($STATE) is inside the repository $repo; choose a directory outside it" ;; esac
}

# ---- host packages -----------------------------------------------------------------------
pkg_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }

# Keeps package scripts from starting the system-wide postgresql/redis services: we run our
# own instances. Only created if the machine has no policy-rc.d of its own.
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=0
policy_rc_on() {
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        POLICY_RC_OURS=1
    fi
}
policy_rc_off() { if [ "$POLICY_RC_OURS" = 1 ]; then rm -f "$POLICY_RC"; POLICY_RC_OURS=0; fi; }

install_host_packages() {
    local missing=() p
    for p in "${HOST_PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    if [ "${#missing[@]}" = 0 ]; then
        say "   host packages present: ${HOST_PACKAGES[*]}"
        return 0
    fi
    say "   installing host packages: ${missing[*]} (apt-get update first)"
    local log="$LOG_DIR/install-apt.log"
    # apt-get update exits 0 even when every mirror failed; judge by the candidates below.
    timeout "$APT_TIMEOUT_S" apt-get -o Acquire::Retries=2 -o Acquire::http::Timeout=30 update >"$log" 2>&1 ||
        say "   apt-get update reported errors (see $log); trying the install anyway"
    for p in "${missing[@]}"; do
        if ! grep -q 'Candidate: [0-9]' <<<"$(apt-cache policy "$p" 2>/dev/null || true)"; then
            tail_log "$log"
            die "no package registry reachable (Debian mirror): apt has no candidate for '$p'; cannot install NetBox's host packages"
        fi
    done
    policy_rc_on
    trap policy_rc_off EXIT
    if ! DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT_S" apt-get install -y --no-install-recommends \
        -o Acquire::Retries=2 -o Acquire::http::Timeout=30 "${missing[@]}" >>"$log" 2>&1; then
        policy_rc_off
        tail_log "$log"
        die "apt-get install ${missing[*]} failed (no package registry reachable, or a broken package); see $log"
    fi
    policy_rc_off
}

pg_bin() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "$d" ] && [ -x "$d/initdb" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql (package postgresql)"
    local v="${d#/usr/lib/postgresql/}"
    v="${v%/bin}"
    [ "${v%%.*}" -ge 15 ] || die "PostgreSQL $v found, NetBox 4.7 needs >= 15"
    printf '%s' "$d"
}

# ---- PostgreSQL (private instance, 127.0.0.1:$PG_PORT) -----------------------------------
pg_running() { [ -f "$PG_DATA/PG_VERSION" ] && runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

psql_admin() {
    runuser -u postgres -- "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -d postgres "$@"
}

pg_start() {
    local bin
    bin="$(pg_bin)"
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        say "   initdb $PG_DATA"
        rm -rf "$STATE/pg"
        mkdir -p "$PG_DATA" "$PG_SOCK"
        chown -R postgres:postgres "$STATE/pg"
        chmod 700 "$PG_DATA"
        runuser -u postgres -- "$bin/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth-local=peer --auth-host=scram-sha-256 >"$LOG_DIR/initdb.log" 2>&1 ||
            { tail_log "$LOG_DIR/initdb.log"; die "initdb failed"; }
        # A test database: losing the last commits on a crash is fine, corruption is not
        # (fsync stays on); this makes the 800+ migration commits cheaper.
        printf "synchronous_commit = off\n" >>"$PG_DATA/postgresql.conf"
    fi
    if pg_running; then
        say "   PostgreSQL already running (127.0.0.1:$PG_PORT)"
        return 0
    fi
    mkdir -p "$PG_SOCK"
    chown postgres:postgres "$PG_SOCK"
    say "   starting PostgreSQL on 127.0.0.1:$PG_PORT (log $PG_LOG)"
    # Address, port and socket on the command line so they always follow the environment.
    runuser -u postgres -- "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_TIMEOUT_S" \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PG_SOCK" start >/dev/null ||
        { tail_log "$PG_LOG"; die "PostgreSQL did not start within ${PG_TIMEOUT_S} s (port $PG_PORT taken? set NETBOX_PG_PORT)"; }
}

pg_stop() {
    if pg_running; then
        say "   stopping PostgreSQL"
        runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$PG_DATA" -m fast -w -t "$PG_TIMEOUT_S" stop >/dev/null ||
            die "PostgreSQL did not stop within ${PG_TIMEOUT_S} s"
    fi
}

db_exists() { [ "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname='$1'")" = 1 ]; }

pg_setup_db() {
    local pw
    pw="$(secret DB_PASSWORD)"
    if [ "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname='$DB_USER'")" != 1 ]; then
        say "   creating role $DB_USER"
        psql_admin -c "CREATE ROLE $DB_USER LOGIN PASSWORD '$pw'"
    fi
    if ! db_exists "$DB"; then
        say "   creating database $DB"
        psql_admin -c "CREATE DATABASE $DB OWNER $DB_USER"
    fi
}

# ---- Redis (private instance, 127.0.0.1:$REDIS_PORT) -------------------------------------
redis_cli() { timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
redis_running() { [ "$(redis_cli ping 2>/dev/null || true)" = PONG ]; }

redis_start() {
    if redis_running; then
        say "   Redis already running (127.0.0.1:$REDIS_PORT)"
        return 0
    fi
    mkdir -p "$REDIS_DIR"
    chown redis:redis "$REDIS_DIR"
    say "   starting Redis on 127.0.0.1:$REDIS_PORT (log $REDIS_DIR/redis.log)"
    # No persistence: the cache and task queue are disposable (reset flushes them anyway).
    runuser -u redis -- redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" \
        --dir "$REDIS_DIR" --save "" --appendonly no ||
        die "redis-server failed to start (port $REDIS_PORT taken? set NETBOX_REDIS_PORT)"
    local i
    for i in $(seq 1 20); do
        redis_running && return 0
        sleep 0.5
    done
    tail_log "$REDIS_DIR/redis.log"
    die "Redis did not answer PING within 10 s"
}

redis_stop() {
    if redis_running; then
        say "   stopping Redis"
        redis_cli shutdown nosave >/dev/null 2>&1 || true
        local i
        for i in $(seq 1 20); do
            redis_running || return 0
            sleep 0.5
        done
        die "Redis did not stop within 10 s"
    fi
}

# ---- the trixie root ---------------------------------------------------------------------
# Unmounts everything mounted under $1 (deepest first).
umount_under() {
    local m
    awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
        umount -l "$m" || true
    done
}

mount_proc() {
    if ! mountpoint -q "$ROOT/proc"; then
        mount -t proc proc "$ROOT/proc" || die "cannot mount /proc in $ROOT"
    fi
}

# Runs a command in the root with a clean environment (pip needs the system CA bundle that
# update-ca-certificates built, so point it there).
in_root() {
    mount_proc
    local envs=(HOME=/root LANG=C.UTF-8 "PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        "NETBOX_ROOT=$NB_DIR" PIP_CERT=/etc/ssl/certs/ca-certificates.crt
        REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1)
    local v
    for v in PIP_INDEX_URL PIP_EXTRA_INDEX_URL http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [ -n "${!v:-}" ] && envs+=("$v=${!v}")
    done
    chroot "$ROOT" /usr/bin/env -i "${envs[@]}" "$@"
}

# The Debian mirror the host's apt uses (so no mirror is hard-coded here).
debian_mirror() {
    if [ -n "${NETBOX_DEBIAN_MIRROR:-}" ]; then
        printf '%s' "$NETBOX_DEBIAN_MIRROR"
        return
    fi
    local m
    m="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -oE '(URIs:|^deb)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]+' |
        grep -oE 'https?://[^[:space:]]+' | grep -E '/debian/?$' | head -n 1 || true)"
    [ -n "$m" ] || die "cannot find a Debian mirror in the host's apt sources; set NETBOX_DEBIAN_MIRROR"
    printf '%s' "$m"
}

root_ok() { [ -f "$ROOT/.pve2netbox-root-ok" ]; }

make_root() {
    if root_ok; then
        say "   trixie root present ($ROOT)"
        return 0
    fi
    local tmp="$STATE/root.partial" mirror log="$LOG_DIR/install-debootstrap.log"
    mirror="$(debian_mirror)"
    umount_under "$tmp"
    rm -rf --one-file-system "$tmp"
    say "   debootstrap --variant=minbase $SUITE from $mirror (log $log)"
    if ! timeout "$DEBOOTSTRAP_TIMEOUT_S" debootstrap --variant=minbase --include="$ROOT_PACKAGES" \
        "$SUITE" "$tmp" "$mirror" >"$log" 2>&1; then
        umount_under "$tmp"
        tail_log "$log"
        if grep -qE 'Failed getting release file|Couldn.t download|Temporary failure|Connection (timed out|refused)|unable to resolve' "$log"; then
            die "no package registry reachable (Debian mirror $mirror): cannot build the $SUITE root for NetBox"
        fi
        die "debootstrap of $SUITE failed (exit or timeout after ${DEBOOTSTRAP_TIMEOUT_S} s); see $log"
    fi
    umount_under "$tmp"
    if [ -e "$ROOT" ]; then
        umount_under "$ROOT"
        rm -rf --one-file-system "$ROOT"
    fi
    mv "$tmp" "$ROOT"
    touch "$ROOT/.pve2netbox-root-ok"
}

# The host's extra CA certificates (e.g. an egress proxy's) must be trusted inside the root
# for pip; cheap, so done on every install pass.
root_ca_certs() {
    cp -f /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
        mkdir -p "$ROOT/usr/local/share/ca-certificates"
        cp -rf /usr/local/share/ca-certificates/. "$ROOT/usr/local/share/ca-certificates/"
        in_root update-ca-certificates >/dev/null 2>&1 || die "update-ca-certificates failed in $ROOT"
        say "   host CA certificates copied into the root"
    fi
}

venv_ok() { [ -f "$ROOT$NB_BASE/.pip-ok-$NETBOX_VERSION" ] && [ -x "$ROOT$VENV/bin/netbox" ]; }

install_netbox() {
    if venv_ok; then
        say "   netbox==$NETBOX_VERSION present in $ROOT$VENV"
        return 0
    fi
    local log="$LOG_DIR/install-pip.log" v
    root_ca_certs
    v="$(in_root python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    say "   root Python $v; creating venv $VENV"
    mkdir -p "$ROOT$NB_BASE"
    [ -x "$ROOT$VENV/bin/pip" ] || in_root python3 -m venv "$VENV" || die "python3 -m venv failed in the root"
    say "   pip install netbox==$NETBOX_VERSION (builds psycopg[c]; log $log)"
    if ! in_root timeout "$PIP_TIMEOUT_S" "$VENV/bin/pip" install --timeout 60 --retries 3 "netbox==$NETBOX_VERSION" >"$log" 2>&1; then
        tail_log "$log"
        if grep -qE 'NewConnectionError|ConnectTimeout|Max retries exceeded|ProxyError|SSLError|Temporary failure in name resolution|No matching distribution found|Could not find a version' "$log"; then
            die "no package registry reachable (PyPI): cannot install NetBox (pip install netbox==$NETBOX_VERSION failed; see $log)"
        fi
        die "pip install netbox==$NETBOX_VERSION failed or timed out after ${PIP_TIMEOUT_S} s (see $log)"
    fi
    [ "$(in_root "$VENV/bin/netbox" version)" = "$NETBOX_VERSION" ] || die "installed netbox is not $NETBOX_VERSION"
    touch "$ROOT$NB_BASE/.pip-ok-$NETBOX_VERSION"
}

# ---- secrets and configuration -----------------------------------------------------------
# Generated once and kept: the v2 tokens in the template database are HMACs with this pepper,
# so it must never change while the template lives.
secret() { sed -n "s/^$1=//p" "$SECRETS/config.env"; }

make_secrets() {
    mkdir -p "$SECRETS"
    chmod 700 "$SECRETS"
    [ -f "$SECRETS/config.env" ] && return 0
    say "   generating SECRET_KEY, token pepper and database password ($SECRETS/config.env)"
    local gen='import secrets; print(secrets.token_urlsafe(%d))'
    umask 077
    {
        echo "DB_PASSWORD=$(in_root python3 -c "$(printf "$gen" 24)")"
        echo "SECRET_KEY=$(in_root python3 -c "$(printf "$gen" 48)")"
        echo "TOKEN_PEPPER=$(in_root python3 -c "$(printf "$gen" 48)")"
        echo "ADMIN_PASSWORD=$(in_root python3 -c "$(printf "$gen" 18)")"
    } >"$SECRETS/config.env"
    umask 022
}

write_config() {
    local conf="$ROOT$NB_DIR/conf/configuration.py"
    mkdir -p "$ROOT$NB_DIR/conf" "$ROOT$NB_DIR/run" "$ROOT$NB_DIR/media" "$ROOT$NB_DIR/reports" "$ROOT$NB_DIR/scripts"
    umask 077
    cat >"$conf.new" <<EOF
# Written by tests/real-netbox/netbox.sh; regenerated on every 'up' (edit the script instead).
ALLOWED_HOSTS = ['127.0.0.1', 'localhost']
DATABASES = {
    'default': {
        'ENGINE': 'django.db.backends.postgresql',
        'NAME': '$DB',
        'USER': '$DB_USER',
        'PASSWORD': '$(secret DB_PASSWORD)',
        'HOST': '127.0.0.1',
        'PORT': '$PG_PORT',
        'CONN_MAX_AGE': 300,
        # 'reset' recreates the database under running workers: reconnect instead of failing.
        'CONN_HEALTH_CHECKS': True,
    }
}
REDIS = {
    'tasks': {'HOST': '127.0.0.1', 'PORT': $REDIS_PORT, 'USERNAME': '', 'PASSWORD': '', 'DATABASE': $REDIS_DB_TASKS, 'SSL': False},
    'caching': {'HOST': '127.0.0.1', 'PORT': $REDIS_PORT, 'USERNAME': '', 'PASSWORD': '', 'DATABASE': $REDIS_DB_CACHE, 'SSL': False},
}
SECRET_KEY = '$(secret SECRET_KEY)'
API_TOKEN_PEPPERS = {1: '$(secret TOKEN_PEPPER)'}
# No outbound calls from a test instance.
CENSUS_REPORTING_ENABLED = False
RELEASE_CHECK_URL = None
TIME_ZONE = 'UTC'
EOF
    umask 022
    mv -f "$conf.new" "$conf"
}

# ---- migrations, tokens, template --------------------------------------------------------
migrate() {
    local mark="$STATE/.migrated-$NETBOX_VERSION" log="$LOG_DIR/install-upgrade.log"
    if [ -f "$mark" ] && db_exists "$DB"; then
        say "   database already migrated for $NETBOX_VERSION"
        return 0
    fi
    say "   netbox upgrade --no-input --skip-static (all migrations, several minutes; log $log)"
    if ! in_root timeout "$UPGRADE_TIMEOUT_S" "$VENV/bin/netbox" upgrade --no-input --skip-static >"$log" 2>&1; then
        tail_log "$log" 40
        die "netbox upgrade failed or timed out after ${UPGRADE_TIMEOUT_S} s (see $log)"
    fi
    touch "$mark"
}

TOKENS="$SECRETS/tokens.env"

make_tokens() {
    if [ -s "$TOKENS" ]; then
        say "   tokens present ($TOKENS)"
        return 0
    fi
    say "   creating superuser 'admin' and tokens (v2 read-write, v1, v2 read-only) in 'netbox shell'"
    local pw out
    pw="$(secret ADMIN_PASSWORD)"
    # The plaintext of a v2 token exists only at creation; print it once and keep it.
    out="$(in_root "$VENV/bin/netbox" shell --no-imports -c "
from users.models import Token, User
u = User.objects.filter(username='admin').first()
if u is None:
    u = User.objects.create_superuser('admin', 'admin@example.invalid', '$pw')
Token.objects.filter(user=u, description__startswith='pve2netbox-tests').delete()
rw = Token(user=u, version=2, description='pve2netbox-tests v2 rw'); rw.save()
v1 = Token(user=u, version=1, description='pve2netbox-tests v1 rw'); v1.save()
ro = Token(user=u, version=2, write_enabled=False, description='pve2netbox-tests v2 ro'); ro.save()
print('NETBOX_TOKEN=nbt_%s.%s' % (rw.key, rw.token))
print('NETBOX_TOKEN_V1=%s' % v1.token)
print('NETBOX_TOKEN_RO=nbt_%s.%s' % (ro.key, ro.token))
" 2>"$LOG_DIR/tokens.err")" || { tail_log "$LOG_DIR/tokens.err"; die "creating the superuser/tokens in 'netbox shell' failed"; }
    printf '%s\n' "$out" | grep -E '^NETBOX_TOKEN(_V1|_RO)?=' >"$TOKENS.new" || true
    [ "$(wc -l <"$TOKENS.new")" = 3 ] || { rm -f "$TOKENS.new"; die "'netbox shell' did not print the three tokens"; }
    chmod 600 "$TOKENS.new"
    mv -f "$TOKENS.new" "$TOKENS"
    # New tokens make any existing template stale, and the further instances' copies of it.
    local d
    for d in $DB_TEMPLATE $(extra_dbs); do
        psql_admin -c "DROP DATABASE IF EXISTS $d WITH (FORCE)"
    done
}

# The databases of instances 2-8 (netbox_2 ...).
extra_dbs() { psql_admin -tAc "SELECT datname FROM pg_database WHERE datname ~ '^netbox_[2-8]\$'"; }

# Instance N >= 2: its database, copied from the template when missing.
make_instance_db() {
    if db_exists "$DB"; then
        say "   database $DB present"
        return 0
    fi
    say "   creating database $DB from $DB_TEMPLATE"
    psql_admin -c "CREATE DATABASE $DB TEMPLATE $DB_TEMPLATE OWNER $DB_USER"
}

# Flushes this instance's two Redis databases (other instances' stay).
redis_flush() {
    redis_cli -n "$REDIS_DB_TASKS" flushdb >/dev/null
    redis_cli -n "$REDIS_DB_CACHE" flushdb >/dev/null
}

make_template() {
    if db_exists "$DB_TEMPLATE"; then
        say "   template database $DB_TEMPLATE present"
        return 0
    fi
    # CREATE DATABASE ... TEMPLATE needs the source without connections.
    gunicorn_stop
    say "   creating template database $DB_TEMPLATE from $DB (empty NetBox + user + tokens)"
    psql_admin -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='$DB' AND pid <> pg_backend_pid()" >/dev/null
    psql_admin -c "CREATE DATABASE $DB_TEMPLATE TEMPLATE $DB OWNER $DB_USER"
}

# ---- gunicorn ----------------------------------------------------------------------------
gunicorn_pid() {
    local pid
    pid="$(cat "$GUNICORN_PID" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && printf '%s' "$pid"
}

# HTTP code of /api/status/ (000 when nothing answers).
status_code() {
    local auth=()
    [ -s "$TOKENS" ] && auth=(-H "Authorization: Bearer $(sed -n 's/^NETBOX_TOKEN=//p' "$TOKENS")")
    curl -s -o /dev/null -w '%{http_code}' -m 5 "${auth[@]}" "$URL/api/status/" || true
}

gunicorn_start() {
    local pid
    if pid="$(gunicorn_pid)"; then
        if [ "$(status_code)" = 200 ]; then
            say "   gunicorn already running (pid $pid) and $URL/api/status/ answers"
            return 0
        fi
        say "   gunicorn running (pid $pid) but not answering yet; waiting"
    else
        local code
        code="$(status_code)"
        [ "$code" = 000 ] || die "something else answers on 127.0.0.1:$PORT (HTTP $code); set NETBOX_PORT"
        rm -f "$GUNICORN_PID"
        mkdir -p "$LOG_DIR"
        say "   starting gunicorn on 127.0.0.1:$PORT, $WORKERS workers (log $GUNICORN_LOG)"
        # --preload: Django is imported once and forked, which starts 2-3x faster on busy cores;
        # NetBox opens no database connection in the master, so nothing is shared across forks.
        mount_proc
        # setsid: detached from the caller's session, it survives the shell that started it.
        (cd / && exec setsid chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
            "PATH=$VENV/bin:/usr/bin:/bin" "NETBOX_ROOT=$NB_DIR" \
            "$VENV/bin/gunicorn" --bind "127.0.0.1:$PORT" --workers "$WORKERS" --threads 3 \
            --timeout 120 --graceful-timeout 5 --max-requests 5000 --max-requests-jitter 500 --preload \
            --pid "$NB_DIR/run/gunicorn.pid" --access-logfile - --chdir "$NB_DIR" \
            netbox.wsgi >>"$GUNICORN_LOG" 2>&1 </dev/null) &
    fi
    local t0 code
    t0=$(now)
    while :; do
        code="$(status_code)"
        [ "$code" = 200 ] && break
        if [ "$(($(now) - t0))" -gt 3 ] && ! gunicorn_pid >/dev/null && [ -z "$(jobs -rp)" ]; then
            tail_log "$GUNICORN_LOG" 40
            die "gunicorn exited before $URL/api/status/ answered (see $GUNICORN_LOG)"
        fi
        [ "$(($(now) - t0))" -lt "$START_TIMEOUT_S" ] || {
            tail_log "$GUNICORN_LOG" 40
            die "$URL/api/status/ did not answer 200 within ${START_TIMEOUT_S} s (last HTTP $code)"
        }
        sleep 1
    done
    local ver
    ver="$(curl -s -m 10 -H "Authorization: Bearer $(sed -n 's/^NETBOX_TOKEN=//p' "$TOKENS")" "$URL/api/status/" |
        grep -oE '"netbox-version": *"[^"]*"' | grep -oE '[0-9][^"]*' || true)"
    say "   $URL/api/status/ answers: NetBox ${ver:-?} (pid $(gunicorn_pid || echo ?), $(($(now) - t0)) s)"
}

gunicorn_stop() {
    local pid i
    pid="$(gunicorn_pid)" || return 0
    say "   stopping gunicorn (pid $pid)"
    # Idle gthread workers do not exit on their own; --graceful-timeout 5 bounds the master's wait.
    kill -INT "$pid" 2>/dev/null || true
    for i in $(seq 1 $((STOP_TIMEOUT_S * 2))); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$GUNICORN_PID"; return 0; }
        sleep 0.5
    done
    say "   gunicorn did not stop in ${STOP_TIMEOUT_S} s; SIGKILL to pid $pid and its workers"
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$GUNICORN_PID"
}

# ---- commands ----------------------------------------------------------------------------
cmd_up() {
    local t0
    t0=$(now)
    if [ "$INSTANCE" != 1 ]; then
        cmd_up_extra
        return
    fi
    mkdir -p "$STATE" "$LOG_DIR"
    chmod 755 "$STATE"
    say "state directory $STATE; NetBox $NETBOX_VERSION on $URL"
    step "host packages" install_host_packages
    step "PostgreSQL" pg_start
    step "Redis" redis_start
    step "$SUITE root (Python 3.12+)" make_root
    step "NetBox wheel" install_netbox
    step "configuration" eval 'make_secrets && write_config'
    step "database and role" pg_setup_db
    step "migrations" migrate
    step "superuser and tokens" make_tokens
    step "template database" make_template
    step "gunicorn" gunicorn_start
    say "up in $(($(now) - t0)) s; '$SELF env' prints the URL and tokens"
}

# Instance N >= 2 on instance 1's install: a copy of the template database and its own gunicorn
# (~20-35 s, Django's start); PostgreSQL and Redis are instance 1's.
cmd_up_extra() {
    local t0
    t0=$(now)
    say "state directory $STATE; instance $INSTANCE (database $DB) on $URL"
    { root_ok && venv_ok && [ -s "$TOKENS" ]; } ||
        die "instance $INSTANCE uses instance 1's install, which is missing; run '$SELF up' without NETBOX_INSTANCE first"
    step "PostgreSQL" pg_start
    step "Redis" redis_start
    db_exists "$DB_TEMPLATE" || die "template database $DB_TEMPLATE missing; run '$SELF up' without NETBOX_INSTANCE first"
    step "configuration" write_config
    step "database $DB" make_instance_db
    step "gunicorn" gunicorn_start
    say "instance $INSTANCE up in $(($(now) - t0)) s; 'NETBOX_INSTANCE=$INSTANCE $SELF env' prints the URL and tokens"
}

# The further instances that have a NETBOX_ROOT in the root (2 3 ...).
extra_instances() {
    local d
    for d in "$ROOT$NB_BASE"-[2-8]; do [ -d "$d" ] && printf '%s\n' "${d##*-}"; done
    return 0
}

cmd_down() {
    if [ "$INSTANCE" != 1 ]; then
        # PostgreSQL and Redis are instance 1's: only this instance's gunicorn stops.
        gunicorn_stop
        say "instance $INSTANCE down (its database is kept)"
        return
    fi
    local n
    for n in $(extra_instances); do NETBOX_INSTANCE="$n" bash "$SELF" down; done
    gunicorn_stop
    if [ -f "$PG_DATA/PG_VERSION" ]; then pg_stop; fi
    if command -v redis-cli >/dev/null; then redis_stop; fi
    if [ -d "$ROOT/proc" ] && mountpoint -q "$ROOT/proc"; then umount -l "$ROOT/proc" || true; fi
    say "down (install kept in $STATE)"
}

cmd_reset() {
    local t0
    t0=$(now)
    [ -s "$TOKENS" ] && venv_ok || die "nothing installed in $STATE; run '$SELF up' first"
    pg_start
    redis_start
    db_exists "$DB_TEMPLATE" || die "template database $DB_TEMPLATE missing; run '$SELF up' first"
    # gunicorn keeps running by default: NetBox caches nothing per process that outlives a
    # request (custom fields are cached per request, config in Redis, which is flushed), and
    # CONN_HEALTH_CHECKS makes workers reconnect after DROP ... WITH (FORCE) cut them off.
    # Restarting costs 17 s to minutes (Django start on busy cores); NETBOX_RESET_RESTART=1 does it.
    if [ "${NETBOX_RESET_RESTART:-0}" = 1 ]; then gunicorn_stop; fi
    say "   recreating $DB from $DB_TEMPLATE and flushing its Redis databases"
    psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
    psql_admin -c "CREATE DATABASE $DB TEMPLATE $DB_TEMPLATE OWNER $DB_USER"
    redis_flush
    gunicorn_start
    say "reset to an empty NetBox in $(($(now) - t0)) s (tokens unchanged)"
}

cmd_env() {
    [ -s "$TOKENS" ] || die "no tokens in $STATE; run '$SELF up' first"
    echo "NETBOX_URL=$URL"
    cat "$TOKENS"
    # The tests' `netbox.sh reset` must reset this instance's database, not instance 1's.
    if [ "$INSTANCE" != 1 ]; then echo "NETBOX_INSTANCE=$INSTANCE"; fi
}

cmd_status() {
    local pid rc=0
    echo "state directory: $STATE ($(du -sh --one-file-system "$STATE" 2>/dev/null | cut -f1 || echo '?'))"
    echo "instance:        $INSTANCE (database $DB, Redis databases $REDIS_DB_TASKS and $REDIS_DB_CACHE)"
    if root_ok; then echo "trixie root:     installed ($ROOT)"; else echo "trixie root:     missing"; rc=1; fi
    if venv_ok; then echo "netbox wheel:    $NETBOX_VERSION installed"; else echo "netbox wheel:    missing"; rc=1; fi
    if [ -f "$STATE/.migrated-$NETBOX_VERSION" ]; then echo "migrations:      applied"; else echo "migrations:      not applied"; rc=1; fi
    if [ -s "$TOKENS" ]; then echo "tokens:          $TOKENS"; else echo "tokens:          none"; rc=1; fi
    if [ -f "$PG_DATA/PG_VERSION" ] && pg_running; then
        echo "PostgreSQL:      running on 127.0.0.1:$PG_PORT (data $PG_DATA)"
        if db_exists "$DB_TEMPLATE"; then echo "template db:     $DB_TEMPLATE present"; else echo "template db:     missing"; fi
        if db_exists "$DB"; then echo "database:        $DB present"; else echo "database:        $DB missing"; rc=1; fi
    else
        echo "PostgreSQL:      stopped"
        rc=1
    fi
    if command -v redis-cli >/dev/null && redis_running; then echo "Redis:           running on 127.0.0.1:$REDIS_PORT"; else echo "Redis:           stopped"; rc=1; fi
    if pid="$(gunicorn_pid)"; then
        echo "gunicorn:        running (pid $pid) on $URL, /api/status/ HTTP $(status_code)"
    else
        echo "gunicorn:        stopped"
        rc=1
    fi
    return "$rc"
}

cmd_purge() {
    [ "$INSTANCE" = 1 ] || die "purge deletes the whole install (every instance); run it without NETBOX_INSTANCE"
    cmd_down
    umount_under "$STATE"
    say "removing $STATE"
    rm -rf --one-file-system "$STATE"
}

usage() {
    sed -n '2,14p' "$SELF" | sed 's/^# \{0,1\}//'
    exit 2
}

main() {
    [ $# = 1 ] || usage
    cd /
    case "$1" in
    up | down | reset | status | purge) need_root; check_state_dir ;;
    env) ;;
    *) usage ;;
    esac
    "cmd_$1"
}

main "$@"
