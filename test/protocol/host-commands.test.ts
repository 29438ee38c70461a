// Regression tests for two defects found against real dockerd: request strings reached
// `ip -batch` (a Gateway with a newline ran commands of its own on the host), and a failed
// CreateNetwork left its bridge behind. The real `ip` datapath runs here on a recording runner
// that plays a host, so every command Switchyard would run is seen.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { IpDatapath } from "../../src/datapath/ip-datapath.ts";
import { CommandError, type CommandResult, type RunOptions } from "../../src/exec/runner.ts";
import type { Firewall } from "../../src/firewall/firewall.ts";
import type { StateDocument } from "../../src/state/model.ts";
import { buildTestApp } from "../support/fakes.ts";
import { MemoryStore } from "../support/memory-store.ts";

const NET = "e".repeat(64);

/** A pretend host for `ip`: links appear with `link add` and go with `link del`. */
function recordingHost() {
  const links = new Set<string>();
  const commands: { argv: string[]; input?: string }[] = [];
  const ok = (stdout = ""): CommandResult => ({ stdout, stderr: "", exitCode: 0 });
  const runner = async (argv: readonly string[], options?: RunOptions): Promise<CommandResult> => {
    commands.push({
      argv: [...argv],
      ...(options?.input === undefined ? {} : { input: options.input }),
    });
    const lines = options?.input
      ?.trim()
      .split("\n")
      .map((line) => line.split(" ")) ?? [argv.slice(1)];
    if (argv.includes("show") && argv.includes("link")) {
      const name = argv.at(-1) ?? "";
      if (argv.includes("dev") && !links.has(name)) {
        const missing = { stdout: "", stderr: `Cannot find device "${name}"`, exitCode: 1 };
        if (options?.allowFailure === true) return missing;
        throw new CommandError(argv, missing);
      }
      return ok(
        JSON.stringify(
          argv.includes("dev") ? [{ ifname: name, linkinfo: { info_kind: "bridge" } }] : [],
        ),
      );
    }
    if (argv.includes("show")) return ok("[]");
    for (const words of lines) {
      if (words[0] === "link" && words[1] === "add") links.add(words[3] ?? words[2] ?? "");
      if (words[0] === "link" && words[1] === "del") links.delete(words.at(-1) ?? "");
    }
    return ok();
  };
  return { runner, links, commands };
}

/** Every word of every command and batch line Switchyard ran. */
const wordsRun = (commands: { argv: string[]; input?: string }[]): string[] =>
  commands.flatMap((command) => [...command.argv, ...(command.input?.split(/\s+/) ?? [])]);

const createNetwork = (gateway: string, pool = "10.98.0.0/24") => ({
  NetworkID: NET,
  Options: { "com.docker.network.generic": {} },
  IPv4Data: [{ Pool: pool, Gateway: gateway }],
});

describe("request strings never reach a command", () => {
  const hostile: [what: string, path: string, body: object][] = [
    [
      "a Gateway with commands after a newline",
      "/NetworkDriver.CreateNetwork",
      createNetwork(
        "10.98.0.1/24 dev lo\naddress add 10.98.7.7/32 dev lo\naddress add 10.98.0.1/24",
      ),
    ],
    [
      "a Gateway with a word after a space",
      "/NetworkDriver.CreateNetwork",
      createNetwork("10.98.0.1/24 dev lo"),
    ],
    [
      "a Pool with a newline",
      "/NetworkDriver.CreateNetwork",
      createNetwork("10.98.0.1/24", "10.98.0.0/24\nlink del lo"),
    ],
    ["a Gateway outside its Pool", "/NetworkDriver.CreateNetwork", createNetwork("10.99.0.1/24")],
  ];
  for (const [what, path, body] of hostile) {
    it(`refuses ${what} with Err, runs nothing and records nothing`, {
      timeout: 10_000,
    }, async () => {
      const host = recordingHost();
      const t = await buildTestApp(new MemoryStore(), { datapath: new IpDatapath(host.runner) });
      const response = await t.call(path, body);
      assert.equal(response.status, 500);
      assert.match(String(response.body.Err), /invalid|not inside|not an IPv4/);
      assert.deepEqual(host.commands, [], "no command ran");
      assert.deepEqual(t.state.document.networks, {});
    });
  }

  it("refuses an endpoint Address, MAC or published HostIP with extra words", {
    timeout: 10_000,
  }, async () => {
    const host = recordingHost();
    const t = await buildTestApp(new MemoryStore(), { datapath: new IpDatapath(host.runner) });
    assert.equal(
      (await t.call("/NetworkDriver.CreateNetwork", createNetwork("10.98.0.1/24"))).status,
      200,
    );
    const before = host.commands.length;
    for (const Interface of [
      { Address: "10.98.0.5/24\nlink del lo" },
      { Address: "10.98.0.5/24", MacAddress: "02:42:0a:62:00:05 up" },
      { AddressIPv6: "fd00::5/64 dev lo" },
    ]) {
      const response = await t.call("/NetworkDriver.CreateEndpoint", {
        NetworkID: NET,
        EndpointID: "f".repeat(64),
        Interface,
      });
      assert.equal(response.status, 500, JSON.stringify(Interface));
    }
    assert.equal(host.commands.length, before, "no command ran for a refused endpoint");
    const created = await t.call("/NetworkDriver.CreateEndpoint", {
      NetworkID: NET,
      EndpointID: "f".repeat(64),
      Interface: { Address: "10.98.0.5/24" },
    });
    assert.equal(created.status, 200);
    const published = await t.call("/NetworkDriver.ProgramExternalConnectivity", {
      NetworkID: NET,
      EndpointID: "f".repeat(64),
      Options: {
        "com.docker.network.portmap": [
          {
            Proto: 6,
            Port: 80,
            HostIP: "0.0.0.0 accept\nflush ruleset",
            HostPort: 8080,
            HostPortEnd: 8080,
          },
        ],
      },
    });
    assert.equal(published.status, 500);
    assert.match(
      String(published.body.Err),
      /HostIP "0\.0\.0\.0 accept\nflush ruleset" is not an IP address/,
    );
    assert.deepEqual(t.state.document.endpoints["f".repeat(64)]?.ports, []);
  });

  it("writes the values it parsed, canonically, into the commands it runs", {
    timeout: 10_000,
  }, async () => {
    const host = recordingHost();
    const t = await buildTestApp(new MemoryStore(), { datapath: new IpDatapath(host.runner) });
    const response = await t.call("/NetworkDriver.CreateNetwork", createNetwork("10.98.0.1/24"));
    assert.equal(response.status, 200);
    const words = wordsRun(host.commands);
    assert.ok(words.includes("10.98.0.1/24"));
    for (const word of words) assert.doesNotMatch(word, /\s/);
  });
});

/** A firewall whose apply fails (nft refused the ruleset). */
class FailingFirewall implements Firewall {
  async apply(_state: Readonly<StateDocument>): Promise<void> {
    throw new Error("nft: Could not process rule");
  }
  async clear(): Promise<void> {}
}

describe("a CreateNetwork that fails undoes what it made", () => {
  it("deletes its bridge when the packet filter cannot be applied", {
    timeout: 10_000,
  }, async () => {
    const host = recordingHost();
    const t = await buildTestApp(new MemoryStore(), {
      datapath: new IpDatapath(host.runner),
      firewall: new FailingFirewall(),
    });
    const response = await t.call("/NetworkDriver.CreateNetwork", createNetwork("10.98.0.1/24"));
    assert.equal(response.status, 500);
    assert.deepEqual([...host.links], [], "the bridge it made is gone");
    assert.ok(
      host.commands.some(
        (command) => command.argv.join(" ") === `ip link del dev sy-${"e".repeat(12)}`,
      ),
    );
    assert.deepEqual(t.state.document.networks, {});
  });

  it("deletes its bridge and takes its rules out when the state cannot be saved", {
    timeout: 10_000,
  }, async () => {
    const host = recordingHost();
    const store = new MemoryStore();
    const applied: number[] = [];
    const firewall: Firewall = {
      apply: async (state) => {
        applied.push(Object.keys(state.networks).length);
      },
      clear: async () => undefined,
    };
    const t = await buildTestApp(store, { datapath: new IpDatapath(host.runner), firewall });
    store.failNextSave = true;
    const response = await t.call("/NetworkDriver.CreateNetwork", createNetwork("10.98.0.1/24"));
    assert.equal(response.status, 500);
    assert.match(String(response.body.Err), /disk full/);
    assert.deepEqual([...host.links], []);
    assert.deepEqual(applied, [1, 0], "rules applied with the network, then without it");
    assert.deepEqual(t.state.document.networks, {});
  });
});
