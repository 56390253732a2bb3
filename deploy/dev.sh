#!/usr/bin/env bash
# One entry point for a fresh machine:
#   deploy/dev.sh test   set up everything (virtualenv, locked install, Kafka jars) and run the whole test suite
#   deploy/dev.sh demo   set up, then run the demo against a locally provisioned Kafka broker
#   deploy/dev.sh setup  only set up
# Extra arguments after `test` go to pytest; after `demo`, to `stream-service demo`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
venv="$repo/.venv"
cache=${STREAM_SERVICE_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stream-service}
python_bin=${PYTHON:-python3}

setup() {
    "$python_bin" - <<'PY' || { echo "dev.sh: Python >= 3.11 is required (set PYTHON=...)" >&2; exit 2; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
    if [ ! -x "$venv/bin/python" ]; then
        "$python_bin" -m venv "$venv"
    fi
    # Reinstall only when a lock file or the project metadata changed. requirements.lock is what
    # the service runs with (the container image installs only it); requirements-dev.lock adds
    # the test, lint and deploy-check tools on the same pins.
    stamp="$venv/.installed-$(cat requirements.lock requirements-dev.lock pyproject.toml | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        "$venv/bin/python" -m pip install --quiet --upgrade "pip>=24"
        "$venv/bin/python" -m pip install --quiet --require-hashes -r requirements.lock -r requirements-dev.lock
        "$venv/bin/python" -m pip install --quiet --no-deps -e .
        rm -f "$venv"/.installed-*
        touch "$stamp"
    fi
    # Kafka broker jars from Maven Central, cached outside the repository (skipped when
    # KAFKA_BOOTSTRAP_SERVERS names an existing cluster).
    if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
        "$venv/bin/python" -m stream_service.localkafka fetch
    fi
    deploy_tools
}

# The tools deploy/'s checks need beyond the venv, from Debian's packages: buildah and mmdebstrap
# build and run the container image (tests/deploy/test_image.py); promtool checks and unit-tests
# the alert rules. promtool is taken out of Debian's prometheus package into the cache, so no
# Prometheus server is installed or started. kubectl (for `kubectl kustomize`) comes with the
# machine; tests/deploy fail, naming what is missing, where one of these could not be had.
deploy_tools() {
    local missing=() tools="$cache/tools"
    command -v buildah >/dev/null || missing+=(buildah)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
            apt_get install -y -q "${missing[@]}" || echo "dev.sh: could not install ${missing[*]}: the image tests will fail" >&2
        else
            echo "dev.sh: ${missing[*]} not installed (Debian packages; needs root): the image tests will fail" >&2
        fi
    fi
    if [ ! -x "$tools/promtool" ] && command -v apt-get >/dev/null; then
        fetch_promtool "$tools" || echo "dev.sh: could not get promtool: the alert-rule tests will fail" >&2
    fi
    if [ -x "$tools/promtool" ]; then
        ln -sf "$tools/promtool" "$venv/bin/promtool"
    fi
    # The CRD schemas of KEDA and the Prometheus operator, compiled by the @kubernetes-models npm
    # packages that deploy/k8s/crd-validation/package-lock.json pins (with integrity hashes).
    local crd="$venv/crd-validation" lock=deploy/k8s/crd-validation/package-lock.json
    local crd_stamp
    crd_stamp="$crd/.installed-$(sha256sum "$lock" | cut -c1-16)"
    if [ ! -f "$crd_stamp" ]; then
        if command -v npm >/dev/null; then
            rm -rf "$crd" && mkdir -p "$crd"
            cp deploy/k8s/crd-validation/package.json "$lock" "$crd/"
            (cd "$crd" && npm ci --no-audit --no-fund --silent) && touch "$crd_stamp"
        else
            echo "dev.sh: npm not found: the custom-resource checks of deploy/k8s will fail" >&2
        fi
    fi
}

# promtool out of Debian's prometheus package (a static binary), without installing the package.
fetch_promtool() {
    local tools=$1 scratch
    scratch=$(mktemp -d)
    (cd "$scratch" && apt_get download prometheus) &&
        dpkg-deb --fsys-tarfile "$scratch"/prometheus_*.deb | tar -x -C "$scratch" ./usr/bin/promtool &&
        mkdir -p "$tools" &&
        mv "$scratch/usr/bin/promtool" "$tools/promtool.partial" &&
        mv "$tools/promtool.partial" "$tools/promtool"
    local status=$?
    rm -rf "$scratch"
    return $status
}

# apt-get quietly; when the package lists are missing or stale (a fresh machine), update them once and retry.
apt_get() {
    apt-get -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get -q "$@" >/dev/null; }
}

cmd=${1:-test}
shift || true
case "$cmd" in
    setup)
        setup
        ;;
    test)
        setup
        set +e
        "$venv/bin/python" -m pytest "$@"
        code=$?
        set -e
        if [ "$code" -eq 5 ]; then
            echo "dev.sh: pytest collected no tests; that is a failure" >&2
            exit 1
        fi
        exit "$code"
        ;;
    demo)
        setup
        exec "$venv/bin/stream-service" demo "$@"
        ;;
    *)
        echo "usage: deploy/dev.sh [test|demo|setup] [args...]" >&2
        exit 2
        ;;
esac
