/** Polling for conditions that become true some time after a command returns. */

import { setTimeout as sleep } from "node:timers/promises";

/**
 * Resolves once `check` answers true (a check that throws counts as false); fails with
 * "timed out waiting for WHAT" after `timeoutMs`.
 */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 30_000,
  intervalMs = 250,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (
      await Promise.resolve()
        .then(check)
        .catch(() => false)
    )
      return;
    await sleep(intervalMs);
  }
  throw new Error(`timed out waiting for ${what}`);
}
