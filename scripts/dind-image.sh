#!/usr/bin/env bash
# Builds the Docker-in-Docker image the multi-host tests run as simulated Docker hosts
# (test/multihost): a rootfs of dockerd, containerd, runc, docker client (the machine's own
# Debian 12 docker.io, or with DOCKER=26|28 that release's), iptables (nf_tables), iproute2,
# nft and busybox with the shared libraries they load, imported with `docker import` (no
# registry is reachable here). Does nothing when the image exists, unless --force is given.
#
#   [DOCKER=20|26|28|29] scripts/dind-image.sh [--force] [IMAGE]    (default switchyard-test/dind:N)
#
# Run the image WITHOUT --privileged (PID 1 lacks CAP_SYS_RESOURCE on these VMs):
#   docker run -d --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
#     --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm' \
#     -v VOLUME:/var/lib/docker IMAGE
# (/var/lib/docker must not be on overlayfs: a volume or `--tmpfs /var/lib/docker:exec`; a
# tmpfs is emptied by `docker restart`, a volume keeps images, plugins and networks.)
# Its /entrypoint.sh remounts /sys and the cgroup hierarchies read-write, makes / rshared
# (managed plugins need it), starts dockerd (log: /var/log/dockerd.log), waits for it and
# sleeps; SIGTERM stops dockerd cleanly. Extra dockerd flags: env DOCKERD_ARGS.
set -euo pipefail

force=false
if [[ ${1:-} == --force ]]; then
  force=true
  shift
fi
# The Docker release inside (env DOCKER, as for make): 20 is the machine's own docker.io; 26, 29 or
# 28 come from /opt/switchyard/docker-N/bin (scripts/docker-release.sh N fetches them).
RELEASE="${DOCKER:-20}"
IMAGE="${1:-switchyard-test/dind:$RELEASE}"
DOCKER_CLI=docker

if ! $force && "$DOCKER_CLI" image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "dind-image: $IMAGE already exists"
  exit 0
fi

# Binaries copied at their own paths. docker-init is a symlink to tini-static on Debian:
# `cp` copies what it points to.
binaries=(
  /usr/sbin/dockerd
  /usr/bin/containerd
  /usr/bin/containerd-shim-runc-v2
  /usr/sbin/runc
  /usr/bin/docker-init
  /usr/sbin/docker-proxy
  /usr/bin/docker
  /usr/sbin/xtables-nft-multi
  /usr/bin/ip
  /usr/sbin/bridge
  /usr/bin/busybox
)
optional=(/usr/sbin/nft)

# Where each binary comes from, when not from its own path: another release's Docker.
declare -A source_of=()
if [[ $RELEASE != 20 ]]; then
  release_bin="/opt/switchyard/docker-$RELEASE/bin"
  if [[ ! -x $release_bin/dockerd ]]; then
    echo "dind-image: Docker $RELEASE is not in $release_bin; run scripts/docker-release.sh $RELEASE" >&2
    exit 1
  fi
  for binary in /usr/sbin/dockerd /usr/bin/containerd /usr/bin/containerd-shim-runc-v2 \
    /usr/sbin/runc /usr/bin/docker-init /usr/sbin/docker-proxy /usr/bin/docker; do
    source_of[$binary]="$release_bin/$(basename "$binary")"
  done
fi
from() { echo "${source_of[$1]:-$1}"; }

missing=()
for binary in "${binaries[@]}"; do
  [[ -x $(from "$binary") ]] || missing+=("$(from "$binary")")
done
if ((${#missing[@]} > 0)); then
  echo "dind-image: missing ${missing[*]}; install them with" \
    "apt-get install -y docker.io iproute2 iptables busybox-static" >&2
  exit 1
fi
for binary in "${optional[@]}"; do
  [[ -x $binary ]] && binaries+=("$binary")
done

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT

# Debian 12's merged /usr: /bin, /sbin, /lib and /lib64 point into /usr, so a path `ldd`
# prints under /lib resolves the same way inside.
mkdir -p "$rootfs"/usr/{bin,sbin,lib,lib64} "$rootfs"/{etc,tmp,run,proc,sys,dev,root} \
  "$rootfs"/var/{lib/docker,log,tmp}
ln -s usr/bin "$rootfs/bin"
ln -s usr/sbin "$rootfs/sbin"
ln -s usr/lib "$rootfs/lib"
ln -s usr/lib64 "$rootfs/lib64"
ln -s ../run "$rootfs/var/run"
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"

sources=()
for binary in "${binaries[@]}"; do
  cp -L "$(from "$binary")" "$rootfs$binary"
  sources+=("$(from "$binary")")
done

# iptables / ip6tables (nf_tables variant, as on the host) and their match/target modules.
for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore \
  iptables-nft iptables-nft-save iptables-nft-restore ip6tables-nft ip6tables-nft-save \
  ip6tables-nft-restore; do
  ln -sf xtables-nft-multi "$rootfs/usr/sbin/$name"
done
xtables=/usr/lib/x86_64-linux-gnu/xtables
mkdir -p "$rootfs/usr/lib/x86_64-linux-gnu"
cp -r "$xtables" "$rootfs$xtables"

# iproute2's `ip` is /usr/bin/ip; Debian also has /usr/sbin/ip -> /bin/ip.
ln -sf /bin/ip "$rootfs/usr/sbin/ip"

# busybox applets, never over a real binary (ip, iptables… stay the real ones).
for applet in $(/usr/bin/busybox --list); do
  [[ $applet == busybox ]] && continue
  if [[ -e $rootfs/usr/bin/$applet || -e $rootfs/usr/sbin/$applet ||
    -L $rootfs/usr/bin/$applet || -L $rootfs/usr/sbin/$applet ]]; then
    continue
  fi
  ln -s busybox "$rootfs/usr/bin/$applet"
done

# The shared libraries every binary and xtables module loads, at the paths ldd names.
libraries() {
  ldd "$@" 2>/dev/null | awk '/=> \//{print $3} /^[[:space:]]*\/lib/{print $1}' | sort -u
}
for lib in $(libraries "${sources[@]}" "$xtables"/*.so); do
  mkdir -p "$rootfs$(dirname "$lib")"
  [[ -e $rootfs$lib ]] || cp -L "$lib" "$rootfs$lib"
done
[[ -e $rootfs/lib64/ld-linux-x86-64.so.2 ]] ||
  cp -L /lib64/ld-linux-x86-64.so.2 "$rootfs/usr/lib64/ld-linux-x86-64.so.2"

printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\ndocker:x:999:\n' >"$rootfs/etc/group"
cp /etc/protocols /etc/services "$rootfs/etc/" 2>/dev/null || true
# dockerd picks nft or legacy from this; keep it as the host does.
mkdir -p "$rootfs/etc/docker"

cat >"$rootfs/entrypoint.sh" <<'EOF'
#!/bin/sh
# Entry point of a simulated Docker host (runs under busybox sh as PID 1).
log() { echo "dind: $*"; }

# Docker mounts /sys and the cgroup hierarchies read-only in a non-privileged container.
# (busybox here has no `mountpoint`: the mount table says what is mounted.)
for dir in $(awk '$2 == "/sys" || $2 ~ "^/sys/fs/cgroup" { print $2 }' /proc/self/mounts); do
  # The cgroup hierarchies are read-only bind mounts: only a bind remount clears the flag.
  mount -o remount,rw "$dir" 2>/dev/null || mount -o remount,bind,rw "$dir" ||
    log "cannot remount $dir read-write"
done
# Managed plugins' rootfs mounts must propagate.
mount --make-rshared /

# A fresh /run on every start: no stale pid files or sockets after `docker restart`.
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /var/run /run/docker/plugins /var/log /var/lib/docker

dockerd --iptables=true $DOCKERD_ARGS >>/var/log/dockerd.log 2>&1 &
dockerd_pid=$!

stop() {
  log "stopping dockerd"
  kill -TERM "$dockerd_pid" 2>/dev/null
  wait "$dockerd_pid"
  exit 0
}
trap stop TERM INT

tries=0
until docker info >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ "$tries" -gt 600 ] || ! kill -0 "$dockerd_pid" 2>/dev/null; then
    log "dockerd did not start:"
    tail -n 30 /var/log/dockerd.log
    exit 1
  fi
  sleep 0.1
done
log "dockerd ready"

# `wait` returns when a trapped signal arrives, so stop() runs at once.
sleep 2147483647 &
wait $!
EOF
chmod 755 "$rootfs/entrypoint.sh"

"$DOCKER_CLI" image rm -f "$IMAGE" >/dev/null 2>&1 || true
tar -C "$rootfs" -c . | "$DOCKER_CLI" import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENTRYPOINT ["/bin/busybox", "sh", "/entrypoint.sh"]' \
  - "$IMAGE" >/dev/null
size=$(du -sh "$rootfs" | cut -f1)
echo "dind-image: built $IMAGE ($size rootfs)"
