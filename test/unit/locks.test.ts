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

/**
 * Settles as `work` does, or rejects with `failure` after `ms`: a lock that never lets work
 * through fails the test at once with a message saying so, instead of hanging it.
 */
async function within<T>(ms: number, failure: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${failure} (waited ${ms} ms)`)), ms);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Long enough for any healthy run of these in-memory locks, short enough to fail fast. */
const PATIENCE_MS = 1_000;

describe("KeyedLocks", () => {
  it("runs work on different keys side by side", async () => {
    const locks = new KeyedLocks();
    const started = { "net-a": gate(), "net-b": gate() };
    const events: string[] = [];
    // Each waits, for a bounded time, for the other to have started: a KeyedLocks that put
    // different keys in one queue fails here within PATIENCE_MS instead of hanging.
    const work = (key: "net-a" | "net-b", other: "net-a" | "net-b") =>
      locks.run([key], async () => {
        events.push(`${key} started`);
        started[key].open();
        await within(
          PATIENCE_MS,
          `work on ${key} never saw work on ${other} start: different keys ran one after another`,
          started[other].opened,
        );
        events.push(`${key} finished`);
      });
    await Promise.all([work("net-a", "net-b"), work("net-b", "net-a")]);
    // Both started before either finished: the two ran at the same time.
    assert.deepEqual(events.slice(0, 2).sort(), ["net-a started", "net-b started"]);
    assert.deepEqual(events.slice(2).sort(), ["net-a finished", "net-b finished"]);
  });

  it("runs work on the same key one at a time, in order", async () => {
    const locks = new KeyedLocks();
    const order: string[] = [];
    let running = 0;
    await within(
      PATIENCE_MS,
      "work queued on one key never all finished: the key was not handed on",
      Promise.all(
        ["1", "2", "3"].map((name) =>
          locks.run(["net-a"], async () => {
            running += 1;
            assert.equal(running, 1, "never two at once");
            order.push(name);
            await new Promise((resolve) => setImmediate(resolve));
            running -= 1;
          }),
        ),
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
    const next = await within(
      PATIENCE_MS,
      "work after a failure never ran: the failed work kept its key",
      locks.run(["k"], async () => "next"),
    );
    assert.equal(next, "next");
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
    await within(
      PATIENCE_MS,
      "work around exclusive work never finished",
      Promise.all([first, exclusive, later]),
    );
    assert.deepEqual(events, ["first done", "exclusive", "later"]);
  });
});
