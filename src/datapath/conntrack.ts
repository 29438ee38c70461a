import { internal } from "../errors.ts";
import { CommandError, type Runner } from "../exec/runner.ts";
import { formatAddress } from "../ipam/prefix.ts";
import type { ConntrackFilter } from "./datapath.ts";

/** What `conntrack -D` prints on standard error once done, whether it matched or not. */
const DELETED = /(\d+) flow entries have been deleted/;

/** The `conntrack -D` argv for one filter, from typed values only. */
export function conntrackDeleteArgv(filter: ConntrackFilter): string[] {
  if (!Number.isInteger(filter.port) || filter.port < 1 || filter.port > 65535) {
    throw internal(`cannot delete conntrack entries of port ${filter.port}: not a port number`);
  }
  const v6 = filter.family === 6;
  const argv = ["conntrack", "-D", "-f", v6 ? "ipv6" : "ipv4", "-p", filter.proto];
  argv.push("--orig-port-dst", String(filter.port));
  if (filter.destination !== undefined) {
    if (filter.destination.v6 !== v6) {
      throw internal(
        `cannot delete IPv${filter.family} conntrack entries to ${formatAddress(filter.destination)}`,
      );
    }
    argv.push("--orig-dst", formatAddress(filter.destination));
  }
  return argv;
}

/**
 * Deletes the connection-tracking entries a filter matches with the `conntrack` tool, and
 * answers how many went. None is success: conntrack then exits 1 with "0 flow entries have
 * been deleted".
 */
export async function deleteConntrackEntries(
  run: Runner,
  filter: ConntrackFilter,
): Promise<number> {
  const argv = conntrackDeleteArgv(filter);
  const result = await run(argv, { allowFailure: true });
  const deleted = DELETED.exec(result.stderr)?.[1];
  if (deleted !== undefined && (result.exitCode === 0 || deleted === "0")) return Number(deleted);
  throw new CommandError(argv, result);
}
