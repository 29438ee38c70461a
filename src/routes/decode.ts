import type { CreateEndpointInput, CreateNetworkInput } from "../driver/network-driver.ts";
import { parseNetworkOptions } from "../driver/options.ts";
import { parsePortBindings } from "../driver/ports.ts";
import { badRequest } from "../errors.ts";
import {
  familyName,
  formatAddress,
  formatPrefix,
  isNetworkPrefix,
  parsePrefix,
  prefixContainsAddress,
} from "../ipam/prefix.ts";
import { validateMac } from "../names.ts";
import type {
  CreateEndpointRequest,
  CreateNetworkRequest,
  IpamData,
  WireOptions,
} from "../protocol/wire.ts";
import type { NetworkAddressing, PortBinding } from "../state/model.ts";

/**
 * The route boundary: every string of a request that reaches a command, a rule or the state
 * is parsed here into a typed value and written back in canonical form, so a newline or a
 * stray word in a request can never become part of a command.
 */

/** "10.1.0.5/24" → the same, canonical; anything else of the family is a BadRequest. */
export function decodeInterfaceAddress(text: string, v6: boolean, what: string): string {
  const prefix = parsePrefix(text);
  if (prefix.v6 !== v6) throw badRequest(`${what} "${text}" is not an ${familyName(v6)} address`);
  return formatPrefix(prefix);
}

/** IPv4Data / IPv6Data: each Pool a network prefix of the family, each Gateway inside it. */
export function decodeAddressing(
  data: readonly IpamData[] | null | undefined,
  v6: boolean,
): NetworkAddressing[] {
  const field = v6 ? "IPv6Data" : "IPv4Data";
  return (data ?? []).map((item, index) => {
    if (item.Pool === undefined || item.Pool === "") {
      throw badRequest(`${field} item ${index} has no Pool`);
    }
    const pool = parsePrefix(item.Pool);
    if (pool.v6 !== v6 || !isNetworkPrefix(pool)) {
      throw badRequest(
        `${field} item ${index}: Pool "${item.Pool}" is not an ${familyName(v6)} subnet`,
      );
    }
    const addressing: NetworkAddressing = { pool: formatPrefix(pool) };
    if (item.Gateway !== undefined && item.Gateway !== "") {
      const gateway = parsePrefix(
        item.Gateway.includes("/") ? item.Gateway : `${item.Gateway}/${pool.length}`,
      );
      if (gateway.v6 !== v6 || !prefixContainsAddress(pool, { v6, value: gateway.address })) {
        throw badRequest(
          `${field} item ${index}: Gateway "${item.Gateway}" is not inside ${addressing.pool}`,
        );
      }
      addressing.gateway = `${formatAddress({ v6, value: gateway.address })}/${pool.length}`;
    }
    return addressing;
  });
}

/** CreateNetwork in typed form. */
export function decodeCreateNetwork(body: CreateNetworkRequest): CreateNetworkInput {
  return {
    networkId: body.NetworkID,
    options: parseNetworkOptions(body.Options),
    ipv4: decodeAddressing(body.IPv4Data, false),
    ipv6: decodeAddressing(body.IPv6Data, true),
  };
}

/** CreateEndpoint in typed form (a bad `-p` fails here, before anything is made). */
export function decodeCreateEndpoint(body: CreateEndpointRequest): CreateEndpointInput {
  const iface = body.Interface ?? {};
  const input: CreateEndpointInput = { networkId: body.NetworkID, endpointId: body.EndpointID };
  if (iface.Address) input.address = decodeInterfaceAddress(iface.Address, false, "Address");
  if (iface.AddressIPv6)
    input.addressV6 = decodeInterfaceAddress(iface.AddressIPv6, true, "AddressIPv6");
  if (iface.MacAddress) input.mac = validateMac(iface.MacAddress);
  parsePortBindings(body.Options);
  return input;
}

/** The port map of ProgramExternalConnectivity. */
export function decodePortBindings(options: WireOptions | null | undefined): PortBinding[] {
  return parsePortBindings(options);
}

/**
 * Join's SandboxKey: the container's network namespace as a path. Kept only to tell which
 * endpoints share a container; anything but a plain absolute path is refused.
 */
export function decodeSandboxKey(text: string | undefined): string | undefined {
  if (text === undefined || text === "") return undefined;
  if (!/^\/[A-Za-z0-9_./-]{1,4095}$/.test(text) || text.includes("/../")) {
    throw badRequest(
      `SandboxKey ${JSON.stringify(text.slice(0, 80))} is not a network namespace path`,
    );
  }
  return text;
}
