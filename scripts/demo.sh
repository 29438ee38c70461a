#!/usr/bin/env bash
# A walk through Switchyard's seed scenario on this machine: a network on a bridge the user
# made, a user-defined network with subnet/gateway/ip-range, two containers reaching each
# other by name and alias, a published port fetched from the host, an internal network.
# Prints each step and its result, cleans up everything it made, exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

PLUGIN=${1:-switchyard:latest}
IMAGE=switchyard-test/busybox:latest
P=sydemo
failures=0

cleanup() {
  docker rm -f $P-web $P-client $P-vault $P-guard $P-user >/dev/null 2>&1 || true
  docker network rm $P-net $P-internal $P-user >/dev/null 2>&1 || true
  ip link del $P-br1 >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

step() { printf '\n==> %s\n' "$*"; }
show() { printf '    $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/    /'; }
check() {
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    printf '    ok: %s\n' "$what"
  else
    printf '    FAILED: %s\n' "$what"
    failures=$((failures + 1))
  fi
}
refuse() {
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    printf '    FAILED: %s\n' "$what"
    failures=$((failures + 1))
  else
    printf '    ok: %s\n' "$what"
  fi
}

scripts/test-image.sh >/dev/null

step "A network on a bridge you made (-o bridge=$P-br1)"
show ip link add $P-br1 type bridge
show ip addr add 10.240.1.1/24 dev $P-br1
show ip link set $P-br1 up
show docker network create --driver "$PLUGIN" --ipam-driver "$PLUGIN" -o bridge=$P-br1 \
  --subnet 10.240.1.0/24 --gateway 10.240.1.1 --ip-range 10.240.1.128/25 $P-user
show docker run -d --name $P-user --network $P-user $IMAGE sleep 600
user_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$P-user\").IPAddress}}" $P-user)
printf '    container address: %s\n' "$user_ip"
check "the host reaches the container on $P-br1 ($user_ip)" busybox ping -c1 -W2 "$user_ip"
check "its veth is a port of $P-br1" test -n "$(ip -o link show master $P-br1)"
refuse "a missing bridge is refused with a clear error" docker network create --driver "$PLUGIN" \
  --ipam-driver "$PLUGIN" -o bridge=$P-nobr --subnet 10.240.9.0/24 $P-nope
show docker network create --driver "$PLUGIN" --ipam-driver "$PLUGIN" -o bridge=$P-nobr \
  --subnet 10.240.9.0/24 $P-nope || true

step "A user-defined network with subnet, gateway and ip-range"
show docker network create --driver "$PLUGIN" --ipam-driver "$PLUGIN" \
  --subnet 10.240.2.0/24 --gateway 10.240.2.1 --ip-range 10.240.2.128/25 $P-net
show docker run -d --name $P-web --network $P-net --network-alias www -p 18080:80 $IMAGE \
  sh -c 'echo "hello from switchyard" > /tmp/index.html && httpd -f -p 80 -h /tmp'
show docker run -d --name $P-client --network $P-net $IMAGE sleep 600

step "Two containers reach each other by name and by alias"
check "$P-client pings $P-web by name" docker exec $P-client ping -c1 -W2 $P-web
check "$P-client pings the alias www" docker exec $P-client ping -c1 -W2 www
show docker exec $P-client sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 www 80 | tail -1"

step "A published port (-p 18080:80) fetched from the host"
show sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | busybox nc -w 2 127.0.0.1 18080 | tail -1"
check "http://127.0.0.1:18080 answers" sh -c \
  "printf 'GET / HTTP/1.0\r\n\r\n' | busybox nc -w 2 127.0.0.1 18080 | grep -q 'hello from switchyard'"
printf '    (docker ps cannot show a plugin'"'"'s ports; make status shows them:)\n'
show scripts/switchyard-status "$PLUGIN"

step "An internal network: its containers talk to each other and to nothing else"
show docker network create --driver "$PLUGIN" --ipam-driver "$PLUGIN" --internal \
  --subnet 10.240.3.0/24 $P-internal
show docker run -d --name $P-vault --network $P-internal $IMAGE sleep 600
show docker run -d --name $P-guard --network $P-internal $IMAGE sleep 600
check "$P-guard reaches $P-vault" docker exec $P-guard ping -c1 -W2 $P-vault
web_ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$P-net\").IPAddress}}" $P-web)
refuse "$P-vault cannot reach $P-web on another network ($web_ip)" docker exec $P-vault ping -c1 -W2 "$web_ip"

step "Cleaning up"
cleanup
check "no $P network is left" test -z "$(docker network ls -q --filter name=$P-)"
check "no $P bridge is left" sh -c "! ip link show $P-br1"

if ((failures > 0)); then
  printf '\ndemo: %d step(s) FAILED\n' "$failures"
  exit 1
fi
printf '\ndemo: every step worked\n'
