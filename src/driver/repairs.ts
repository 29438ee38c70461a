import type { LinkInfo } from "../datapath/datapath.ts";
import {
  isDerivedBridgeName,
  isHostVethName,
  isVxlanDeviceName,
  vxlanDeviceName,
} from "../names.ts";
import type { StateDocument } from "../state/model.ts";

/** One thing start-up reconciliation does (or reports) to bring the host in line with the state. */
export type Repair =
  /** Make sure an owned bridge exists with its addresses; `missing` when it is gone. */
  | { kind: "ensure-bridge"; networkId: string; bridge: string; missing: boolean }
  /** A bridge the user gave (`-o bridge=`) is gone: reported, never re-created. */
  | { kind: "missing-user-bridge"; networkId: string; bridge: string }
  /** Make sure a multi-host network's VXLAN device exists. */
  | { kind: "ensure-vxlan"; networkId: string; device: string; missing: boolean }
  /** A known veth is off its bridge (the bridge was re-created). */
  | { kind: "reattach"; networkId: string; veth: string; bridge: string }
  /**
   * A known endpoint's container went while the plugin was away, so its record and ports go
   * too. `released`: Docker moved the container end back to the host (it does when it drops
   * a sandbox), having failed to tell us and to release the address, which is given back
   * here. Otherwise the veth is gone altogether (a reboot, a deleted namespace), and the
   * address is left to Docker's own clean-up.
   */
  | {
      kind: "forget-endpoint";
      networkId: string;
      endpointId: string;
      veth: string;
      released: boolean;
    }
  /** A Switchyard-named interface no network or endpoint knows, with nothing on it. */
  | { kind: "delete-stray"; link: string; what: "veth" | "bridge" | "VXLAN device" }
  /** A Switchyard-named interface this state does not know but that is in use: left alone. */
  | { kind: "leave-alone"; link: string };

/** The network a repair belongs to, so the executor can go network by network. */
export const repairNetwork = (repair: Repair): string | undefined =>
  "networkId" in repair ? repair.networkId : undefined;

/** How a repair reads in the log and in reconcile's answer. */
export function describeRepair(repair: Repair): string {
  switch (repair.kind) {
    case "ensure-bridge":
      return `re-created bridge ${repair.bridge}`;
    case "missing-user-bridge":
      return `bridge "${repair.bridge}" of network ${repair.networkId.slice(0, 12)} no longer exists on this host; re-create it (Switchyard does not make bridges it was told to use)`;
    case "ensure-vxlan":
      return `re-created VXLAN device ${repair.device}`;
    case "reattach":
      return `re-attached ${repair.veth} to ${repair.bridge}`;
    case "forget-endpoint":
      return repair.released
        ? `forgot endpoint ${repair.endpointId.slice(0, 12)}: Docker gave its container end ${repair.veth} back (container removed while the plugin was away)`
        : `forgot endpoint ${repair.endpointId.slice(0, 12)}: its veth ${repair.veth} is gone (container removed while the plugin was away)`;
    case "delete-stray":
      return `removed stray ${repair.what} ${repair.link}`;
    case "leave-alone":
      return `left ${repair.link} alone: a Switchyard-named interface in use that this state does not know`;
  }
}

/** True when a repair is worth reporting: idempotent checks and what is left alone are not. */
export const isReported = (repair: Repair): boolean =>
  repair.kind !== "leave-alone" &&
  !((repair.kind === "ensure-bridge" || repair.kind === "ensure-vxlan") && !repair.missing);

/**
 * What start-up reconciliation must do, from the state and the host's interfaces (pure).
 * Owned bridges and VXLAN devices are always ensured (cheap, idempotent: addresses may be
 * gone); only leftovers are deleted: a veth detached or on one of our bridges, a bridge or
 * VXLAN device with no container on it. What is in use but unknown (another Switchyard, a
 * wrong state directory) is left alone.
 */
export function planRepairs(state: Readonly<StateDocument>, links: readonly LinkInfo[]): Repair[] {
  const byName = new Map(links.map((link) => [link.name, link]));
  const networks = Object.values(state.networks);
  const repairs: Repair[] = [];
  for (const network of networks) {
    const link = byName.get(network.bridge);
    if (network.bridgeOwned) {
      repairs.push({
        kind: "ensure-bridge",
        networkId: network.id,
        bridge: network.bridge,
        missing: link === undefined,
      });
    } else if (link?.kind !== "bridge") {
      repairs.push({ kind: "missing-user-bridge", networkId: network.id, bridge: network.bridge });
    }
    if (network.vxlanId !== undefined) {
      const device = vxlanDeviceName(network.vxlanId);
      repairs.push({
        kind: "ensure-vxlan",
        networkId: network.id,
        device,
        missing: !byName.has(device),
      });
    }
  }
  for (const endpoint of Object.values(state.endpoints)) {
    const network = state.networks[endpoint.networkId];
    const veth = byName.get(endpoint.hostVeth);
    if (network === undefined) continue;
    const released = veth !== undefined && byName.has(endpoint.peerVeth);
    if (veth === undefined || released) {
      repairs.push({
        kind: "forget-endpoint",
        networkId: network.id,
        endpointId: endpoint.id,
        veth: endpoint.hostVeth,
        released,
      });
    } else if (
      veth.master !== network.bridge &&
      (network.bridgeOwned || byName.get(network.bridge)?.kind === "bridge")
    ) {
      repairs.push({
        kind: "reattach",
        networkId: network.id,
        veth: endpoint.hostVeth,
        bridge: network.bridge,
      });
    }
  }
  const knownVeths = new Set(Object.values(state.endpoints).map((endpoint) => endpoint.hostVeth));
  const knownBridges = new Set(networks.map((network) => network.bridge));
  const knownVxlans = new Set(
    networks.flatMap((network) =>
      network.vxlanId === undefined ? [] : [vxlanDeviceName(network.vxlanId)],
    ),
  );
  const hasPorts = (bridge: string): boolean =>
    links.some((link) => link.master === bridge && !isVxlanDeviceName(link.name));
  for (const link of links) {
    const veth = isHostVethName(link.name);
    const bridge = link.kind === "bridge" && isDerivedBridgeName(link.name);
    const vxlan = isVxlanDeviceName(link.name);
    if (!(veth || bridge || vxlan)) continue;
    if (knownVeths.has(link.name) || knownBridges.has(link.name) || knownVxlans.has(link.name))
      continue;
    const leftover = veth
      ? link.master === undefined || knownBridges.has(link.master)
      : bridge
        ? !hasPorts(link.name)
        : link.master === undefined || !hasPorts(link.master);
    if (!leftover) {
      repairs.push({ kind: "leave-alone", link: link.name });
      continue;
    }
    repairs.push({
      kind: "delete-stray",
      link: link.name,
      what: veth ? "veth" : vxlan ? "VXLAN device" : "bridge",
    });
  }
  return repairs;
}

/**
 * Bridges with containers that the state does not know: a sign of an empty or wrong state
 * directory. Rewriting the packet filter then would cut those containers off, so start-up
 * leaves the filter as it is while any exist (pure).
 */
export function liveUnknownBridges(
  repairs: readonly Repair[],
  links: readonly LinkInfo[],
): string[] {
  const left = new Set(
    repairs.flatMap((repair) => (repair.kind === "leave-alone" ? [repair.link] : [])),
  );
  return links
    .filter((link) => left.has(link.name) && link.kind === "bridge")
    .map((link) => link.name);
}
