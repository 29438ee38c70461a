import type { Compare } from "./kv.ts";

// The building blocks of the cluster's compare-and-swap writes.

/** Compare-and-swap attempts that may lose to other hosts' writes before a call gives up. */
export const TXN_ATTEMPTS = 20;

/** A compare that holds while the key (or every key with the prefix) does not exist. */
export const absent = (key: string): Compare => ({
  key,
  target: "createRevision",
  result: "=",
  operand: "0",
});

/** A compare that holds while no key with the prefix was written after `revision`. */
export const unchangedSince = (key: string, revision: string, prefix = false): Compare => ({
  key,
  ...(prefix ? { prefix } : {}),
  target: "modRevision",
  result: "<",
  operand: String(BigInt(revision) + 1n),
});

/** A compare that holds while the key's value is `value`. */
export const holds = (key: string, value: string): Compare => ({
  key,
  target: "value",
  result: "=",
  operand: value,
});
