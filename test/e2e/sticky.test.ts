// Sticky addresses (`--ipam-opt sticky=true`, moby#37634): on Docker 29.5 and later an automatic
// address stays with the container's name through stop/start, rm + run, Compose recreate,
// plugin and dockerd restarts; a full pool gives the least recently used kept address away;
// `docker network rm` forgets the reservations. Before 29.5 (where
// Switchyard cannot tell that Docker names containers) the option is refused at creation.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { execa } from "execa";
import { findCompose } from "./lib/compose.ts";
import { DOCKERD_LOG, isSwitchyard, networkDriver, TEST_IMAGE } from "./lib/config.ts";
import {
  containerAddress,
  containerMac,
  docker,
  dockerMayFail,
  dockerRelease,
  networkId,
  runContainer,
  uniqueName,
} from "./lib/docker.ts";
import { dockerdPid, type HostSnapshot, pluginPid } from "./lib/host.ts";
import { containerAddress6 } from "./lib/networks.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";
import { waitFor } from "./lib/wait.ts";

const PREFIX = "sy-e2e-sticky";
const LINK_PREFIX = "sye2est";
const SUBNET = "10.231.62.0/24";
const SUBNET6 = "fd00:231:62::/64";
const SMALL = "10.231.63.0/29";
const STICKY = ["--ipam-opt", "sticky=true"];

/** What must not change for a name: both addresses and the MAC. */
async function identity(container: string, network: string): Promise<string> {
  return [
    await containerAddress(container, network),
    await containerAddress6(container, network),
    await containerMac(container, network),
  ].join(" ");
}

describe("sticky addresses (--ipam-opt sticky=true)", {
  skip: !isSwitchyard && "Switchyard only",
  timeout: 600_000,
}, () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  /** Docker 29.5 or later: names containers and can be recognised by Switchyard. */
  let namesContainers = false;
  let release = "";

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);
    const [major, minor] = await dockerRelease();
    release = `${major}.${minor}`;
    namesContainers = major > 29 || (major === 29 && minor >= 5);
  });

  after(async () => {
    await endScenario(t, snapshot);
  });

  /** `docker network create … --ipam-opt sticky=true NAME`, dual stack when given `subnet6`. */
  async function createSticky(name: string, subnet: string, subnet6?: string): Promise<void> {
    const args = ["network", "create", "--driver", networkDriver, "--ipam-driver", networkDriver];
    args.push("--subnet", subnet, ...STICKY);
    if (subnet6) args.push("--ipv6", "--subnet", subnet6);
    await docker([...args, t.network(name)]);
  }

  it("is refused at network creation before Docker 29.5, saying why", async (context) => {
    if (namesContainers) {
      return context.skip(
        `Docker ${release} names containers: the refusal is for releases before 29.5`,
      );
    }
    const name = t.network(uniqueName(PREFIX));
    const outcome = await dockerMayFail([
      "network",
      "create",
      "--driver",
      networkDriver,
      "--ipam-driver",
      networkDriver,
      "--subnet",
      SUBNET,
      ...STICKY,
      name,
    ]);
    assert.notEqual(outcome.exitCode, 0, "the network is refused");
    assert.match(outcome.stderr, /sticky=true needs Docker 29\.5 or later/);
    assert.equal((await dockerMayFail(["network", "inspect", name])).exitCode, 1, "no network");
  });

  describe("on Docker 29.5 and later", () => {
    const network = uniqueName(PREFIX);
    const web = uniqueName(`${PREFIX}-web`);
    let kept = "";

    before(async () => {
      if (!namesContainers) return;
      await createSticky(network, SUBNET, SUBNET6);
      // Another container first, so the kept address is not simply the first one.
      await runContainer({ name: t.container(uniqueName(PREFIX)), network });
      await runContainer({ name: t.container(web), network });
      kept = await identity(web, network);
      assert.match(kept, /^10\.231\.62\.\d+ fd00:231:62::\S+ 02:42:/);
    });

    /** The reason to skip before Docker 29.5, where the refusal is tested instead. */
    const needs29 = () => {
      if (!namesContainers)
        return `Docker ${release}: sticky addresses need 29.5 (refusal tested above)`;
      return undefined;
    };

    it("stop and start give the same addresses and MAC, while others come and go", async (context) => {
      const skip = needs29();
      if (skip) return context.skip(skip);
      await docker(["stop", "-t", "0", web]);
      await runContainer({ name: t.container(uniqueName(PREFIX)), network });
      await docker(["start", web]);
      assert.equal(await identity(web, network), kept);
    });

    it("docker rm + docker run --name again give the same addresses", async (context) => {
      const skip = needs29();
      if (skip) return context.skip(skip);
      await docker(["rm", "-f", web]);
      await runContainer({ name: t.container(uniqueName(PREFIX)), network });
      await runContainer({ name: web, network });
      assert.equal(await identity(web, network), kept);
    });

    it("survives kill -9 of the plugin and a dockerd restart with the bridge gone (a reboot)", async (context) => {
      const skip = needs29();
      if (skip) return context.skip(skip);
      const pluginId = await docker(["plugin", "inspect", "-f", "{{.Id}}", networkDriver]);
      const pid = pluginPid(pluginId);
      assert.ok(pid !== undefined, "the plugin's task runs");
      await docker(["rm", "-f", web]);
      process.kill(pid, "SIGKILL");
      await waitFor("the plugin to come back", () => {
        const again = pluginPid(pluginId);
        return again !== undefined && again !== pid;
      });
      await runContainer({ name: web, network });
      assert.equal(await identity(web, network), kept, "after kill -9 of the plugin");

      await docker(["rm", "-f", web]);
      const bridge = `sy-${(await networkId(network)).slice(0, 12)}`;
      const daemon = dockerdPid();
      assert.ok(daemon !== undefined, "dockerd runs");
      process.kill(daemon, "SIGTERM");
      await waitFor("dockerd to stop", async () => dockerdPid() === undefined, 60_000);
      // What a reboot leaves: no bridge; only the state directory remembers.
      execFileSync("ip", ["link", "del", bridge]);
      execFileSync(`${process.cwd()}/scripts/ensure-docker.sh`, { stdio: "ignore" });
      await waitFor("the plugin to answer again", async () => {
        const outcome = await dockerMayFail(["network", "inspect", network]);
        return outcome.exitCode === 0;
      });
      await runContainer({ name: web, network });
      assert.equal(await identity(web, network), kept, "after a dockerd restart");
    });

    it("docker compose up --force-recreate keeps the service's addresses", async (context) => {
      const skip = needs29();
      if (skip) return context.skip(skip);
      const compose = await findCompose();
      const project = `${PREFIX}-compose`;
      const directory = await mkdtemp(join(tmpdir(), "sy-sticky-"));
      const file = join(directory, "compose.yaml");
      t.container(`${project}-app-1`);
      t.container(`${project}-other-1`);
      // Compose 2.40 (Debian's) drops `ipam.options` (docker/compose#13785), so the network
      // is made with `docker network create` and the project uses it as an external one.
      const shared = uniqueName(PREFIX);
      await createSticky(shared, "10.231.64.0/24", "fd00:231:64::/64");
      await writeFile(
        file,
        `name: ${project}
services:
  app:
    image: ${TEST_IMAGE}
    command: ["sleep", "600"]
    networks: [net]
  other:
    image: ${TEST_IMAGE}
    command: ["sleep", "600"]
    networks: [net]
networks:
  net:
    external: true
    name: ${shared}
`,
      );
      const run = (args: string[]) => execa(compose, ["-f", file, ...args], { timeout: 180_000 });
      try {
        await run(["up", "-d"]);
        const before = await identity(`${project}-app-1`, shared);
        const beforeId = await docker(["inspect", "-f", "{{.Id}}", `${project}-app-1`]);
        await run(["up", "-d", "--force-recreate"]);
        const afterId = await docker(["inspect", "-f", "{{.Id}}", `${project}-app-1`]);
        assert.notEqual(afterId, beforeId, "compose made a new container");
        assert.equal(await identity(`${project}-app-1`, shared), before);
      } finally {
        await run(["down"]).catch(() => undefined);
        await rm(directory, { recursive: true, force: true });
      }
    });

    it("a full pool gives the least recently used kept address to a new name, logged", async (context) => {
      const skip = needs29();
      if (skip) return context.skip(skip);
      const small = uniqueName(PREFIX);
      await createSticky(small, SMALL);
      // A /29: .1 is the gateway, five addresses for containers.
      const names = Array.from({ length: 5 }, () => t.container(uniqueName(`${PREFIX}-s`)));
      const addresses: string[] = [];
      for (const name of names) {
        await runContainer({ name, network: small });
        addresses.push(await containerAddress(name, small));
      }
      await docker(["rm", "-f", ...names]);
      const logBefore = (await readFile(DOCKERD_LOG)).length;
      const newcomer = t.container(uniqueName(`${PREFIX}-n`));
      await runContainer({ name: newcomer, network: small });
      assert.equal(await containerAddress(newcomer, small), addresses[0], "the oldest kept one");
      await waitFor("the log line", async () => {
        const log = (await readFile(DOCKERD_LOG)).subarray(logBefore).toString("utf8");
        return log.includes("sticky pool full") && log.includes(names[0] ?? "?");
      });
      // A name whose kept address is still free gets it back, full pool or not.
      const returning = names[1] ?? "";
      await runContainer({ name: returning, network: small });
      assert.equal(await containerAddress(returning, small), addresses[1], "its own address");
    });

    it("docker network rm forgets the reservations", async (context) => {
      const skip = needs29();
      if (skip) return context.skip(skip);
      const again = uniqueName(PREFIX);
      await createSticky(again, "10.231.65.0/24");
      const first = t.container(uniqueName(PREFIX));
      const second = t.container(uniqueName(PREFIX));
      await runContainer({ name: first, network: again });
      await runContainer({ name: second, network: again });
      const secondAddress = await containerAddress(second, again);
      await docker(["rm", "-f", first, second]);
      await docker(["network", "rm", again]);
      await createSticky(again, "10.231.65.0/24");
      await runContainer({ name: second, network: again });
      assert.notEqual(await containerAddress(second, again), secondAddress, "a new network");
    });
  });
});
