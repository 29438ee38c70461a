import { setTimeout as sleep } from "node:timers/promises";

/**
 * Retries an assertion until it holds or `limitMs` have passed (watches and background
 * passes deliver on later turns); the last failure is what is thrown.
 */
export async function eventually(
  check: () => void | Promise<void>,
  limitMs = 3_000,
): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(5);
    }
  }
}
