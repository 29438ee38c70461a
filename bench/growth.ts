/**
 * Cost as the host grows: at 1, 100 and 500 networks per driver, the time of one
 * `docker network create` + `rm`, one `docker run --rm`, one `docker rm -f`, both drivers
 * interleaved on the same daemon, and the plugin's RSS. Networks are added in both drivers
 * alternately between the levels, so each level compares like with like.
 */
import { performance } from "node:perf_hooks";
import { BUSYBOX, type Driver, orderFor, PREFIX } from "./containers.ts";
import { docker, dockerMayFail } from "./lib/exec.ts";
import { PLUGIN, pluginId, pluginPid, residentBytes } from "./lib/plugin.ts";
import { median } from "./lib/stats.ts";

/** Bench networks of the growth curve: named and addressed apart from everything else. */
const GROWTH = `${PREFIX}grow-`;

const driverArgs = (driver: Driver): string[] =>
  driver === "switchyard" ? ["--driver", PLUGIN, "--ipam-driver", PLUGIN] : ["--driver", "bridge"];

/** The i-th /24 of 10.128.0.0/9 for `driver` (even for Switchyard, odd for the bridge). */
function subnetFor(driver: Driver, index: number): string {
  const slot = index * 2 + (driver === "switchyard" ? 0 : 1);
  return `10.${128 + Math.floor(slot / 256)}.${slot % 256}.0/24`;
}

/** One level of the curve. */
export interface GrowthPoint {
  networks: number;
  createMs: Record<Driver, number>;
  runMs: Record<Driver, number>;
  rmMs: Record<Driver, number>;
  pluginRssBytes: number;
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await work();
  return performance.now() - started;
}

/** Removes every growth network and container (also those of an interrupted run). */
export async function removeGrowthLeftovers(): Promise<void> {
  const containers = (await docker(["ps", "-aq", "--filter", `name=${GROWTH}`])).split("\n");
  for (const id of containers.filter((item) => item !== "")) await dockerMayFail(["rm", "-f", id]);
  const networks = (await docker(["network", "ls", "-q", "--filter", `name=${GROWTH}`])).split(
    "\n",
  );
  for (const id of networks.filter((item) => item !== ""))
    await dockerMayFail(["network", "rm", id]);
}

/**
 * Measures the curve at `levels` networks per driver with `samples` interleaved samples per
 * figure and level. Leaves nothing behind (also when it fails).
 */
export async function benchGrowth(
  levels: readonly number[],
  samples: number,
  progress: (message: string) => void,
): Promise<GrowthPoint[]> {
  const points: GrowthPoint[] = [];
  let made = 0;
  try {
    for (const level of levels) {
      for (; made < level; made++) {
        for (const driver of orderFor(made)) {
          await docker([
            ...["network", "create", ...driverArgs(driver), "--subnet", subnetFor(driver, made)],
            `${GROWTH}${driver}-${made}`,
          ]);
        }
      }
      progress(`growth: ${level} networks per driver`);
      const create: Record<Driver, number[]> = { switchyard: [], bridge: [] };
      const run: Record<Driver, number[]> = { switchyard: [], bridge: [] };
      const rm: Record<Driver, number[]> = { switchyard: [], bridge: [] };
      for (let i = 0; i < samples; i++) {
        for (const driver of orderFor(i)) {
          const name = `${GROWTH}${driver}-probe`;
          create[driver].push(
            await timed(() =>
              docker([
                "network",
                "create",
                ...driverArgs(driver),
                "--subnet",
                subnetFor(driver, 1000),
                name,
              ]),
            ),
          );
          await docker(["network", "rm", name]);
          const network = `${GROWTH}${driver}-0`;
          run[driver].push(
            await timed(() => docker(["run", "--rm", "--network", network, BUSYBOX, "true"])),
          );
          const container = `${GROWTH}${driver}-c${i}`;
          await docker([
            "run",
            "-d",
            "--name",
            container,
            "--network",
            network,
            BUSYBOX,
            "sleep",
            "600",
          ]);
          rm[driver].push(await timed(() => docker(["rm", "-f", container])));
        }
      }
      const medians = (values: Record<Driver, number[]>): Record<Driver, number> => ({
        switchyard: median(values.switchyard),
        bridge: median(values.bridge),
      });
      points.push({
        networks: level,
        createMs: medians(create),
        runMs: medians(run),
        rmMs: medians(rm),
        pluginRssBytes: await residentBytes(await pluginPid(await pluginId())),
      });
    }
    return points;
  } finally {
    await removeGrowthLeftovers();
  }
}
