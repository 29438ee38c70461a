#!/usr/bin/env bash
# Builds a test image holding Debian's haproxy (bookworm: 2.6.x) and the host's static busybox,
# imported with `docker import` (no registry is reachable here). haproxy is never installed on
# this machine (installing it starts a service): `apt-get download` fetches the .deb and the
# library packages the machine lacks, `dpkg-deb -x` unpacks them, and the binary goes into the
# rootfs with the shared libraries `ldd` names. Does nothing when the image exists, unless
# --force is given.
#
#   scripts/haproxy-image.sh [--force] [IMAGE]
#
# A test writes its own config and runs haproxy in the foreground:
#   docker run -d --name haproxy IMAGE sh -c \
#     'printf "%s\n" "global" ... >/tmp/haproxy.cfg && exec haproxy -db -f /tmp/haproxy.cfg'
# Server names (`server web1 web1:80`) are resolved by libc at start-up through the container's
# /etc/resolv.conf (/etc/nsswitch.conf here says `hosts: files dns`).
set -euo pipefail

force=false
if [[ ${1:-} == --force ]]; then
  force=true
  shift
fi
IMAGE="${1:-switchyard-test/haproxy:latest}"
DOCKER=docker

if ! $force && "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "haproxy-image: $IMAGE already exists"
  exit 0
fi

if [[ ! -x /usr/bin/busybox ]]; then
  echo "haproxy-image: /usr/bin/busybox is missing: apt-get install busybox-static" >&2
  exit 1
fi
for tool in apt-get apt-cache dpkg-deb dpkg-query ldd; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "haproxy-image: $tool is missing: this script needs a Debian host (apt, dpkg, libc-bin)" >&2
    exit 1
  fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
debs="$work/debs"
tree="$work/tree"
rootfs="$work/rootfs"
mkdir -p "$debs" "$tree" "$rootfs"

# apt drops to user _apt to download, which cannot write into a private temp dir.
download() {
  (cd "$debs" && apt-get -q -o APT::Sandbox::User=root download "$@")
}

if ! apt-cache show haproxy >/dev/null 2>&1; then
  echo "haproxy-image: apt knows no haproxy package; running apt-get update"
  apt-get update -q
fi
if ! download haproxy; then
  echo "haproxy-image: apt-get download haproxy failed: check the apt sources" \
    "(/etc/apt/sources.list*) and that deb.debian.org is reachable, then apt-get update" >&2
  exit 1
fi

# Library packages haproxy depends on (transitively) that the machine lacks, e.g. liblua5.3-0,
# libopentracing-c-wrapper0 and libopentracing1. For "a | b" the first choice is taken.
installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}
library_depends() {
  dpkg-deb -f "$1" Pre-Depends Depends | sed 's/^[A-Za-z-]*: //' | tr ',' '\n' |
    sed 's/|.*//; s/(.*)//; s/:any//; s/[[:space:]]//g' | grep '^lib' || true
}
extras=()
pending=("$debs"/haproxy_*.deb)
while ((${#pending[@]} > 0)); do
  deb="${pending[0]}"
  pending=("${pending[@]:1}")
  for package in $(library_depends "$deb"); do
    installed "$package" && continue
    [[ " ${extras[*]} " == *" $package "* ]] && continue
    if ! download "$package"; then
      echo "haproxy-image: apt-get download $package (needed by haproxy) failed:" \
        "check the apt sources and run apt-get update" >&2
      exit 1
    fi
    extras+=("$package")
    pending+=("$debs/${package}"_*.deb)
  done
done

for deb in "$debs"/*.deb; do
  dpkg-deb -x "$deb" "$tree"
done
haproxy="$tree/usr/sbin/haproxy"

# Libraries from the unpacked tree first, then the machine's own.
export LD_LIBRARY_PATH="$tree/usr/lib/x86_64-linux-gnu:$tree/lib/x86_64-linux-gnu"
if ldd "$haproxy" | grep -q 'not found'; then
  echo "haproxy-image: haproxy needs libraries neither downloaded nor on this machine:" >&2
  ldd "$haproxy" | grep 'not found' >&2
  exit 1
fi
version="$("$haproxy" -v | head -n 1)"
unset LD_LIBRARY_PATH

# Debian 12's merged /usr, as in dind-image.sh: a path `ldd` prints under /lib resolves inside.
mkdir -p "$rootfs"/usr/{bin,sbin,lib,lib64} "$rootfs"/{etc,tmp,run,proc,sys,dev} \
  "$rootfs"/var/{lib/haproxy,tmp}
ln -s usr/bin "$rootfs/bin"
ln -s usr/sbin "$rootfs/sbin"
ln -s usr/lib "$rootfs/lib"
ln -s usr/lib64 "$rootfs/lib64"
ln -s ../run "$rootfs/var/run"
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"

cp "$haproxy" "$rootfs/usr/sbin/haproxy"
cp /usr/bin/busybox "$rootfs/usr/bin/busybox"
for applet in $(/usr/bin/busybox --list); do
  [[ $applet == busybox || -e $rootfs/usr/sbin/$applet ]] && continue
  ln -s busybox "$rootfs/usr/bin/$applet"
done

# Each library at the path the loader will look for it: a path inside the unpacked tree loses
# the tree's prefix; `cp -L` copies what a symlink points to, under the symlink's name.
libraries() {
  LD_LIBRARY_PATH="$tree/usr/lib/x86_64-linux-gnu:$tree/lib/x86_64-linux-gnu" ldd "$@" |
    awk '/=> \//{print $3} /^[[:space:]]*\/lib/{print $1}' | sort -u
}
for lib in $(libraries "$haproxy"); do
  target="${lib#"$tree"}"
  mkdir -p "$rootfs$(dirname "$target")"
  [[ -e $rootfs$target ]] || cp -L "$lib" "$rootfs$target"
done
[[ -e $rootfs/lib64/ld-linux-x86-64.so.2 ]] ||
  cp -L /lib64/ld-linux-x86-64.so.2 "$rootfs/usr/lib64/ld-linux-x86-64.so.2"

# Name resolution: glibc >= 2.34 has the files and dns NSS modules inside libc.so.6; older
# releases load libnss_files/libnss_dns (and libresolv) from disk.
glibc="$(getconf GNU_LIBC_VERSION | awk '{print $2}')"
if [[ $(printf '%s\n' "$glibc" 2.34 | sort -V | head -n 1) != 2.34 ]]; then
  for lib in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2 \
    /lib/x86_64-linux-gnu/libresolv.so.2; do
    [[ -e $rootfs$lib ]] || cp -L "$lib" "$rootfs$lib"
  done
fi
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
# `user haproxy` / `user nobody` in a config find these.
printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
  'haproxy:x:101:101::/var/lib/haproxy:/bin/false' \
  'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$rootfs/etc/passwd"
printf '%s\n' 'root:x:0:' 'haproxy:x:101:' 'nogroup:x:65534:' >"$rootfs/etc/group"
cp /etc/protocols /etc/services "$rootfs/etc/" 2>/dev/null || true

"$DOCKER" image rm -f "$IMAGE" >/dev/null 2>&1 || true
tar -C "$rootfs" -c . | "$DOCKER" import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'CMD ["haproxy", "-vv"]' \
  - "$IMAGE" >/dev/null
size=$(du -sh "$rootfs" | cut -f1)
echo "haproxy-image: built $IMAGE ($version; extra packages: ${extras[*]:-none}; $size rootfs)"
