/** The plugin as a package and a process: time to serve after `enable`, memory, rootfs size. */
import { stat } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { docker, dockerMayFail, run } from "./lib/exec.ts";
import { PLUGIN, PluginClient, pluginPid, residentBytes, socketPathFor } from "./lib/plugin.ts";

/** Networks (anyone's) that use the plugin; disabling is refused (or unkind) while any exist. */
export async function networksUsingPlugin(): Promise<string[]> {
  const out = await docker(["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
  return out
    .split("\n")
    .map((line) => line.trim().split(" "))
    .filter(([, driver]) => driver === PLUGIN || driver === PLUGIN.replace(/:latest$/, ""))
    .map(([name]) => name ?? "");
}

/** What one `disable -f` + `enable` measured. */
export interface EnableResult {
  /** From starting `docker plugin enable` until the socket answered /Plugin.Activate. */
  activateMs: number;
  /** Wall time of the `docker plugin enable` command itself. */
  enableCommandMs: number;
  /** Resident memory of the fresh process after it settled. */
  freshIdleBytes: number;
}

/**
 * Disables the plugin and times `docker plugin enable` until the socket answers
 * /Plugin.Activate. Leaves the plugin enabled whatever happens.
 */
export async function benchEnable(id: string, settleMs = 2000): Promise<EnableResult> {
  await docker(["plugin", "disable", "-f", PLUGIN]);
  const client = new PluginClient(socketPathFor(id), 1);
  try {
    const started = performance.now();
    let enableDone = Number.NaN;
    const enabling = dockerMayFail(["plugin", "enable", PLUGIN]).then((outcome) => {
      enableDone = performance.now();
      return outcome;
    });
    let activated = Number.NaN;
    const deadline = started + 15_000;
    while (performance.now() < deadline) {
      try {
        const answer = await client.call("Plugin.Activate", undefined, 1000);
        if (answer.status === 200 && Array.isArray(answer.body.Implements)) {
          activated = performance.now();
          break;
        }
      } catch {
        // not listening yet (ENOENT / ECONNREFUSED)
      }
      await sleep(5);
    }
    const outcome = await enabling;
    if (outcome.exitCode !== 0) throw new Error(`docker plugin enable failed: ${outcome.stderr}`);
    if (Number.isNaN(activated))
      throw new Error("the plugin did not answer /Plugin.Activate in 15 s");
    await sleep(settleMs);
    const freshIdleBytes = await residentBytes(await pluginPid(id));
    return {
      activateMs: activated - started,
      enableCommandMs: enableDone - started,
      freshIdleBytes,
    };
  } finally {
    client.close();
    await dockerMayFail(["plugin", "enable", PLUGIN]); // no-op when already enabled
  }
}

/** Size of the plugin's rootfs against the Node binary it carries. */
export async function rootfsSize(
  rootfs: string,
  nodeBinary: string,
): Promise<{ rootfsBytes: number; nodeBytes: number }> {
  const out = await run(["du", "-sb", rootfs]);
  const rootfsBytes = Number(out.split(/\s+/)[0]);
  const nodeBytes = (await stat(nodeBinary)).size;
  return { rootfsBytes, nodeBytes };
}
