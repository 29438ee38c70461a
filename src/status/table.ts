import { describeBinding } from "../driver/ports.ts";
import { bareAddress, type StateDocument } from "../state/model.ts";
import { type DockerNames, NO_NAMES, shortId } from "./names.ts";
import { multiHostOf } from "./view.ts";

/** Docker's table layout (its tabwriter: minimum cell width 10, 3 spaces of padding). */
const MIN_WIDTH = 10;
const PADDING = 3;

/**
 * Rows under a header, each column as wide as its widest cell plus padding, as `docker ps`
 * prints them; the last column is not padded and no line ends in spaces.
 */
export function formatTable(header: readonly string[], rows: readonly string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, column) =>
    Math.max(MIN_WIDTH, ...all.map((row) => (row[column] ?? "").length + PADDING)),
  );
  const lines = all.map((row) =>
    header
      .map((_, column) => {
        const cell = row[column] ?? "";
        return column === header.length - 1 ? cell : cell.padEnd(widths[column] ?? 0);
      })
      .join("")
      .trimEnd(),
  );
  return `${lines.join("\n")}\n`;
}

const yesNo = (value: boolean): string => (value ? "yes" : "no");

/** Code-unit order: the same on every host, whatever its locale. */
const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** The networks table: what `docker network ls` cannot show for a plugin's network. */
export function networksTable(
  state: Readonly<StateDocument>,
  names: DockerNames = NO_NAMES,
): string {
  const rows = Object.values(state.networks).map((network) => {
    const addressing = [...network.ipv4, ...network.ipv6];
    const multiHost = multiHostOf(state, network);
    return [
      shortId(network.id),
      names.networks.get(network.id) ?? "",
      network.bridge,
      addressing.map((item) => item.pool).join(","),
      addressing.flatMap((item) => (item.gateway ? [bareAddress(item.gateway)] : [])).join(","),
      yesNo(network.internal),
      yesNo(network.icc),
      // An internal network never leaves the host, whatever its masquerade option says.
      yesNo(network.masquerade && !network.internal),
      multiHost === undefined ? "" : String(multiHost.vni),
      multiHost?.peers.join(", ") ?? "",
    ];
  });
  rows.sort((a, b) => byText(a[1] || a[0] || "", b[1] || b[0] || ""));
  return formatTable(
    [
      "NETWORK ID",
      "NAME",
      "BRIDGE",
      "SUBNET",
      "GATEWAY",
      "INTERNAL",
      "ICC",
      "MASQUERADE",
      "VNI",
      "PEERS",
    ],
    rows,
  );
}

/**
 * The endpoints table: one row per container interface, with its published ports (which
 * `docker ps` leaves empty for a plugin's network). A container Docker did not name (or no
 * names sent) shows as its short endpoint ID, a network as its short ID.
 */
export function endpointsTable(
  state: Readonly<StateDocument>,
  names: DockerNames = NO_NAMES,
): string {
  const rows = Object.values(state.endpoints).map((endpoint) => [
    names.containers.get(endpoint.id) ?? shortId(endpoint.id),
    names.networks.get(endpoint.networkId) ?? shortId(endpoint.networkId),
    [endpoint.address, endpoint.addressV6]
      .flatMap((address) => (address ? [bareAddress(address)] : []))
      .join(","),
    endpoint.mac,
    endpoint.hostVeth,
    endpoint.ports.map(describeBinding).join(", "),
  ]);
  rows.sort((a, b) => byText(`${a[0]}\u0000${a[1]}`, `${b[0]}\u0000${b[1]}`));
  return formatTable(["CONTAINER", "NETWORK", "ADDRESS", "MAC", "HOST VETH", "PORTS"], rows);
}

/** Both tables, networks first, a blank line between them (`?format=table`). */
export function statusTables(
  state: Readonly<StateDocument>,
  names: DockerNames = NO_NAMES,
): string {
  return `${networksTable(state, names)}\n${endpointsTable(state, names)}`;
}
