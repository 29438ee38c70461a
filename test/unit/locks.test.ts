import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KeyedLocks } from "../../src/driver/locks.ts";

/** A promise and the function that settles it. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

describe("KeyedLocks", () => {
  it("runs work on different keys side by side", async () => {
    const locks = new KeyedLocks();
    const a = gate();
    const b = gate();
    // Each waits for the other to have started: only possible if they run at once.
    await Promise.all([
      locks.run(["net-a"], async () => {
        a.open();
        await b.opened;
      }),
      locks.run(["net-b"], async () => {
        b.open();
        await a.opened;
      }),
    ]);
  });

  it("runs work on the same key one at a time, in order", async () => {
    const locks = new KeyedLocks();
    const order: string[] = [];
    let running = 0;
    await Promise.all(
      ["1", "2", "3"].map((name) =>
        locks.run(["net-a"], async () => {
          running += 1;
          assert.equal(running, 1, "never two at once");
          order.push(name);
          await new Promise((resolve) => setImmediate(resolve));
          running -= 1;
        }),
      ),
    );
    assert.deepEqual(order, ["1", "2", "3"]);
  });

  it("releases a key when the work throws", async () => {
    const locks = new KeyedLocks();
    await assert.rejects(
      locks.run(["k"], async () => Promise.reject(new Error("boom"))),
      /boom/,
    );
    assert.equal(await locks.run(["k"], async () => "next"), "next");
  });

  it("exclusive work waits for work in flight and holds off later work", async () => {
    const locks = new KeyedLocks();
    const events: string[] = [];
    const slow = gate();
    const first = locks.run(["a"], async () => {
      await slow.opened;
      events.push("first done");
    });
    const exclusive = locks.exclusive(async () => {
      events.push("exclusive");
    });
    const later = locks.run(["b"], async () => {
      events.push("later");
    });
    slow.open();
    await Promise.all([first, exclusive, later]);
    assert.deepEqual(events, ["first done", "exclusive", "later"]);
  });
});
