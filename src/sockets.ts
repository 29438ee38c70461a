import type { Socket as UdpSocket } from "node:dgram";
import type { Server } from "node:net";

/**
 * Waits for a TCP server or UDP socket to bind; a one-off listener turns a bind failure
 * (address in use, not local) into a rejection instead of an unhandled error event.
 */
export function bound(
  emitter: Server | UdpSocket,
  bind: (done: () => void) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    emitter.once("error", reject);
    bind(() => {
      emitter.off("error", reject);
      resolve();
    });
  });
}
