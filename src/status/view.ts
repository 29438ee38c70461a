import { describeBinding } from "../driver/ports.ts";
import { bareAddress, type StateDocument } from "../state/model.ts";

/** What the status view shows: networks, endpoints and published ports (pure). */
export function statusView(state: Readonly<StateDocument>): Record<string, unknown> {
  const endpoints = Object.values(state.endpoints);
  return {
    networks: Object.values(state.networks).map((network) => ({
      id: network.id,
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
      options: network.options,
      endpoints: endpoints
        .filter((endpoint) => endpoint.networkId === network.id)
        .map((endpoint) => ({
          id: endpoint.id,
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
        network: endpoint.networkId,
        endpoint: endpoint.id,
      })),
    ),
  };
}
