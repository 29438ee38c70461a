#!/usr/bin/env bash
# Builds the e2e test image from the host's static busybox (no registry is reachable here).
# Does nothing when the image already exists.
set -euo pipefail

IMAGE="${1:-switchyard-test/busybox:latest}"
DOCKER=docker

if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "test-image: $IMAGE already exists"
  exit 0
fi

if [[ ! -x /bin/busybox ]]; then
  echo "test-image: /bin/busybox is missing: apt-get install busybox-static" >&2
  exit 1
fi

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT

mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ $applet == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
done
chmod 1777 "$rootfs/tmp"

tar -C "$rootfs" -c . | "$DOCKER" import -c 'ENV PATH=/bin' - "$IMAGE" >/dev/null
echo "test-image: built $IMAGE from /bin/busybox"
