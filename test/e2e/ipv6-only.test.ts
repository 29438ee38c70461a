// IPv6-only networks (Docker 28: `docker network create --ipv4=false --ipv6`): Docker sends
// CreateNetwork with com.docker.network.enable_ipv4=false and no IPv4Data, and requests no
// IPv4 address. Containers get only an IPv6 address and reach each other over it.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ipamDriver, isSwitchyard, networkDriver } from "./lib/config.ts";
import { docker, dockerMajor, execMayFail, runContainer, uniqueName } from "./lib/docker.ts";
import type { HostSnapshot } from "./lib/host.ts";
import { containerAddress6 } from "./lib/networks.ts";
import { endScenario, startScenario } from "./lib/scenario.ts";
import { track } from "./lib/track.ts";

const PREFIX = "sy-e2e-v6o";
const LINK_PREFIX = "sye2ev6o";
const SUBNET = "fd00:231:60::/64";

describe("IPv6-only networks (Docker 28 and later)", {
  skip: !isSwitchyard && "Switchyard only",
}, () => {
  const t = track();
  let snapshot: HostSnapshot | undefined;
  let major = 0;
  const network = uniqueName(PREFIX);

  before(async () => {
    snapshot = await startScenario(PREFIX, LINK_PREFIX);
    major = await dockerMajor();
  });

  after(async () => {
    await endScenario(t, snapshot);
  });

  it("attach containers with only an IPv6 address that reach each other", {
    timeout: 120_000,
  }, async (context) => {
    if (major < 28) {
      // `--ipv4=false` is a Docker 28 flag; the protocol test covers the requests themselves.
      context.skip(`Docker ${major} has no IPv6-only networks (--ipv4=false came with 28)`);
      return;
    }
    await docker([
      ...["network", "create", "--driver", networkDriver, "--ipam-driver", ipamDriver],
      ...["--ipv4=false", "--ipv6", "--subnet", SUBNET, t.network(network)],
    ]);
    const a = await runContainer({ name: t.container(uniqueName(PREFIX)), network });
    const b = await runContainer({ name: t.container(uniqueName(PREFIX)), network });
    const v4 = await docker([
      "inspect",
      "-f",
      `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`,
      a,
    ]);
    assert.equal(v4, "", "no IPv4 address");
    const a6 = await containerAddress6(a, network);
    assert.match(a6, /^fd00:231:60::/);
    const ping = await execMayFail(b, ["ping6", "-c", "1", "-W", "2", a6]);
    assert.equal(ping.exitCode, 0, `ping6 ${a6}: ${ping.stderr}`);
  });
});
