import { conflict } from "../../src/errors.ts";
import { hostSide, type PortPublisher } from "../../src/proxy/port-proxy.ts";
import type { PortBinding } from "../../src/state/model.ts";

/** A publisher that only records, for tests without sockets. */
export class RecordingPublisher implements PortPublisher {
  readonly opened = new Map<string, PortBinding[]>();
  /** Host ports that behave as if another program held them. */
  readonly busy = new Set<string>();

  async open(owner: string, binding: PortBinding): Promise<void> {
    if (this.busy.has(`${binding.hostPort}/${binding.proto}`)) {
      throw conflict(
        `cannot publish ${binding.hostPort}/${binding.proto}: another program on the host already uses that port`,
      );
    }
    this.opened.set(owner, [...(this.opened.get(owner) ?? []), binding]);
  }

  async close(owner: string): Promise<void> {
    this.opened.delete(owner);
  }

  isOpen(owner: string, binding: PortBinding): boolean {
    const key = hostSide(binding);
    return this.opened.get(owner)?.some((open) => hostSide(open) === key) ?? false;
  }

  openCount(): number {
    return [...this.opened.values()].reduce((sum, list) => sum + list.length, 0);
  }
}
