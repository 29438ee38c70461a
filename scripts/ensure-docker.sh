#!/usr/bin/env bash
# Makes sure the wanted Docker release's daemon runs here and the e2e test image exists.
#   DOCKER=20 (default: Debian 12's docker.io), 26 (Debian trixie), 28 (Debian forky) or 29
#     (built from source: shared/docker-29, see scripts/docker-release.sh)
#   FIREWALL_BACKEND=nftables (29 only): dockerd --firewall-backend=nftables; its own data root,
#     log and state directory (-29-nftables), and the iptables FORWARD policy set to ACCEPT
#     (an iptables-mode daemon left it DROP, which breaks nftables-mode bridges: Docker's own too)
#   DOCKERD_FLAGS: extra dockerd flags when it starts one (e.g. --live-restore)
# Only one dockerd runs at a time (they share /var/run/docker.sock and the iptables chains):
# a running daemon of another release is stopped first. 26 and 28 keep their own data root
# (/var/lib/docker-26, -28) and log (/var/log/dockerd-26.log, -28.log).
# Idempotent: safe on a fresh Debian 12 machine (as root) or on one where all is ready.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wanted=${DOCKER:-20}
backend=${FIREWALL_BACKEND:-iptables}
case $backend in
  iptables) tag=$wanted ;;
  nftables)
    [[ $wanted == 29 ]] || { echo "ensure-docker: FIREWALL_BACKEND=nftables needs DOCKER=29" >&2; exit 2; }
    tag=$wanted-nftables
    ;;
  *) echo "ensure-docker: unknown FIREWALL_BACKEND '$backend' (iptables or nftables)" >&2; exit 2 ;;
esac
export DEBIAN_FRONTEND=noninteractive

apt_updated=false
apt_install() {
  if [[ $apt_updated == false ]]; then
    apt-get update -q
    apt_updated=true
  fi
  apt-get install -y -q "$@"
}

need=()
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)  # the plugin deletes UDP conntrack entries
[[ -x /bin/busybox ]] || need+=(busybox-static)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry) # registry tests
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)                # multi-host tests
PATH=/usr/sbin:/usr/bin command -v dockerd >/dev/null || need+=(docker.io) # also the DinD hosts'
command -v runc >/dev/null 2>&1 || need+=(runc)
[[ -x /usr/bin/tini-static ]] || need+=(tini)
if ((${#need[@]} > 0)); then
  echo "ensure-docker: installing ${need[*]}"
  apt_install "${need[@]}"
fi

bin=$("$here/docker-release.sh" "$wanted")
# The compose e2e test runs Debian's Docker Compose v2, which comes with the 28 release.
[[ -x /opt/switchyard/docker-28/cli-plugins/docker-compose ]] || "$here/docker-release.sh" 28 >/dev/null
export PATH="$bin:$PATH"
if [[ $tag == 20 ]]; then
  data_root=/var/lib/docker
  log=/var/log/dockerd.log
else
  data_root=/var/lib/docker-$tag
  log=/var/log/dockerd-$tag.log
fi
backend_flags=()
[[ $backend == nftables ]] && backend_flags=(--firewall-backend=nftables)
# The release the last daemon started here was, so its firewall leftovers can be cleared.
marker=/var/lib/switchyard-docker-release

# The running daemon's release and firewall backend, as a tag (20, 28, 29-nftables…).
running_major() {
  local version firewall
  version=$(docker version --format '{{.Server.Version}}' 2>/dev/null) || return 1
  firewall=$(docker info --format '{{with .FirewallBackend}}{{.Driver}}{{end}}' 2>/dev/null || true)
  if [[ $firewall == nftables ]]; then echo "${version%%.*}-nftables"; else echo "${version%%.*}"; fi
}

stop_daemon() {
  local pid
  pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  echo "ensure-docker: stopping dockerd $1 (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
  done
  echo "ensure-docker: dockerd $pid did not stop within 60 s" >&2
  exit 1
}

# Docker's iptables chains of another release (28 adds DOCKER-FORWARD, DOCKER-BRIDGE, … and
# raw PREROUTING drops) would confuse an older daemon: a daemon re-creates its own at start.
clear_docker_firewall() {
  local table chain
  # Best effort: a chain or rule already gone is fine (grep finding nothing is no failure).
  set +e +o pipefail
  for table in raw nat filter; do
    for chain in PREROUTING OUTPUT POSTROUTING FORWARD INPUT; do
      iptables -w -t "$table" -S "$chain" 2>/dev/null | grep -E -- '-j DOCKER|! -o docker0 -j MASQUERADE' | sed 's/^-A/-D/' |
        while read -r rule; do eval "iptables -w -t $table $rule" || true; done
    done
    for chain in $(iptables -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ && $2 != "DOCKER-USER" {print $2}'); do
      iptables -w -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ && $2 != "DOCKER-USER" {print $2}'); do
      iptables -w -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
  # Docker 26/28 made iptables-nft's raw table for its drops; Docker 20.10 uses none. Drop it
  # when nothing but empty built-in chains is left in it.
  if ! iptables -w -t raw -S 2>/dev/null | grep -q -- '^-A'; then
    nft delete table ip raw 2>/dev/null || true
  fi
  set -e -o pipefail
}

current=$(running_major || true)
if [[ $current == "$tag" ]]; then
  echo "ensure-docker: dockerd $tag is already running"
else
  [[ -n $current ]] && stop_daemon "$current"
  pid=$(cat /var/run/docker.pid 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    # A second dockerd would fail on the pid file; a starting one just needs time.
    echo "ensure-docker: a dockerd is starting; waiting for it"
  else
    last=$(cat "$marker" 2>/dev/null || echo "$tag")
    if [[ $last != "$tag" ]]; then
      echo "ensure-docker: clearing Docker $last's firewall rules"
      clear_docker_firewall
      # Docker 29's nftables backend keeps its rules in tables of its own.
      if [[ $last == *-nftables ]]; then
        nft delete table ip docker-bridges 2>/dev/null || true
        nft delete table ip6 docker-bridges 2>/dev/null || true
      fi
    fi
    if [[ $backend == iptables && $last == *-nftables ]]; then
      # Back to an iptables-mode daemon: the DROP policy it set when it first enabled IP
      # forwarding (and does not set again while forwarding is on), which the nftables-mode
      # run below had to lift. Bridges' isolation from each other relies on it.
      iptables -w -P FORWARD DROP
    fi
    if [[ $backend == nftables ]]; then
      # An iptables-mode daemon that ran here left FORWARD's policy DROP; nftables-mode
      # bridges (Docker's own as much as Switchyard's) pass nothing until it is ACCEPT again.
      iptables -w -P FORWARD ACCEPT
      ip6tables -w -P FORWARD ACCEPT 2>/dev/null || true
    fi
    echo "$tag" >"$marker"
    echo "ensure-docker: starting dockerd $tag (log: $log)"
    # shellcheck disable=SC2086 # DOCKERD_FLAGS is a list of flags
    setsid dockerd --data-root "$data_root" "${backend_flags[@]}" ${DOCKERD_FLAGS:-} >>"$log" 2>&1 </dev/null &
  fi
  ready=false
  for _ in $(seq 1 60); do
    if [[ $(running_major || true) == "$tag" ]]; then
      ready=true
      break
    fi
    sleep 1
  done
  if [[ $ready == false ]]; then
    echo "ensure-docker: dockerd $tag did not answer within 60 s; end of $log:" >&2
    tail -n 40 "$log" >&2 || true
    exit 1
  fi
  echo "ensure-docker: dockerd $tag is ready ($(docker version --format '{{.Server.Version}}'))"
fi

"$here/test-image.sh"
