import type { StateDocument } from "./model.ts";

/**
 * Where one record of the state document lives: `["endpoints", id]`, `["networks", id]`,
 * `["cluster", "networks", vni]`, `["ipam", "pools", poolId]`, or a field of the document or
 * of its cluster part (`["cluster", "hostId"]`). A change is saved as the records it touched,
 * so what a save writes grows with the change, not with the host.
 */
export type RecordPath = readonly string[];

/** One record after a batch of changes: its new value, or `undefined` when it went. */
export interface RecordChange {
  path: RecordPath;
  value?: unknown;
}

/**
 * The record a property belongs to: an entry of one of the document's keyed collections, or
 * else the property itself. A write anywhere inside a record copies that record (and only it).
 */
export function recordOf(path: RecordPath): RecordPath {
  const [top, second] = path;
  let depth = 1;
  if (top === "networks" || top === "endpoints") depth = 2;
  else if (top === "cluster") depth = second === "networks" ? 3 : 2;
  else if (top === "ipam") depth = second === "pools" ? 3 : 2;
  return path.length <= depth ? path : path.slice(0, depth);
}

/**
 * Applies changes in order. Setting a record makes the objects on its way if missing; removing
 * one under a missing object does nothing. Replaying a journal over a snapshot that already
 * holds it (a crash between writing the snapshot and emptying the journal) therefore ends in
 * that snapshot again: every change carries the whole record, never a difference.
 */
export function applyChanges(document: StateDocument, changes: readonly RecordChange[]): void {
  for (const { path, value } of changes) {
    let parent = document as unknown as Record<string, unknown>;
    const last = path.length - 1;
    let missing = false;
    for (let i = 0; i < last; i++) {
      const key = path[i] as string;
      let next = parent[key];
      if (next === null || typeof next !== "object") {
        if (value === undefined) {
          missing = true;
          break;
        }
        next = {};
        parent[key] = next;
      }
      parent = next as Record<string, unknown>;
    }
    if (missing) continue;
    const key = path[last] as string;
    if (value === undefined) delete parent[key];
    else parent[key] = value;
  }
}

/** Shorter paths first: a batch that replaced the cluster part and one of its networks. */
export function byDepth(a: RecordChange, b: RecordChange): number {
  return a.path.length - b.path.length;
}
