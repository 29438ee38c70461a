/** The start and end every e2e scenario shares. */

import { requireDocker, requireDrivers, requireRoot } from "./docker.ts";
import { assertNothingLeft, dropEmptiedRawTable, type HostSnapshot, snapshotHost } from "./host.ts";
import { removeLeftovers, type Tracker } from "./track.ts";

/**
 * Fails (never skips) without root, dockerd or the drivers under test, removes what an
 * earlier run of this scenario left, and returns the host as it is now.
 */
export async function startScenario(prefix: string, linkPrefix?: string): Promise<HostSnapshot> {
  requireRoot();
  await requireDocker();
  await requireDrivers();
  await removeLeftovers(prefix, linkPrefix);
  return snapshotHost();
}

/**
 * Removes what the scenario made and asserts the host is as it was. Without a snapshot the
 * scenario failed before making anything worth comparing.
 */
export async function endScenario(
  t: Tracker,
  snapshot: HostSnapshot | undefined,
  timeoutMs?: number,
): Promise<void> {
  await t.cleanup();
  await dropEmptiedRawTable();
  if (snapshot) await assertNothingLeft(snapshot, timeoutMs);
}
