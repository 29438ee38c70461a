import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import type { Firewall } from "../../src/firewall/firewall.ts";
import { FirewallSync } from "../../src/firewall/sync.ts";
import { defaultIpamSettings } from "../../src/ipam/ipam.ts";
import type { StateDocument } from "../../src/state/model.ts";
import { StateManager } from "../../src/state/state-manager.ts";
import { MemoryStore } from "../support/memory-store.ts";
import { networkRecord } from "../support/records.ts";

/** A firewall that keeps a deep copy of what each apply was given. */
class RecordingFirewall implements Firewall {
  readonly applied: StateDocument[] = [];
  async apply(state: Readonly<StateDocument>): Promise<void> {
    this.applied.push(structuredClone(state) as StateDocument);
  }
  async clear(): Promise<void> {}
}

describe("FirewallSync", () => {
  it("applies a pending change of multi-host peers before it is committed", {
    timeout: 10_000,
  }, async () => {
    // Regression: the view shared the cluster records with the state, so the preview's
    // rollback took the new peers out again before the rules were rendered, and VXLAN from
    // a host that had just joined was dropped.
    const state = await StateManager.open(new MemoryStore(), defaultIpamSettings());
    await state.commit((document) => {
      document.networks.n1 = networkRecord("n1", "sy-one", "10.60.0.0/24", { vxlanId: 4242 });
      document.cluster = {
        hostId: "a",
        networks: {
          "4242": {
            vni: 4242,
            networkId: "n1",
            subnet: "10.60.0.0/24",
            gateway: "10.60.0.1/24",
            blocks: [],
            peers: [],
          },
        },
      };
    });
    const firewall = new RecordingFirewall();
    const sync = new FirewallSync(firewall, state, pino({ level: "silent" }));
    const update = (document: StateDocument): void => {
      const network = document.cluster?.networks["4242"];
      if (network !== undefined) network.peers = ["192.0.2.2"];
    };
    await sync.around(update, () => state.commit(update));
    assert.deepEqual(firewall.applied[0]?.cluster?.networks["4242"]?.peers, ["192.0.2.2"]);
    assert.deepEqual(state.document.cluster?.networks["4242"]?.peers, ["192.0.2.2"]);
  });
});
