import { bareAddress, type StateDocument } from "../state/model.ts";
import { NFT_TABLE, quote } from "./render-names.ts";

// Published ports (`-p`) as set and map elements. The rules that use them are fixed; what an
// endpoint publishes is elements only, so publishing or revoking is one small transaction
// whatever the host holds, and the kernel finds a port by lookup, not by walking a rule each.

/** Host port (any local address) → container address and port: `tcp . 8081 : 10.1.0.2 . 80`. */
const PUBLISHED = "published";
/** The same for bindings to one host address: `10.0.0.5 . tcp . 8081 : 10.1.0.2 . 80`. */
const PUBLISHED_ADDR = "published_addr";
/**
 * The bridge of each published port: traffic from the publishing network's own bridge is left
 * to the plugin's relay (which reaches the container from the gateway, as Docker's userland
 * proxy does), so prerouting does not DNAT it.
 */
const PUBLISHED_OWN = "published_own";
const PUBLISHED_ADDR_OWN = "published_addr_own";

const PUBLISHED_TYPES: Record<string, string> = {
  [PUBLISHED]: "map { type inet_proto . inet_service : ipv4_addr . inet_service;",
  [PUBLISHED_ADDR]: "map { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;",
  [PUBLISHED_OWN]: "set { type ifname . inet_proto . inet_service;",
  [PUBLISHED_ADDR_OWN]: "set { type ifname . ipv4_addr . inet_proto . inet_service;",
};

/** Each published set or map: element key → the element as nft writes it (with its value). */
export type PublishedElements = Record<string, Map<string, string>>;

/**
 * The elements for the state's published ports, in endpoint order (the first binding of a key
 * wins, as the first of two rules would). Internal networks publish nothing. DNAT is IPv4, as
 * Docker does it; loopback and IPv6 bindings are served by the plugin's local relay only. The
 * relay speaks TCP and UDP only, so for SCTP the kernel's DNAT is all there is: an SCTP
 * binding on a loopback address, and SCTP from the network's own containers or to 127.0.0.1,
 * stays unserved.
 */
export function publishedElements(state: Readonly<StateDocument>): PublishedElements {
  const elements: PublishedElements = {};
  for (const name of Object.keys(PUBLISHED_TYPES)) elements[name] = new Map();
  const add = (name: string, key: string, value?: string): void => {
    const set = elements[name] as Map<string, string>;
    if (!set.has(key)) set.set(key, value === undefined ? key : `${key} : ${value}`);
  };
  // Code-unit order, not localeCompare: IDs are hex, and this runs at every apply.
  const endpoints = Object.values(state.endpoints)
    .filter((endpoint) => endpoint.ports.length > 0)
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const endpoint of endpoints) {
    const network = state.networks[endpoint.networkId];
    if (network === undefined || network.internal || endpoint.address === undefined) continue;
    const address = bareAddress(endpoint.address);
    const bridge = quote(network.bridge);
    for (const binding of endpoint.ports) {
      const target = `${address} . ${binding.containerPort}`;
      const hostIp = binding.hostIp;
      if (binding.hostPort === 0 || hostIp.includes(":") || hostIp.startsWith("127.")) continue;
      const anyAddress = hostIp === "" || hostIp === "0.0.0.0";
      for (
        let port = binding.hostPort;
        port <= Math.max(binding.hostPort, binding.hostPortEnd);
        port++
      ) {
        const service = `${binding.proto} . ${port}`;
        if (anyAddress) {
          add(PUBLISHED, service, target);
          add(PUBLISHED_OWN, `${bridge} . ${service}`);
        } else {
          add(PUBLISHED_ADDR, `${hostIp} . ${service}`, target);
          add(PUBLISHED_ADDR_OWN, `${bridge} . ${hostIp} . ${service}`);
        }
      }
    }
  }
  return elements;
}

/** The declarations of the published sets and maps, with their elements when given. */
export function publishedDeclarations(published: PublishedElements | undefined): string[] {
  return Object.entries(PUBLISHED_TYPES).flatMap(([name, type]) => {
    const [kind, declaration] = type.split(" { ") as [string, string];
    const items = [...(published?.[name]?.values() ?? [])];
    return [
      `  ${kind} ${name} {`,
      `    ${declaration}`,
      ...(items.length === 0 ? [] : [`    elements = { ${items.join(", ")} }`]),
      "  }",
    ];
  });
}

/**
 * DNAT for published ports, as Docker does it: traffic arriving from elsewhere (prerouting)
 * and the host's own traffic to its non-loopback addresses (output).
 */
export function publishedDnatRules(hook: "prerouting" | "output"): string[] {
  const any = "meta l4proto . th dport";
  const one = "ip daddr . meta l4proto . th dport";
  if (hook === "prerouting") {
    return [
      `meta nfproto ipv4 fib daddr type local iifname . ${any} != @${PUBLISHED_OWN} dnat ip to ${any} map @${PUBLISHED}`,
      `iifname . ${one} != @${PUBLISHED_ADDR_OWN} dnat ip to ${one} map @${PUBLISHED_ADDR}`,
    ];
  }
  return [
    `ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to ${any} map @${PUBLISHED}`,
    `ip daddr != 127.0.0.0/8 dnat ip to ${one} map @${PUBLISHED_ADDR}`,
  ];
}

/**
 * One transaction taking the published elements from `before` to `after` (removals first, so
 * a key whose value changed is replaced), or "" when they are the same.
 */
export function renderPublishedUpdate(before: PublishedElements, after: PublishedElements): string {
  const deletes: string[] = [];
  const adds: string[] = [];
  for (const name of Object.keys(PUBLISHED_TYPES)) {
    const old = before[name] ?? new Map<string, string>();
    const now = after[name] ?? new Map<string, string>();
    const gone = [...old].filter(([key, element]) => now.get(key) !== element).map(([key]) => key);
    const added = [...now].filter(([key, element]) => old.get(key) !== element).map(([, e]) => e);
    if (gone.length > 0)
      deletes.push(`delete element inet ${NFT_TABLE} ${name} { ${gone.join(", ")} }`);
    if (added.length > 0)
      adds.push(`add element inet ${NFT_TABLE} ${name} { ${added.join(", ")} }`);
  }
  const lines = [...deletes, ...adds];
  return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
}
