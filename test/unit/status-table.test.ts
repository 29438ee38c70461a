import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { SwitchyardError } from "../../src/errors.ts";
import { emptyState, type PortBinding, type StateDocument } from "../../src/state/model.ts";
import { NO_NAMES, namesFromInspect } from "../../src/status/names.ts";
import {
  endpointsTable,
  formatTable,
  networksTable,
  statusTables,
} from "../../src/status/table.ts";
import { statusView } from "../../src/status/view.ts";

const NET_A = `aaaa1111${"0".repeat(56)}`;
const NET_B = `bbbb2222${"0".repeat(56)}`;
const NET_C = `cccc3333${"0".repeat(56)}`;
const EP_WEB = `e1e1e1e1e1e1${"1".repeat(52)}`;
const EP_DB = `e2e2e2e2e2e2${"2".repeat(52)}`;
const EP_GONE = `e3e3e3e3e3e3${"3".repeat(52)}`;
const EP_MESH = `e4e4e4e4e4e4${"4".repeat(52)}`;

const tcp = (containerPort: number, hostPort: number, hostIp = ""): PortBinding => ({
  proto: "tcp",
  containerPort,
  hostIp,
  hostPort,
  hostPortEnd: hostPort,
});

/** Three networks (plain with IPv6, internal without ICC, multi-host) and four endpoints. */
function sampleState(): StateDocument {
  const state = emptyState();
  const base = {
    bridgeOwned: true,
    ipv6: [],
    internal: false,
    enableIpv6: false,
    icc: true,
    masquerade: true,
    options: {},
  };
  state.networks[NET_A] = {
    ...base,
    id: NET_A,
    bridge: "sy-aaaa11110000",
    ipv4: [{ pool: "10.15.20.0/24", gateway: "10.15.20.1/24" }],
    ipv6: [{ pool: "fd00:15::/64", gateway: "fd00:15::1/64" }],
    enableIpv6: true,
  };
  state.networks[NET_B] = {
    ...base,
    id: NET_B,
    bridge: "br-vault",
    bridgeOwned: false,
    ipv4: [{ pool: "10.15.30.0/24" }],
    internal: true,
    icc: false,
  };
  state.networks[NET_C] = {
    ...base,
    id: NET_C,
    bridge: "sy-cccc33330000",
    ipv4: [{ pool: "10.60.0.0/16", gateway: "10.60.0.1/16" }],
    vxlanId: 4242,
  };
  state.cluster = {
    hostId: "host-1",
    networks: {
      "4242": {
        vni: 4242,
        networkId: NET_C,
        subnet: "10.60.0.0/16",
        gateway: "10.60.0.1/16",
        blocks: ["10.60.0.0/26"],
        peers: ["192.168.1.11", "192.168.1.12"],
      },
    },
  };
  const endpoint = (id: string, networkId: string, address: string, ports: PortBinding[] = []) => ({
    id,
    networkId,
    hostVeth: `vsy${id.slice(0, 11)}`,
    peerVeth: `csy${id.slice(0, 11)}`,
    mac: `02:42:${address
      .split(".")
      .map((part) => Number(part).toString(16).padStart(2, "0"))
      .join(":")}`,
    address: `${address}/24`,
    ports,
  });
  state.endpoints[EP_WEB] = {
    ...endpoint(EP_WEB, NET_A, "10.15.20.2", [tcp(80, 8081), tcp(443, 8443, "127.0.0.1")]),
    addressV6: "fd00:15::2/64",
  };
  state.endpoints[EP_DB] = endpoint(EP_DB, NET_B, "10.15.30.2");
  state.endpoints[EP_GONE] = endpoint(EP_GONE, NET_B, "10.15.30.3");
  state.endpoints[EP_MESH] = endpoint(EP_MESH, NET_C, "10.60.0.2", [
    { ...tcp(53, 5353), proto: "udp" },
  ]);
  return state;
}

/** What `docker network inspect` prints for these networks (fields the join ignores too). */
const INSPECT = [
  {
    Name: "web",
    Id: NET_A,
    Driver: "switchyard:latest",
    Containers: {
      c0ffee01: {
        Name: "shop-web",
        EndpointID: EP_WEB,
        MacAddress: "02:42:0a:0f:14:02",
        IPv4Address: "10.15.20.2/24",
      },
    },
  },
  { Name: "vault", Id: NET_B, Containers: { c0ffee02: { Name: "shop-db", EndpointID: EP_DB } } },
  { Name: "mesh", Id: NET_C, Containers: { c0ffee03: { Name: "dns", EndpointID: EP_MESH } } },
  { Name: "bridge", Id: "f".repeat(64), Driver: "bridge", Containers: {} },
];

describe("status tables", { timeout: 10_000 }, () => {
  test("formatTable pads like docker's tabwriter (min 10, padding 3)", { timeout: 10_000 }, () => {
    assert.equal(
      formatTable(
        ["A", "LONG HEADER", "LAST"],
        [
          ["x", "y", ""],
          ["a-much-longer-cell", "z", "end"],
        ],
      ),
      [
        "A                    LONG HEADER   LAST",
        "x                    y",
        "a-much-longer-cell   z             end",
        "",
      ].join("\n"),
    );
  });

  test("networks and endpoints with Docker's names (golden)", { timeout: 10_000 }, () => {
    const names = namesFromInspect(INSPECT);
    assert.equal(
      statusTables(sampleState(), names),
      [
        "NETWORK ID     NAME      BRIDGE            SUBNET                       GATEWAY                 INTERNAL   ICC       MASQUERADE   VNI       PEERS",
        "cccc33330000   mesh      sy-cccc33330000   10.60.0.0/16                 10.60.0.1               no         yes       yes          4242      192.168.1.11, 192.168.1.12",
        "bbbb22220000   vault     br-vault          10.15.30.0/24                                        yes        no        no",
        "aaaa11110000   web       sy-aaaa11110000   10.15.20.0/24,fd00:15::/64   10.15.20.1,fd00:15::1   no         yes       yes",
        "",
        "CONTAINER      NETWORK   ADDRESS                 MAC                 HOST VETH        PORTS",
        "dns            mesh      10.60.0.2               02:42:0a:3c:00:02   vsye4e4e4e4e4e   0.0.0.0:5353->53/udp",
        "e3e3e3e3e3e3   vault     10.15.30.3              02:42:0a:0f:1e:03   vsye3e3e3e3e3e",
        "shop-db        vault     10.15.30.2              02:42:0a:0f:1e:02   vsye2e2e2e2e2e",
        "shop-web       web       10.15.20.2,fd00:15::2   02:42:0a:0f:14:02   vsye1e1e1e1e1e   0.0.0.0:8081->80/tcp, 127.0.0.1:8443->443/tcp",
        "",
      ].join("\n"),
    );
  });

  test("without names: short network IDs and short endpoint IDs", { timeout: 10_000 }, () => {
    const table = endpointsTable(sampleState(), NO_NAMES);
    assert.match(table, /^e1e1e1e1e1e1 +aaaa11110000 +10\.15\.20\.2,fd00:15::2 /m);
    assert.doesNotMatch(table, /[0-9a-f]{13}/, "an ID longer than 12 characters is shown");
    const networks = networksTable(sampleState());
    assert.match(networks, /^aaaa11110000 {13}sy-aaaa11110000 /m, "the NAME column is empty");
  });

  test("an empty state prints the headers only", { timeout: 10_000 }, () => {
    assert.equal(
      statusTables(emptyState()),
      [
        "NETWORK ID   NAME      BRIDGE    SUBNET    GATEWAY   INTERNAL   ICC       MASQUERADE   VNI       PEERS",
        "",
        "CONTAINER   NETWORK   ADDRESS   MAC       HOST VETH   PORTS",
        "",
      ].join("\n"),
    );
  });
});

describe("names from docker network inspect", { timeout: 10_000 }, () => {
  test("maps network IDs and endpoint IDs to names", { timeout: 10_000 }, () => {
    const names = namesFromInspect(INSPECT);
    assert.equal(names.networks.get(NET_A), "web");
    assert.equal(names.networks.get("f".repeat(64)), "bridge");
    assert.equal(names.containers.get(EP_WEB), "shop-web");
    assert.equal(names.containers.get(EP_GONE), undefined);
  });

  test("an empty body means no names; odd entries are skipped", { timeout: 10_000 }, () => {
    assert.equal(namesFromInspect({}), NO_NAMES);
    const names = namesFromInspect([null, 3, { Id: 5 }, { Id: NET_A, Containers: [1] }]);
    assert.equal(names.networks.size, 0);
    assert.equal(names.containers.size, 0);
  });

  test("anything else is a BadRequest saying what to send", { timeout: 10_000 }, () => {
    for (const body of [{ networks: [] }, "text", 7]) {
      assert.throws(
        () => namesFromInspect(body),
        (error: unknown) =>
          error instanceof SwitchyardError &&
          error.kind === "BadRequest" &&
          /docker network inspect/.test(error.message),
      );
    }
  });
});

describe("status JSON view", { timeout: 10_000 }, () => {
  test("names, VNI and peers appear beside the IDs", { timeout: 10_000 }, () => {
    const view = statusView(sampleState(), namesFromInspect(INSPECT)) as {
      networks: Record<string, unknown>[];
      publishedPorts: Record<string, unknown>[];
    };
    const mesh = view.networks.find((network) => network.id === NET_C);
    assert.equal(mesh?.name, "mesh");
    assert.equal(mesh?.vni, 4242);
    assert.deepEqual(mesh?.peers, ["192.168.1.11", "192.168.1.12"]);
    assert.deepEqual(view.publishedPorts[0], {
      port: "0.0.0.0:8081->80/tcp",
      container: "10.15.20.2",
      containerName: "shop-web",
      network: NET_A,
      networkName: "web",
      endpoint: EP_WEB,
    });
  });

  test("without names the JSON keeps its earlier shape", { timeout: 10_000 }, () => {
    const view = statusView(sampleState()) as { networks: Record<string, unknown>[] };
    const web = view.networks.find((network) => network.id === NET_A);
    assert.equal(web?.name, undefined);
    assert.equal("vni" in (web ?? {}), false);
  });
});
