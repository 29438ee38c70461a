#!/usr/bin/env bash
# Builds the throughput-bench image switchyard-test/iperf3:latest from the host's iperf3 (no
# registry is reachable here): /usr/bin/iperf3, the shared libraries `ldd` lists for it and a
# busybox for `sh`. Does nothing when the image already exists; installs Debian's iperf3 on the
# host if it is missing.
set -euo pipefail

IMAGE="${1:-switchyard-test/iperf3:latest}"
DOCKER=docker

if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "iperf-image: $IMAGE already exists"
  exit 0
fi

if [[ ! -x /usr/bin/iperf3 ]]; then
  echo "iperf-image: installing iperf3 with apt-get"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iperf3 >/dev/null; then
    apt-get update >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iperf3 >/dev/null
  fi
fi

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT

mkdir -p "$rootfs/bin" "$rootfs/usr/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/lib64"
chmod 1777 "$rootfs/tmp"
cp /usr/bin/iperf3 "$rootfs/usr/bin/iperf3"
for lib in $(ldd /usr/bin/iperf3 | awk '/=> \//{print $3} /^\s*\/lib/{print $1}' | sort -u); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp "$(readlink -f "$lib")" "$rootfs$lib"
done
cp "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$rootfs/lib64/ld-linux-x86-64.so.2"
if [[ -x /bin/busybox ]]; then
  cp /bin/busybox "$rootfs/bin/busybox"
  ln -sf busybox "$rootfs/bin/sh"
fi
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"

tar -C "$rootfs" -c . | "$DOCKER" import -c 'ENV PATH=/usr/bin:/bin' - "$IMAGE" >/dev/null
echo "iperf-image: built $IMAGE from /usr/bin/iperf3"
