// Concurrency: a burst of requests for one network never hands out an address twice and
// every endpoint ends up attached. Small numbers here; bigger ones live in bench/.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { isSwitchyard } from "./lib/config.ts";
import { containerAddress, createNetwork, docker, uniqueName } from "./lib/docker.ts";
import { bridgePorts, type HostSnapshot } from "./lib/host.ts";
import { callPlugin, pluginSocket } from "./lib/plugin-socket.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-cc";
const SOCKET_CALLS = 200;
const PARALLEL_RUNS = 50;

const hex64 = (): string => randomBytes(32).toString("hex");

describe("concurrency", { skip: !isSwitchyard && "Switchyard only" }, () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;

  before(async () => {
    snapshot = await startScenario(PREFIX);
  });

  after(async () => {
    await endScenario(t, snapshot, 20_000);
  });

  it(`${SOCKET_CALLS} concurrent RequestAddress/CreateEndpoint/Join on the socket: all attached, no duplicate`, async () => {
    const socket = await pluginSocket();
    const call = async (path: string, body: unknown) => {
      const answer = await callPlugin(socket, path, body);
      assert.equal(answer.status, 200, `${path}: ${JSON.stringify(answer.body)}`);
      return answer.body;
    };
    const networkId = hex64();
    const pool = await call("/IpamDriver.RequestPool", {
      AddressSpace: "LocalDefault",
      Pool: "10.231.11.0/24",
      V6: false,
    });
    const poolId = String(pool.PoolID);
    await call("/IpamDriver.RequestAddress", {
      PoolID: poolId,
      Options: { RequestAddressType: "com.docker.network.gateway" },
    });
    await call("/NetworkDriver.CreateNetwork", {
      NetworkID: networkId,
      Options: { "com.docker.network.generic": {} },
      IPv4Data: [
        { AddressSpace: "LocalDefault", Pool: "10.231.11.0/24", Gateway: "10.231.11.1/24" },
      ],
    });
    const bridge = `sy-${networkId.slice(0, 12)}`;
    const endpoints: { id: string; address: string }[] = [];
    try {
      await Promise.all(
        Array.from({ length: SOCKET_CALLS }, async () => {
          const id = hex64();
          const { Address } = await call("/IpamDriver.RequestAddress", {
            PoolID: poolId,
            Options: {},
          });
          const address = String(Address);
          endpoints.push({ id, address });
          await call("/NetworkDriver.CreateEndpoint", {
            NetworkID: networkId,
            EndpointID: id,
            Interface: { Address: address, AddressIPv6: "", MacAddress: "" },
            Options: {},
          });
          await call("/NetworkDriver.Join", {
            NetworkID: networkId,
            EndpointID: id,
            SandboxKey: "",
            Options: {},
          });
        }),
      );
      assert.equal(
        new Set(endpoints.map((endpoint) => endpoint.address)).size,
        SOCKET_CALLS,
        "no duplicate",
      );
      assert.equal(
        (await bridgePorts(bridge)).length,
        SOCKET_CALLS,
        "every veth is a port of the bridge",
      );
    } finally {
      await Promise.all(
        endpoints.map(async ({ id, address }) => {
          await callPlugin(socket, "/NetworkDriver.Leave", {
            NetworkID: networkId,
            EndpointID: id,
          });
          await callPlugin(socket, "/NetworkDriver.DeleteEndpoint", {
            NetworkID: networkId,
            EndpointID: id,
          });
          await callPlugin(socket, "/IpamDriver.ReleaseAddress", {
            PoolID: poolId,
            Address: address,
          });
        }),
      );
      await callPlugin(socket, "/IpamDriver.ReleaseAddress", {
        PoolID: poolId,
        Address: "10.231.11.1",
      });
      await callPlugin(socket, "/NetworkDriver.DeleteNetwork", { NetworkID: networkId });
      await callPlugin(socket, "/IpamDriver.ReleasePool", { PoolID: poolId });
    }
  });

  it(`${PARALLEL_RUNS} parallel docker runs on one network: all attached, no duplicate`, async () => {
    const network = t.network(uniqueName(PREFIX));
    await createNetwork({ name: network, subnet: "10.231.12.0/24", gateway: "10.231.12.1" });
    const names = Array.from({ length: PARALLEL_RUNS }, () => t.container(uniqueName(PREFIX)));
    await Promise.all(
      names.map((name) =>
        docker([
          "run",
          "-d",
          "--name",
          name,
          "--network",
          network,
          "switchyard-test/busybox",
          "sleep",
          "600",
        ]),
      ),
    );
    const addresses = await Promise.all(names.map((name) => containerAddress(name, network)));
    assert.equal(
      addresses.filter((address) => address !== "").length,
      PARALLEL_RUNS,
      "all attached",
    );
    assert.equal(new Set(addresses).size, PARALLEL_RUNS, "no duplicate");
    await Promise.all(names.map((name) => docker(["rm", "-f", name])));
  });
});
