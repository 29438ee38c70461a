#!/usr/bin/env bash
# Makes sure a Docker 20.10 daemon runs here and the e2e test image exists.
# Idempotent: safe to run on a fresh Debian 12 machine (as root) or on one where all is ready.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The docker.io client speaks API 1.41, which the 20.10 daemon understands; the newer client
# that may come first on PATH does not work with every flag against it.
DOCKER=/usr/bin/docker
export DOCKER_API_VERSION=1.41
export DEBIAN_FRONTEND=noninteractive

apt_updated=false
apt_install() {
  if [[ $apt_updated == false ]]; then
    apt-get update -q
    apt_updated=true
  fi
  apt-get install -y -q "$@"
}

if ! command -v dockerd >/dev/null 2>&1 || [[ ! -x $DOCKER ]]; then
  echo "ensure-docker: installing docker.io and tools"
  apt_install docker.io busybox-static nftables iptables iproute2
else
  echo "ensure-docker: dockerd is installed ($(dockerd --version))"
fi

# The registry tests (plugin push / install / upgrade) run a local registry.
if ! command -v docker-registry >/dev/null 2>&1; then
  echo "ensure-docker: installing docker-registry"
  apt_install docker-registry
fi

# Multi-host tests run a real etcd (Debian's etcd-server, 3.4).
if ! command -v etcd >/dev/null 2>&1; then
  echo "ensure-docker: installing etcd-server"
  apt_install etcd-server
fi

if [[ ! -x /bin/busybox ]]; then
  echo "ensure-docker: installing busybox-static"
  apt_install busybox-static
fi

if "$DOCKER" info >/dev/null 2>&1; then
  echo "ensure-docker: dockerd is already running"
else
  pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    # A second dockerd would fail on the pid file; a starting one just needs time.
    echo "ensure-docker: dockerd is starting; waiting for it"
  else
    echo "ensure-docker: starting dockerd (log: /var/log/dockerd.log)"
    setsid dockerd >>/var/log/dockerd.log 2>&1 </dev/null &
  fi
  ready=false
  for _ in $(seq 1 60); do
    if "$DOCKER" info >/dev/null 2>&1; then
      ready=true
      break
    fi
    sleep 1
  done
  if [[ $ready == false ]]; then
    echo "ensure-docker: dockerd did not answer within 60 s; end of /var/log/dockerd.log:" >&2
    tail -n 40 /var/log/dockerd.log >&2 || true
    exit 1
  fi
  echo "ensure-docker: dockerd is ready"
fi

"$here/test-image.sh"
