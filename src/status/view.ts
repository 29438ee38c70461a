import { describeBinding } from "../driver/ports.ts";
import { bareAddress, type NetworkRecord, type StateDocument } from "../state/model.ts";
import { type DockerNames, NO_NAMES } from "./names.ts";

/** A multi-host network's VXLAN id and the other hosts last seen, from the local state. */
export function multiHostOf(
  state: Readonly<StateDocument>,
  network: NetworkRecord,
): { vni: number; peers: string[] } | undefined {
  if (network.vxlanId === undefined) return undefined;
  return {
    vni: network.vxlanId,
    peers: state.cluster?.networks[String(network.vxlanId)]?.peers ?? [],
  };
}

/**
 * What the status view shows: networks, endpoints and published ports (pure). Docker's names
 * (`name`, `containerName`, `networkName`) appear where the request brought them.
 */
export function statusView(
  state: Readonly<StateDocument>,
  names: DockerNames = NO_NAMES,
): Record<string, unknown> {
  const endpoints = Object.values(state.endpoints);
  const named = (key: string, value: string | undefined) =>
    value === undefined ? {} : { [key]: value };
  return {
    networks: Object.values(state.networks).map((network) => ({
      id: network.id,
      ...named("name", names.networks.get(network.id)),
      bridge: network.bridge,
      bridgeMadeBySwitchyard: network.bridgeOwned,
      subnets: [...network.ipv4, ...network.ipv6].map((item) => item.pool),
      gateways: [...network.ipv4, ...network.ipv6].flatMap((item) =>
        item.gateway === undefined ? [] : [item.gateway],
      ),
      internal: network.internal,
      icc: network.icc,
      masquerade: network.masquerade,
      ...(network.mtu === undefined ? {} : { mtu: network.mtu }),
      ...(multiHostOf(state, network) ?? {}),
      options: network.options,
      endpoints: endpoints
        .filter((endpoint) => endpoint.networkId === network.id)
        .map((endpoint) => ({
          id: endpoint.id,
          ...named("containerName", names.containers.get(endpoint.id)),
          address: endpoint.address,
          addressV6: endpoint.addressV6,
          mac: endpoint.mac,
          hostVeth: endpoint.hostVeth,
          ports: endpoint.ports.map(describeBinding),
        })),
    })),
    publishedPorts: endpoints.flatMap((endpoint) =>
      endpoint.ports.map((binding) => ({
        port: describeBinding(binding),
        container: endpoint.address === undefined ? undefined : bareAddress(endpoint.address),
        ...named("containerName", names.containers.get(endpoint.id)),
        network: endpoint.networkId,
        ...named("networkName", names.networks.get(endpoint.networkId)),
        endpoint: endpoint.id,
      })),
    ),
  };
}
