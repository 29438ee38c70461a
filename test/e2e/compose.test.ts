// A real client: Docker Compose v2 brings up two Switchyard networks from a compose file (IPAM
// config with subnet, ip_range and gateway, driver_opts MTU, an internal network, aliases,
// ipv4_address, a published port), and `docker compose down` leaves nothing behind.

import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa } from "execa";
import { findCompose } from "./lib/compose.ts";
import { ipamDriver, isSwitchyard, networkDriver, TEST_IMAGE } from "./lib/config.ts";
import { containerAddress, exec, httpGet, ping, resolveName } from "./lib/docker.ts";
import type { HostSnapshot } from "./lib/host.ts";
import { httpGetFrom, ON_HOST } from "./lib/probe.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";
import { waitFor } from "./lib/wait.ts";

const PROJECT = "sy-e2e-compose";
const LINK_PREFIX = "sye2ecmp";
const PORT = 18090;

const composeFile = `
name: ${PROJECT}
services:
  web:
    image: ${TEST_IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo compose-web-page > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports: ["${PORT}:80"]
    networks:
      front:
        ipv4_address: 10.231.60.10
        aliases: [www]
      back: {}
  client:
    image: ${TEST_IMAGE}
    command: ["sleep", "600"]
    networks: [front]
  vault:
    image: ${TEST_IMAGE}
    command: ["sleep", "600"]
    networks: [back]
networks:
  front:
    driver: ${networkDriver}
    driver_opts:
      com.docker.network.driver.mtu: "1400"
    ipam:
      driver: ${ipamDriver}
      config:
        - subnet: 10.231.60.0/24
          ip_range: 10.231.60.128/25
          gateway: 10.231.60.1
  back:
    driver: ${networkDriver}
    internal: true
    ipam:
      driver: ${ipamDriver}
      config:
        - subnet: 10.231.61.0/24
`;

describe("docker compose with Switchyard networks", {
  skip: !isSwitchyard && "Switchyard only",
}, () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  let compose = "";
  let directory = "";
  const service = (name: string) => `${PROJECT}-${name}-1`;
  const run = (args: string[]) =>
    execa(compose, ["-f", join(directory, "compose.yaml"), ...args], { timeout: 180_000 });

  before(async () => {
    snapshot = await startScenario(PROJECT, LINK_PREFIX);
    compose = await findCompose();
    directory = await mkdtemp(join(tmpdir(), "sy-compose-"));
    await writeFile(join(directory, "compose.yaml"), composeFile);
    // If anything below fails, these go in the cleanup too.
    for (const name of ["web", "client", "vault"]) t.container(service(name));
    for (const name of ["front", "back"]) t.network(`${PROJECT}_${name}`);
    await run(["up", "-d"]);
  });

  after(async () => {
    if (compose !== "" && directory !== "") await run(["down"]).catch(() => undefined);
    if (directory !== "") await rm(directory, { recursive: true, force: true });
    await endScenario(t, snapshot);
  });

  it("gives the static address, the alias and the MTU", { timeout: 120_000 }, async () => {
    assert.equal(await containerAddress(service("web"), `${PROJECT}_front`), "10.231.60.10");
    const client = await containerAddress(service("client"), `${PROJECT}_front`);
    assert.match(client, /^10\.231\.60\.(1[2-9][0-9]|2[0-5][0-9])$/, "from the ip_range");
    assert.equal(await resolveName(service("client"), "web"), "10.231.60.10");
    assert.equal(await resolveName(service("client"), "www"), "10.231.60.10");
    const mtu = await exec(service("client"), ["cat", "/sys/class/net/eth0/mtu"]);
    assert.equal(mtu.trim(), "1400");
  });

  it("serves the page by alias and on the published port", { timeout: 120_000 }, async () => {
    await waitFor("httpd in web", async () =>
      /compose-web-page/.test((await httpGet(service("client"), "www", 80)) ?? ""),
    );
    assert.match((await httpGetFrom(ON_HOST, "127.0.0.1", PORT)) ?? "", /compose-web-page/);
  });

  it("keeps the internal network in and the two networks apart", { timeout: 120_000 }, async () => {
    const vault = await containerAddress(service("vault"), `${PROJECT}_back`);
    assert.equal(await ping(service("web"), vault), true, "web reaches vault on back");
    assert.equal(await ping(service("client"), vault), false, "client is not on back");
    assert.equal(await ping(service("vault"), "10.231.60.1"), false, "back has no way out");
  });

  it("compose down leaves no network, bridge or container", { timeout: 180_000 }, async () => {
    await run(["down"]);
    if (snapshot !== undefined) await endScenario(track(), snapshot);
  });
});
