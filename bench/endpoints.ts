/**
 * The plugin through its own socket, with the bodies dockerd 20.10 sends (captured with strace
 * from a real `docker network create` + `docker run`): per-call latency of one endpoint's whole
 * life, and the plugin's memory while 1,000 endpoints exist at once.
 */
import { randomBytes } from "node:crypto";
import { performance } from "node:perf_hooks";
import { bridgeNameFor, vethNamesFor } from "../src/names.ts";
import { run } from "./lib/exec.ts";
import { type PluginClient, pluginPid, residentBytes } from "./lib/plugin.ts";
import { type Summary, summarize } from "./lib/stats.ts";

/** A fake network ID only this bench uses (its bridge is `sy-bbe4c1000000`). */
export const BENCH_NETWORK_ID = `bbe4c1${"0".repeat(56)}a1`;
/** A private subnet unlikely to clash with anything real. */
export const BENCH_POOL = "10.232.0.0/16";
const POOL_ID = `LocalDefault/${BENCH_POOL}`;

/** The calls of one endpoint's life, in dockerd's order. */
export const ENDPOINT_CALLS = [
  "IpamDriver.RequestAddress",
  "NetworkDriver.CreateEndpoint",
  "NetworkDriver.Join",
  "NetworkDriver.ProgramExternalConnectivity",
  "NetworkDriver.EndpointOperInfo",
  "NetworkDriver.RevokeExternalConnectivity",
  "NetworkDriver.Leave",
  "NetworkDriver.DeleteEndpoint",
  "IpamDriver.ReleaseAddress",
] as const;
export type EndpointCall = (typeof ENDPOINT_CALLS)[number];

const hex = (bytes: number): string => randomBytes(bytes).toString("hex");
const bare = (address: string): string => address.split("/")[0] ?? address;
/** Options dockerd puts in CreateEndpoint, Join and ProgramExternalConnectivity. */
const endpointOptions = () => ({
  "com.docker.network.endpoint.exposedports": [],
  "com.docker.network.portmap": [],
});

/** Removes what an earlier, interrupted run of this bench left in the plugin (errors ignored). */
export async function removeBenchNetwork(client: PluginClient): Promise<void> {
  await client.call("IpamDriver.ReleasePool", { PoolID: POOL_ID }, 120_000).catch(() => undefined);
  await client
    .call("NetworkDriver.DeleteNetwork", { NetworkID: BENCH_NETWORK_ID }, 300_000)
    .catch(() => undefined);
}

/** A fake network made through the socket as `docker network create --subnet` makes one. */
export async function createBenchNetwork(client: PluginClient): Promise<{ gateway: string }> {
  await removeBenchNetwork(client);
  await client.ok("IpamDriver.RequestPool", {
    AddressSpace: "LocalDefault",
    Pool: BENCH_POOL,
    SubPool: "",
    Options: {},
    V6: false,
  });
  const gw = await client.ok("IpamDriver.RequestAddress", {
    PoolID: POOL_ID,
    Address: "",
    Options: { RequestAddressType: "com.docker.network.gateway" },
  });
  const gateway = String(gw.Address);
  await client.ok("NetworkDriver.CreateNetwork", {
    NetworkID: BENCH_NETWORK_ID,
    Options: { "com.docker.network.enable_ipv6": false, "com.docker.network.generic": {} },
    IPv4Data: [{ AddressSpace: "LocalDefault", Gateway: gateway, Pool: BENCH_POOL }],
    IPv6Data: [],
  });
  return { gateway };
}

/** `docker network rm`'s order: ReleaseAddress (gateway) → ReleasePool → DeleteNetwork. */
export async function deleteBenchNetwork(client: PluginClient, gateway: string): Promise<void> {
  await client.ok("IpamDriver.ReleaseAddress", { PoolID: POOL_ID, Address: bare(gateway) });
  await client.ok("IpamDriver.ReleasePool", { PoolID: POOL_ID });
  const answer = await client.call(
    "NetworkDriver.DeleteNetwork",
    { NetworkID: BENCH_NETWORK_ID },
    300_000,
  );
  if (answer.status !== 200) {
    throw new Error(`DeleteNetwork answered ${answer.status}: ${String(answer.body.Err ?? "")}`);
  }
}

interface Endpoint {
  id: string;
  address: string;
}

/** Times one call into `times[name]`; throws unless the plugin answered 200. */
async function timed(
  client: PluginClient,
  times: Map<string, number[]>,
  name: string,
  body: unknown,
): Promise<Record<string, unknown>> {
  const started = performance.now();
  const answer = await client.call(name, body);
  const elapsed = performance.now() - started;
  if (answer.status !== 200) {
    throw new Error(`${name} answered ${answer.status}: ${String(answer.body.Err ?? "")}`);
  }
  let list = times.get(name);
  if (list === undefined) {
    list = [];
    times.set(name, list);
  }
  list.push(elapsed);
  return answer.body;
}

async function bringUp(
  client: PluginClient,
  times: Map<string, number[]>,
  made: string[],
): Promise<Endpoint> {
  const id = hex(32);
  made.push(id);
  const ra = await timed(client, times, "IpamDriver.RequestAddress", {
    PoolID: POOL_ID,
    Address: "",
    Options: null,
  });
  const address = String(ra.Address);
  await timed(client, times, "NetworkDriver.CreateEndpoint", {
    NetworkID: BENCH_NETWORK_ID,
    EndpointID: id,
    Interface: { Address: address, AddressIPv6: "", MacAddress: "" },
    Options: endpointOptions(),
  });
  await timed(client, times, "NetworkDriver.Join", {
    NetworkID: BENCH_NETWORK_ID,
    EndpointID: id,
    SandboxKey: `/var/run/docker/netns/${hex(6)}`,
    Options: endpointOptions(),
  });
  await timed(client, times, "NetworkDriver.ProgramExternalConnectivity", {
    NetworkID: BENCH_NETWORK_ID,
    EndpointID: id,
    Options: endpointOptions(),
  });
  await timed(client, times, "NetworkDriver.EndpointOperInfo", {
    NetworkID: BENCH_NETWORK_ID,
    EndpointID: id,
  });
  return { id, address };
}

async function tearDown(
  client: PluginClient,
  times: Map<string, number[]>,
  endpoint: Endpoint,
): Promise<void> {
  const ids = { NetworkID: BENCH_NETWORK_ID, EndpointID: endpoint.id };
  await timed(client, times, "NetworkDriver.RevokeExternalConnectivity", ids);
  await timed(client, times, "NetworkDriver.Leave", ids);
  await timed(client, times, "NetworkDriver.DeleteEndpoint", ids);
  await timed(client, times, "IpamDriver.ReleaseAddress", {
    PoolID: POOL_ID,
    Address: bare(endpoint.address),
  });
}

/** Host links this bench made that still exist: endpoints' host veths and the network's bridge. */
async function leftoverLinks(endpointIds: Iterable<string>): Promise<string[]> {
  const links = JSON.parse(await run(["ip", "-j", "link", "show"])) as { ifname: string }[];
  const present = new Set(links.map((link) => link.ifname));
  const mine = [bridgeNameFor(BENCH_NETWORK_ID)];
  for (const id of endpointIds) mine.push(vethNamesFor(id).hostVeth);
  return mine.filter((name) => present.has(name));
}

const summaries = (times: Map<string, number[]>): Record<string, Summary> =>
  Object.fromEntries([...times].map(([name, list]) => [name, summarize(list)]));

/** Per-call latency (ms) over `iterations` whole endpoint lives, one after the other. */
export async function benchEndpointLatency(
  client: PluginClient,
  iterations: number,
  progress: (done: number) => void = () => {},
): Promise<{ calls: Record<string, Summary>; leftoverLinks: string[]; totalMs: number }> {
  const made: string[] = [];
  const times = new Map<string, number[]>();
  const { gateway } = await createBenchNetwork(client);
  const started = performance.now();
  try {
    for (let i = 0; i < iterations; i++) {
      await tearDown(client, times, await bringUp(client, times, made));
      if ((i + 1) % 100 === 0) progress(i + 1);
    }
  } finally {
    await deleteBenchNetwork(client, gateway).catch(() => removeBenchNetwork(client));
  }
  const totalMs = performance.now() - started;
  return { calls: summaries(times), leftoverLinks: await leftoverLinks(made), totalMs };
}

/**
 * The plugin's resident memory idle and with `count` endpoints existing at once (each made
 * as `docker run` makes it, then all torn down). Call latencies at that scale come back too.
 */
export async function benchEndpointMemory(
  client: PluginClient,
  pluginIdValue: string,
  count: number,
): Promise<{
  idleBytes: number;
  withEndpointsBytes: number;
  afterBytes: number;
  calls: Record<string, Summary>;
  leftoverLinks: string[];
}> {
  const made: string[] = [];
  const pid = await pluginPid(pluginIdValue);
  const idleBytes = await residentBytes(pid);
  const times = new Map<string, number[]>();
  const { gateway } = await createBenchNetwork(client);
  const endpoints: Endpoint[] = [];
  let withEndpointsBytes = Number.NaN;
  try {
    for (let i = 0; i < count; i++) endpoints.push(await bringUp(client, times, made));
    withEndpointsBytes = await residentBytes(pid);
    for (const endpoint of endpoints) await tearDown(client, times, endpoint);
  } finally {
    await deleteBenchNetwork(client, gateway).catch(() => removeBenchNetwork(client));
  }
  const afterBytes = await residentBytes(pid);
  return {
    idleBytes,
    withEndpointsBytes,
    afterBytes,
    calls: summaries(times),
    leftoverLinks: await leftoverLinks(made),
  };
}
