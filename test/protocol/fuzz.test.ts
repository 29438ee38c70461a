import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { defaultIpamSettings, Ipam } from "../../src/ipam/ipam.ts";
import { buildTestApp } from "../support/fakes.ts";

const PATHS = [
  "/Plugin.Activate",
  "/NetworkDriver.GetCapabilities",
  "/NetworkDriver.CreateNetwork",
  "/NetworkDriver.AllocateNetwork",
  "/NetworkDriver.FreeNetwork",
  "/NetworkDriver.DeleteNetwork",
  "/NetworkDriver.CreateEndpoint",
  "/NetworkDriver.EndpointOperInfo",
  "/NetworkDriver.DeleteEndpoint",
  "/NetworkDriver.Join",
  "/NetworkDriver.Leave",
  "/NetworkDriver.DiscoverNew",
  "/NetworkDriver.DiscoverDelete",
  "/NetworkDriver.ProgramExternalConnectivity",
  "/NetworkDriver.RevokeExternalConnectivity",
  "/IpamDriver.GetCapabilities",
  "/IpamDriver.GetDefaultAddressSpaces",
  "/IpamDriver.RequestPool",
  "/IpamDriver.ReleasePool",
  "/IpamDriver.RequestAddress",
  "/IpamDriver.ReleaseAddress",
];

// Small domains so random sequences hit existing objects, plus hostile values.
const id = fc.constantFrom(
  "a".repeat(64),
  "b".repeat(64),
  "c".repeat(64),
  "",
  "../x",
  "Z".repeat(200),
);
const cidr = fc.constantFrom(
  "10.9.0.0/24",
  "10.9.0.0/16",
  "10.9.0.128/25",
  "10.9.0.5/24",
  "fd00::/64",
  "300.0.0.0/8",
  "x",
  "",
);
const address = fc.constantFrom(
  "10.9.0.1",
  "10.9.0.7/24",
  "10.9.0.255",
  "fd00::5",
  "1.2.3.4",
  "",
  "nonsense",
);
const poolId = fc.constantFrom(
  "LocalDefault/10.9.0.0/24",
  "LocalDefault/10.9.0.0/16",
  "LocalDefault/fd00::/64",
  "Nope/1",
  "",
);
const generic = fc.dictionary(
  fc.constantFrom(
    "bridge",
    "com.docker.network.bridge.name",
    "com.docker.network.driver.mtu",
    "com.docker.network.bridge.enable_icc",
    "weird",
  ),
  fc.constantFrom("br1", "sy-fuzz", "1400", "false", "a-very-long-interface-name", "x;y", ""),
  { maxKeys: 2 },
);
const junk = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 2 }),
);

const body = fc.oneof(
  fc.record(
    {
      NetworkID: fc.oneof(id, junk),
      EndpointID: fc.oneof(id, junk),
      PoolID: fc.oneof(poolId, junk),
      Pool: cidr,
      SubPool: cidr,
      Address: address,
      V6: fc.oneof(fc.boolean(), junk),
      Options: fc.oneof(
        fc.record(
          {
            "com.docker.network.generic": generic,
            RequestAddressType: fc.constantFrom("com.docker.network.gateway", "x"),
          },
          { requiredKeys: [] },
        ),
        junk,
      ),
      IPv4Data: fc.oneof(
        fc.array(fc.record({ Pool: cidr, Gateway: address }, { requiredKeys: [] }), {
          maxLength: 2,
        }),
        junk,
      ),
      Interface: fc.oneof(
        fc.record(
          { Address: address, MacAddress: fc.constantFrom("", "02:42:0a:09:00:07", "zz") },
          { requiredKeys: [] },
        ),
        junk,
      ),
    },
    { requiredKeys: [] },
  ),
  fc.string().map((text) => ({ raw: text })),
  fc.constant({ raw: '{"NetworkID": ' }),
);

const request = fc.record({
  path: fc.oneof(fc.constantFrom(...PATHS), fc.constant("/Nope.Nothing")),
  body,
});

describe("HTTP layer fuzz", () => {
  it("every request answers 200 JSON or {Err}, failures change nothing, invariants hold", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 25 }), async (requests) => {
        const t = await buildTestApp();
        t.datapath.addLink("br1", "bridge");
        for (const { path, body: payload } of requests) {
          const before = t.store.saved;
          const raw = "raw" in payload ? (payload.raw as string) : payload;
          const response = await t.call(path, raw);
          if (response.status !== 200) {
            assert.ok([404, 500].includes(response.status), `${path} answered ${response.status}`);
            assert.equal(
              typeof response.body.Err,
              "string",
              `${path}: ${JSON.stringify(response.body)}`,
            );
            assert.ok(String(response.body.Err).length > 0);
            assert.equal(t.store.saved, before, `${path} failed but changed the saved state`);
          }
          const state = t.state.document;
          for (const endpoint of Object.values(state.endpoints)) {
            assert.ok(
              state.networks[endpoint.networkId],
              "every endpoint belongs to a known network",
            );
          }
          for (const network of Object.values(state.networks)) {
            if (network.bridgeOwned)
              assert.equal(t.datapath.hostLinks.get(network.bridge)?.kind, "bridge");
          }
          // The saved IPAM state always loads.
          new Ipam(defaultIpamSettings(), state.ipam);
        }
      }),
      { numRuns: 150 },
    );
  });
});
