import { internal } from "../../src/errors.ts";
import { emptyState, type StateDocument } from "../../src/state/model.ts";
import { applyChanges, type RecordChange } from "../../src/state/records.ts";
import type { Store } from "../../src/state/store.ts";

/**
 * A store in memory, for tests. It keeps its own copy built only from the changes it is given
 * and checks it against the whole document, so a change the state manager failed to see (a
 * record written past the copy-on-write view) fails the test that made it.
 */
export class MemoryStore implements Store {
  /** The saved state as JSON, compared by tests to see that a failed request changed nothing. */
  saved: string | undefined;
  saves = 0;
  failNextSave = false;

  async load(): Promise<StateDocument | undefined> {
    return this.saved === undefined ? undefined : (JSON.parse(this.saved) as StateDocument);
  }

  async save(document: StateDocument, changes: readonly RecordChange[]): Promise<void> {
    if (this.failNextSave) {
      this.failNextSave = false;
      throw internal("cannot save state: disk full (simulated)");
    }
    const copy = (await this.load()) ?? emptyState();
    applyChanges(copy, JSON.parse(JSON.stringify(changes)) as RecordChange[]);
    if (canonical(copy) !== canonical(document)) {
      throw internal(
        "the changes saved do not add up to the document: a change wrote past the state manager",
      );
    }
    this.saved = JSON.stringify(copy);
    this.saves += 1;
  }
}

/** JSON with object keys sorted, so two equal documents built in different orders compare equal. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) => {
    if (item === null || typeof item !== "object" || Array.isArray(item)) return item;
    return Object.fromEntries(
      Object.entries(item as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)),
    );
  });
}
