#!/usr/bin/env bash
# Build the stream-service image where no registry and no Docker engine are at hand, with buildah
# (rootful, vfs storage, chroot isolation) and a Debian base made by mmdebstrap:
#   deploy/image/build.sh [TAG]           build (default tag localhost/stream-service:<version>); prints the tag
#   deploy/image/build.sh buildah ARGS... run buildah on the same image store (from, run, inspect, rm, ...)
# With a registry, build the same Dockerfile the usual way instead (docker build / buildah bud), and
# its default base, the official Python slim image. BASE_IMAGE=... here names another base.
# The store and the base's root filesystem are cached outside the repository, like the Kafka jars:
# ${STREAM_SERVICE_IMAGE_CACHE:-~/.cache/stream-service/image}.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${STREAM_SERVICE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stream-service/image}
# overlay: measured here 13 s for a first build and ~1 s for an unchanged one; vfs (no kernel overlayfs
# needed, every layer a full copy): 72 s and 33-59 s. STREAM_SERVICE_IMAGE_STORAGE_DRIVER=vfs where
# overlay cannot mount.
driver=${STREAM_SERVICE_IMAGE_STORAGE_DRIVER:-overlay}
store=(--root "$cache/storage-$driver" --runroot "$cache/run-$driver" --storage-driver "$driver")
base_tag=localhost/stream-service-base:bookworm

for tool in buildah mmdebstrap; do
    command -v "$tool" >/dev/null || {
        echo "build.sh: $tool not found (apt-get install buildah mmdebstrap; deploy/dev.sh setup does it)" >&2
        exit 2
    }
done
mkdir -p "$cache"

if [ "${1:-}" = buildah ]; then
    shift
    exec buildah "${store[@]}" "$@"
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml")
tag=${1:-localhost/stream-service:$version}
base=${BASE_IMAGE:-}
if [ -z "$base" ]; then
    base=$base_tag
    if ! buildah "${store[@]}" inspect --type image "$base" >/dev/null 2>&1; then
        # Debian bookworm, minimal, with the distribution's Python 3.11: what python:3.11-slim-bookworm
        # offers, built from Debian's packages because no registry is reachable here.
        if [ ! -s "$cache/base-bookworm.tar" ]; then
            mmdebstrap --quiet --format=tar --variant=minbase --include=python3,python3-venv,ca-certificates \
                --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
                --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
                bookworm "$cache/base-bookworm.tar.partial"
            mv "$cache/base-bookworm.tar.partial" "$cache/base-bookworm.tar"
        fi
        printf 'FROM scratch\nADD base-bookworm.tar /\nCMD ["python3"]\n' >"$cache/Containerfile.base"
        buildah "${store[@]}" bud --quiet --isolation chroot -f "$cache/Containerfile.base" -t "$base" "$cache" >/dev/null
    fi
fi

secret=()
# Behind a TLS-intercepting proxy pip needs its CA: handed over as a build secret, never stored in a layer.
ca_bundle=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
if [ -s "$ca_bundle" ]; then
    secret=(--secret "id=ca-bundle,src=$ca_bundle")
fi
buildah "${store[@]}" bud --quiet --layers --format docker --isolation chroot "${secret[@]}" \
    --build-arg "BASE_IMAGE=$base" \
    --build-arg "VERSION=$version" \
    --build-arg "REVISION=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)" \
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -f "$repo/deploy/image/Dockerfile" -t "$tag" "$repo" >/dev/null
echo "$tag"
