import { RESOLVER_LIMITS } from "../dns/rate-limit.ts";
import { internal } from "../errors.ts";
import { formatAddress, tryParseAddress } from "../ipam/prefix.ts";
import type { NetworkRecord } from "../state/model.ts";
import { quote, UPLINK_SET } from "./render-names.ts";

// The resolver's guard in the inet table's input hook: its address answers only this host, and
// a flood from one client is cut in the kernel.

/** The nftables set metering each client of the resolver (a dynamic set of source addresses). */
const RESOLVER_FLOOD_SET = "resolver_flood";
/**
 * The packet filter's own limit per client of the resolver, UDP only (TCP has the resolver's
 * connection caps): twice what the resolver answers one source, so a client within that never
 * meets this one, while a flood is cut in the kernel instead of costing the plugin's event
 * loop about 12 µs a packet to receive and drop. As many clients are metered as the resolver
 * keeps buckets for, each forgotten after a minute of silence; past that a new source goes
 * unmetered here (the resolver's buckets still hold).
 */
const RESOLVER_FLOOD_RATE = 2 * RESOLVER_LIMITS.perSourceRate;
const RESOLVER_FLOOD_BURST = 2 * RESOLVER_LIMITS.perSourceBurst;
const RESOLVER_FLOOD_SIZE = RESOLVER_LIMITS.maxSources;

/**
 * The resolver's address (on `lo`) answers only this host: the host itself (`lo`), the
 * containers of this host's multi-host networks from their own bridge, and those of any other
 * container network of the host (a bridge or a veth that is not an uplink). A packet to it
 * from anywhere else (the LAN, through an uplink or any other interface; a forged container
 * address from outside) is dropped. The other container networks are let through on purpose:
 * the `dns` setting is daemon-wide, so every container of the host asks this resolver first,
 * and only a reply (REFUSED) sends it on to its next server at once; a drop would make it wait
 * out its timeout (4 s in Docker, 5 s in glibc) on every lookup.
 */
export function resolverRules(all: NetworkRecord[], resolverAddress: string | undefined): string[] {
  if (resolverAddress === undefined) return [];
  const parsed = tryParseAddress(resolverAddress);
  if (parsed === undefined || parsed.v6) {
    throw internal(
      `cannot render the resolver's packet filter: "${resolverAddress}" is not an IPv4 address`,
    );
  }
  const to = `ip daddr ${formatAddress(parsed)}`;
  const multiHost = all.flatMap((network) =>
    network.vxlanId === undefined
      ? []
      : network.ipv4.map(
          (item) =>
            `    iifname ${quote(network.bridge)} ip saddr ${item.pool} return comment "a multi-host network's containers"`,
        ),
  );
  return [
    `  set ${RESOLVER_FLOOD_SET} {`,
    "    type ipv4_addr;",
    `    size ${RESOLVER_FLOOD_SIZE};`,
    "    flags dynamic,timeout;",
    "    timeout 1m;",
    "  }",
    "  chain resolver_input {",
    "    type filter hook input priority -1; policy accept;",
    `    ${to} meta l4proto { tcp, udp } th dport 53 jump resolver_clients`,
    `    ${to} udp dport 53 iifname != "lo" update @${RESOLVER_FLOOD_SET} { ip saddr limit rate over ${RESOLVER_FLOOD_RATE}/second burst ${RESOLVER_FLOOD_BURST} packets } drop comment "a flood from one client"`,
    "  }",
    "  chain resolver_clients {",
    '    iifname "lo" return comment "the host itself"',
    ...multiHost,
    `    iifname != @${UPLINK_SET} meta iifkind { "bridge", "veth" } return comment "another container network: refused by the resolver, at once"`,
    `    drop comment "the resolver answers only this host's containers"`,
    "  }",
  ];
}
