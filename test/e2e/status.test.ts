// Status and metrics: after two networks, three containers and two published
// ports, `scripts/switchyard-status` names every container, network and port in its tables
// (`docker ps` cannot show a plugin's ports), `--json` parses, and the plugin's
// `/Switchyard.Metrics` parses as Prometheus text whose counters move after a `docker run`.
// The script runs as a user would run it: plain `docker` from PATH, no pinned API version.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { execa } from "execa";
import { parsePrometheus, sampleValue } from "../support/prometheus.ts";
import { isSwitchyard, networkDriver } from "./lib/config.ts";
import {
  containerAddress,
  createNetwork,
  docker,
  networkId,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import type { HostSnapshot } from "./lib/host.ts";
import { pluginSocket } from "./lib/plugin-socket.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-status";
const SUBNET_A = "10.231.50.0/24";
const SUBNET_B = "10.231.51.0/24";
const PORT_A = 8191;
const PORT_B = 8192;
const SCRIPT = fileURLToPath(new URL("../../scripts/switchyard-status", import.meta.url));

/** Runs the host-side status command; throws with its stderr when it fails. */
async function switchyardStatus(args: string[] = []): Promise<string> {
  const result = await execa(SCRIPT, [...args, networkDriver], { reject: false, timeout: 60_000 });
  if (result.exitCode !== 0) {
    throw new Error(
      `switchyard-status ${args.join(" ")} failed (exit ${result.exitCode}): ${result.stderr}`,
    );
  }
  return String(result.stdout);
}

/** GETs a path on the plugin's socket; returns status, content type and body text. */
function getFromPlugin(
  socketPath: string,
  path: string,
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: "GET", path }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          type: String(res.headers["content-type"] ?? ""),
          body: Buffer.concat(chunks).toString("utf8"),
        }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`no answer to GET ${path} within 10 s`)));
    req.end();
  });
}

const literal = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("status tables and metrics", { skip: !isSwitchyard && "Switchyard only" }, () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  let socket = "";
  const netA = uniqueName(PREFIX);
  const netB = uniqueName(PREFIX);
  /** Container → its network and the port it publishes (if any). */
  const containers = [
    { name: uniqueName(PREFIX), network: netA, port: PORT_A },
    { name: uniqueName(PREFIX), network: netA, port: undefined },
    { name: uniqueName(PREFIX), network: netB, port: PORT_B },
  ];

  before(async () => {
    snapshot = await startScenario(PREFIX);
    socket = await pluginSocket(networkDriver);
    await createNetwork({ name: t.network(netA), subnet: SUBNET_A });
    await createNetwork({ name: t.network(netB), subnet: SUBNET_B });
    for (const container of containers) {
      await runContainer({
        name: t.container(container.name),
        network: container.network,
        args: container.port === undefined ? [] : ["-p", `${container.port}:80`],
      });
    }
  });

  after(async () => {
    await endScenario(t, snapshot);
  });

  it("the table names every container, network and published port", {
    timeout: 120_000,
  }, async () => {
    const table = await switchyardStatus();
    const [networks = "", endpoints = ""] = table.split("\n\n");
    assert.match(
      networks,
      /^NETWORK ID +NAME +BRIDGE +SUBNET +GATEWAY +INTERNAL +ICC +MASQUERADE +VNI +PEERS$/m,
    );
    for (const [name, subnet] of [
      [netA, SUBNET_A],
      [netB, SUBNET_B],
    ] as const) {
      const id = (await networkId(name)).slice(0, 12);
      assert.match(
        networks,
        new RegExp(`^${id} +${literal(name)} +\\S+ +${literal(subnet)} `, "m"),
        `network ${name} (${id}, ${subnet}) is not in the table:\n${networks}`,
      );
    }
    assert.match(endpoints, /^CONTAINER +NETWORK +ADDRESS +MAC +HOST VETH +PORTS$/m);
    for (const container of containers) {
      const address = await containerAddress(container.name, container.network);
      const ports = container.port === undefined ? "" : ` +0\\.0\\.0\\.0:${container.port}->80/tcp`;
      assert.match(
        endpoints,
        new RegExp(
          `^${literal(container.name)} +${literal(container.network)} +${literal(address)} +\\S+ +\\S+${ports}$`,
          "m",
        ),
        `container ${container.name} is not shown as expected:\n${endpoints}`,
      );
    }
    assert.doesNotMatch(table, /[0-9a-f]{13,}/, "an ID is printed longer than 12 characters");
  });

  it("--json parses and carries the names beside the IDs", { timeout: 120_000 }, async () => {
    const view = JSON.parse(await switchyardStatus(["--json"])) as {
      networks: { id: string; name?: string; endpoints: { containerName?: string }[] }[];
      publishedPorts: { port: string; containerName?: string; networkName?: string }[];
    };
    for (const name of [netA, netB]) {
      const id = await networkId(name);
      const network = view.networks.find((item) => item.id === id);
      assert.equal(network?.name, name, `network ${name} in --json`);
    }
    const named = view.networks.flatMap((network) =>
      network.endpoints.map((endpoint) => endpoint.containerName),
    );
    for (const container of containers) assert.ok(named.includes(container.name), container.name);
    for (const container of containers.filter((item) => item.port !== undefined)) {
      assert.ok(
        view.publishedPorts.some(
          (port) =>
            port.port === `0.0.0.0:${container.port}->80/tcp` &&
            port.containerName === container.name &&
            port.networkName === container.network,
        ),
        `published port ${container.port} of ${container.name} in --json`,
      );
    }
  });

  it("the README's one-liner (docker and curl only) prints the same tables", {
    timeout: 60_000,
  }, async () => {
    // Exactly as README.md gives it, but for the plugin under test.
    const oneLiner =
      "docker network inspect $(docker network ls -q) | curl -s --unix-socket /run/docker/plugins/$(docker plugin inspect -f '{{.Id}}' switchyard:latest)/switchyard.sock --data-binary @- 'http://switchyard/Switchyard.Status?format=table'";
    const result = await execa("sh", ["-c", oneLiner.replace("switchyard:latest", networkDriver)], {
      reject: false,
      timeout: 60_000,
    });
    assert.equal(result.exitCode, 0, String(result.stderr));
    for (const container of containers)
      assert.match(String(result.stdout), new RegExp(`^${literal(container.name)} `, "m"));
    // Without the inspect output the plugin still answers, with short IDs for names.
    const answer = await getFromPlugin(socket, "/Switchyard.Status?format=table");
    assert.equal(answer.status, 200);
    assert.match(answer.type, /^text\/plain/);
    assert.match(answer.body, new RegExp(`0\\.0\\.0\\.0:${PORT_A}->80/tcp`));
    assert.match(answer.body, new RegExp(`0\\.0\\.0\\.0:${PORT_B}->80/tcp`));
  });

  it("metrics parse as Prometheus text and move after a docker run", {
    timeout: 120_000,
  }, async () => {
    const scrape = async () => {
      const answer = await getFromPlugin(socket, "/Switchyard.Metrics");
      assert.equal(answer.status, 200);
      assert.match(answer.type, /^text\/plain; version=0\.0\.4/);
      return parsePrometheus(answer.body);
    };
    const created = { method: "/NetworkDriver.CreateEndpoint", outcome: "ok" };
    const joined = { method: "/NetworkDriver.Join", outcome: "ok" };
    const before = await scrape();
    assert.ok(
      (sampleValue(before, "switchyard_requests_total", created) ?? 0) >= containers.length,
    );
    assert.ok((sampleValue(before, "switchyard_published_ports", { proto: "tcp" }) ?? 0) >= 2);
    assert.ok(
      (sampleValue(before, "switchyard_firewall_apply_duration_seconds_count") ?? 0) > 0,
      "no firewall apply was timed",
    );

    await runContainer({ name: t.container(uniqueName(PREFIX)), network: netA });
    const after = await scrape();
    for (const labels of [created, joined]) {
      assert.ok(
        (sampleValue(after, "switchyard_requests_total", labels) ?? 0) >
          (sampleValue(before, "switchyard_requests_total", labels) ?? 0),
        `switchyard_requests_total${JSON.stringify(labels)} did not move`,
      );
    }
    assert.ok(
      (sampleValue(after, "switchyard_endpoints") ?? 0) >
        (sampleValue(before, "switchyard_endpoints") ?? 0),
      "switchyard_endpoints did not move",
    );
    const poolOf = (families: typeof after) =>
      families
        .get("switchyard_pool_addresses_allocated")
        ?.samples.find((sample) => sample.labels.pool_id?.includes(SUBNET_A))?.value ?? 0;
    assert.equal(poolOf(after), poolOf(before) + 1, `allocated addresses in ${SUBNET_A}`);
  });

  it("docker plugin inspect shows the version in the description", {
    timeout: 60_000,
  }, async () => {
    const { version } = JSON.parse(
      await readFile(new URL("../../package.json", import.meta.url), "utf8"),
    ) as { version: string };
    const description = await docker([
      "plugin",
      "inspect",
      "--format",
      "{{.Config.Description}}",
      networkDriver,
    ]);
    assert.match(description, new RegExp(`\\b${literal(version)}\\b`));
  });
});
