// Child process for the kill -9 test: commits endpoints one after another into a FileStore and
// prints each endpoint's ID once its commit is answered, until it is killed.
import { defaultIpamSettings } from "../../src/ipam/ipam.ts";
import { StateManager } from "../../src/state/state-manager.ts";
import { FileStore } from "../../src/state/store.ts";

const directory = process.argv[2];
if (directory === undefined) throw new Error("usage: journal-writer.ts DIRECTORY");
// A small compaction threshold, so the kill also lands in and around compactions.
const state = await StateManager.open(
  new FileStore(directory, { compactBytes: 4096 }),
  defaultIpamSettings(),
);
const { poolId } = await state.commit((_document, ipam) =>
  ipam.requestPool({ addressSpace: "LocalDefault", pool: "10.9.0.0/16", v6: false }),
);
for (let i = 0; ; i++) {
  const id = `e${i}`;
  // Several in flight at once, as with concurrent requests: group commits.
  const ids = [id, `${id}b`, `${id}c`];
  await Promise.all(
    ids.map(async (endpointId) => {
      await state.commit((document, ipam) => {
        const address = ipam.requestAddress(poolId, {});
        document.endpoints[endpointId] = {
          id: endpointId,
          networkId: "n",
          hostVeth: "v",
          peerVeth: "p",
          mac: "02:42:00:00:00:01",
          address,
          ports: [],
        };
      });
      process.stdout.write(`${endpointId}\n`);
    }),
  );
}
