// `make demo` walks through the seed scenario; it must succeed and leave nothing behind.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { isSwitchyard } from "./lib/config.ts";
import { requireDocker, requireDrivers, requireRoot } from "./lib/docker.ts";
import { assertNothingLeft, type HostSnapshot, snapshotHost } from "./lib/host.ts";

const run = promisify(execFile);

describe("make demo", { skip: !isSwitchyard && "Switchyard only" }, () => {
  let snapshot: HostSnapshot | undefined;

  before(async () => {
    requireRoot();
    await requireDocker();
    await requireDrivers();
    snapshot = await snapshotHost();
  });

  after(async () => {
    if (snapshot) await assertNothingLeft(snapshot);
  });

  it("prints every step, exits 0 and cleans up", async () => {
    const { stdout } = await run("make", ["--no-print-directory", "demo"], {
      maxBuffer: 4 * 1024 * 1024,
    });
    for (const step of [
      "A network on a bridge you made",
      "A user-defined network with subnet, gateway and ip-range",
      "Two containers reach each other by name and by alias",
      "A published port (-p 18080:80) fetched from the host",
      "An internal network",
    ]) {
      assert.ok(stdout.includes(`==> ${step}`), `step "${step}" printed`);
    }
    assert.doesNotMatch(stdout, /FAILED/);
    assert.match(
      stdout,
      /sydemo-web +sydemo-net +.*0\.0\.0\.0:18080->80\/tcp/,
      "the status table shows the container, its network and the published port",
    );
    assert.match(stdout, /demo: every step worked/);
    const { stdout: networks } = await run("docker", ["network", "ls", "--format", "{{.Name}}"]);
    assert.doesNotMatch(networks, /sydemo/);
  });
});
