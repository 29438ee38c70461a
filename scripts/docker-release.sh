#!/usr/bin/env bash
# Puts a Docker release from Debian's archive into /opt/switchyard/docker-MAJOR/bin, ready to
# be first on PATH: dockerd, docker (docker-cli where it is its own package), containerd
# (+ shim), docker-proxy, docker-compose, and
# the host's runc and tini (the newer suites' runc needs a newer glibc than Debian 12's).
# Usage: scripts/docker-release.sh 20|26|28|29   (prints the bin directory)
# 20 is the host's own Docker (Debian 12's docker.io, installed with apt if no Docker is there);
# 26 comes from Debian trixie, 28 from forky.
# 29 is not packaged by Debian: its dockerd, docker-proxy and runc (1.3.6; Debian 12's 1.1.5
# cannot make the time namespace 29 asks for) come from DOCKER29_DIR (default: the workplace's
# shared/docker-29 beside this checkout), checked against its SHA256SUMS; containerd, the
# client and Compose are 28's (Debian forky), as that folder's README says.
# Nothing of the system's apt configuration is changed: a private list and cache are used.
set -euo pipefail

major=${1:?usage: docker-release.sh 20|26|28|29}
root=/opt/switchyard/docker-$major
bin=$root/bin
export DEBIAN_FRONTEND=noninteractive

case $major in
  20) suite="" ;;
  26) suite=trixie ;;
  28) suite=forky ;;
  29) suite="" ;;
  *) echo "docker-release: unknown Docker release '$major' (20, 26, 28 or 29)" >&2; exit 2 ;;
esac

link_host_tools() {
  for tool in runc:/usr/sbin/runc docker-init:/usr/bin/tini-static; do
    local name=${tool%%:*} target=${tool#*:}
    [[ -x $target ]] || { echo "docker-release: $target is missing (apt-get install -y runc tini)" >&2; exit 1; }
    ln -sf "$target" "$bin/$name"
  done
}

if [[ -x $bin/dockerd && -x $bin/docker ]]; then
  echo "$bin"
  exit 0
fi

if [[ $major == 29 ]]; then
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  source_dir=${DOCKER29_DIR:-$here/../../shared/docker-29}
  for file in SHA256SUMS dockerd.gz docker-proxy.gz runc.gz; do
    [[ -r $source_dir/$file ]] || {
      echo "docker-release: Docker 29 needs $source_dir/$file (Docker Engine 29.7.2's dockerd and docker-proxy and runc 1.3.6, built from source: see shared/docker-29/README.md; set DOCKER29_DIR to the folder holding them)" >&2
      exit 1
    }
  done
  # containerd, the 28.5 client (29 refuses clients below API 1.44) and Compose: forky's.
  release28=$("${BASH_SOURCE[0]}" 28)
  command -v tini-static >/dev/null || [[ -x /usr/bin/tini-static ]] || {
    apt-get update -q >&2
    apt-get install -y -q tini >&2
  }
  unpacked=$root/unpacked
  rm -rf "$unpacked"
  mkdir -p "$unpacked" "$bin"
  for tool in dockerd docker-proxy runc; do
    gzip -dc "$source_dir/$tool.gz" >"$unpacked/$tool"
    chmod 755 "$unpacked/$tool"
  done
  (cd "$unpacked" && sha256sum --quiet -c "$source_dir/SHA256SUMS") >&2 || {
    echo "docker-release: the Docker 29 binaries in $source_dir do not match its SHA256SUMS" >&2
    rm -rf "$unpacked"
    exit 1
  }
  for tool in dockerd docker-proxy runc; do ln -sf "$unpacked/$tool" "$bin/$tool"; done
  for tool in docker containerd containerd-shim-runc-v2; do
    ln -sf "$(readlink -f "$release28/$tool")" "$bin/$tool"
  done
  ln -sf /usr/bin/tini-static "$bin/docker-init"
  if [[ -e /opt/switchyard/docker-28/cli-plugins/docker-compose ]]; then
    mkdir -p "$root/cli-plugins"
    ln -sf "$(readlink -f /opt/switchyard/docker-28/cli-plugins/docker-compose)" "$root/cli-plugins/docker-compose"
  fi
  "$bin/dockerd" --version >&2
  "$bin/runc" --version | head -n1 >&2
  echo "$bin"
  exit 0
fi

mkdir -p "$bin"
if [[ -z $suite ]]; then
  # Debian 12's own docker.io, as ensure-docker.sh installs it: its client matches its daemon.
  # The host's own Docker (Debian's docker.io, or Docker CE, whose dockerd is in /usr/bin).
  PATH=/usr/sbin:/usr/bin command -v dockerd >/dev/null || {
    apt-get update -q >&2
    apt-get install -y -q docker.io >&2
  }
  for tool in dockerd docker containerd containerd-shim-runc-v2 docker-proxy; do
    found=$(PATH=/usr/sbin:/usr/bin command -v "$tool") || {
      echo "docker-release: $tool is missing (apt-get install -y docker.io)" >&2
      exit 1
    }
    ln -sf "$found" "$bin/$tool"
  done
  link_host_tools
  echo "$bin"
  exit 0
fi

command -v runc >/dev/null && [[ -x /usr/bin/tini-static ]] || {
  apt-get update -q >&2
  apt-get install -y -q runc tini >&2
}
uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
[[ -n $uri ]] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[[ -n $uri ]] || { echo "docker-release: cannot find the Debian archive URI in apt's sources" >&2; exit 1; }
apt_dir=$root/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$root/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" >"$apt_dir/sources.list"
apt_private=(
  -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
)
echo "docker-release: fetching docker.io, containerd and docker-compose from Debian $suite" >&2
apt-get "${apt_private[@]}" update -q >&2
(cd "$root/debs" && apt-get "${apt_private[@]}" download docker.io containerd docker-compose >&2)
# Newer suites ship the client as its own package.
(cd "$root/debs" && apt-get "${apt_private[@]}" download docker-cli >&2 2>/dev/null) || true
for deb in "$root"/debs/*.deb; do dpkg -x "$deb" "$root/tree"; done
for tool in dockerd docker containerd containerd-shim-runc-v2 docker-proxy; do
  # Only programs under usr/(s)bin: the packages also hold /etc/init.d/docker.
  found=$(find "$root/tree/usr" -type f -perm -u+x \( -path "*/bin/$tool" -o -path "*/sbin/$tool" \) | head -n1)
  [[ -n $found ]] || { echo "docker-release: $tool not found in the $suite packages" >&2; exit 1; }
  ln -sf "$found" "$bin/$tool"
done
compose=$(find "$root/tree" -type f -name docker-compose -perm -u+x | head -n1)
if [[ -n $compose ]]; then
  mkdir -p "$root/cli-plugins"
  ln -sf "$compose" "$root/cli-plugins/docker-compose"
fi
link_host_tools
"$bin/dockerd" --version >&2
echo "$bin"
