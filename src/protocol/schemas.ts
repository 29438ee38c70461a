/**
 * JSON schemas for every request body. They check the shape of the fields Switchyard reads;
 * unknown fields are allowed because newer dockerd versions add some.
 */

const id = { type: "string", minLength: 1, maxLength: 128, pattern: "^[A-Za-z0-9_.-]+$" } as const;
const optionalString = { type: "string", maxLength: 256 } as const;
const stringMap = {
  type: ["object", "null"],
  additionalProperties: { type: "string", maxLength: 4096 },
} as const;
const anyOptions = { type: ["object", "null"] } as const;

const ipamData = {
  type: "object",
  properties: {
    AddressSpace: optionalString,
    Pool: optionalString,
    Gateway: optionalString,
    AuxAddresses: stringMap,
  },
} as const;

const body = (
  properties: Record<string, unknown>,
  required: string[] = [],
): Record<string, unknown> => ({ type: "object", properties, required });

/** Bodies of calls that carry nothing Switchyard reads (GetCapabilities, Activate, …). */
export const emptyBody = { type: ["object", "null"] } as const;

export const createNetworkBody = body(
  {
    NetworkID: id,
    Options: anyOptions,
    IPv4Data: { type: ["array", "null"], items: ipamData, maxItems: 16 },
    IPv6Data: { type: ["array", "null"], items: ipamData, maxItems: 16 },
  },
  ["NetworkID"],
);

export const networkBody = body({ NetworkID: id }, ["NetworkID"]);

export const createEndpointBody = body(
  {
    NetworkID: id,
    EndpointID: id,
    Interface: {
      type: ["object", "null"],
      properties: {
        Address: optionalString,
        AddressIPv6: optionalString,
        MacAddress: optionalString,
      },
    },
    Options: anyOptions,
  },
  ["NetworkID", "EndpointID"],
);

export const endpointBody = body({ NetworkID: id, EndpointID: id }, ["NetworkID", "EndpointID"]);

export const joinBody = body(
  {
    NetworkID: id,
    EndpointID: id,
    SandboxKey: { type: "string", maxLength: 4096 },
    Options: anyOptions,
  },
  ["NetworkID", "EndpointID"],
);

export const externalConnectivityBody = body(
  { NetworkID: id, EndpointID: id, Options: anyOptions },
  ["NetworkID", "EndpointID"],
);

export const discoveryBody = body({ DiscoveryType: { type: "integer" }, DiscoveryData: {} });

export const requestPoolBody = body({
  AddressSpace: optionalString,
  Pool: optionalString,
  SubPool: optionalString,
  Options: stringMap,
  V6: { type: "boolean" },
});

export const releasePoolBody = body({ PoolID: { type: "string", minLength: 1, maxLength: 256 } }, [
  "PoolID",
]);

export const requestAddressBody = body(
  {
    PoolID: { type: "string", minLength: 1, maxLength: 256 },
    Address: optionalString,
    Options: stringMap,
  },
  ["PoolID"],
);

export const releaseAddressBody = body(
  {
    PoolID: { type: "string", minLength: 1, maxLength: 256 },
    Address: { type: "string", minLength: 1, maxLength: 256 },
  },
  ["PoolID", "Address"],
);
