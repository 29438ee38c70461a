import { internal } from "../errors.ts";
import type { StateDocument } from "./model.ts";
import { type RecordChange, type RecordPath, recordOf } from "./records.ts";

/** A record as it was before the first write to it, to put back on rollback. */
interface Original {
  path: RecordPath;
  key: string;
  value: unknown;
}

const handles = new WeakMap<object, { draft: Draft; path: RecordPath }>();

const isObject = (value: unknown): value is object => typeof value === "object" && value !== null;

/**
 * A copy-on-write view of the state document for one change. Reading costs nothing; the first
 * write into a record replaces that record in the document with a copy (the original object
 * is never changed), so rolling back puts the originals back, and what a change touched is
 * known without comparing the whole document. A record the document held before a change is
 * therefore never changed in place: code may keep a reference to it across awaits.
 */
export class Draft {
  readonly #document: StateDocument;
  readonly #originals: Original[] = [];
  readonly #touched = new Set<string>();
  #open = true;
  readonly view: StateDocument;

  constructor(document: StateDocument) {
    this.#document = document;
    this.view = this.#handle([]) as StateDocument;
  }

  /** The records this change wrote to, in the order it first wrote to them. */
  get originals(): readonly Original[] {
    return this.#originals;
  }

  /** Puts back every record this change wrote to; the view stays usable for reading. */
  rollback(): void {
    restore(this.#document, this.#originals);
    this.#originals.length = 0;
    this.#touched.clear();
  }

  /** Ends the change: a later write through its view is a bug and throws. */
  close(): void {
    this.#open = false;
  }

  /** A value a change hands back, with any view into the document replaced by a plain copy. */
  export<T>(value: T): T {
    return this.#plain(value) as T;
  }

  #resolve(path: RecordPath): unknown {
    let value: unknown = this.#document;
    for (const key of path) {
      if (!isObject(value)) return undefined;
      value = (value as Record<string, unknown>)[key];
    }
    return value;
  }

  #handle(path: RecordPath): object {
    const target = this.#resolve(path) as object;
    const proxy = new Proxy(target, {
      get: (_target, property) => {
        const current = this.#resolve(path) as Record<string | symbol, unknown>;
        const value = current[property];
        // The allocator's snapshot is kept by the state manager, never by changes.
        if (
          typeof property === "symbol" ||
          !isObject(value) ||
          (path.length === 0 && property === "ipam")
        )
          return value;
        if (!Object.hasOwn(current, property)) return value;
        return this.#handle([...path, property]);
      },
      set: (_target, property, value) => {
        if (typeof property === "symbol") return false;
        this.#write([...path, property]);
        (this.#resolve(path) as Record<string, unknown>)[property] = this.#plain(value);
        return true;
      },
      deleteProperty: (_target, property) => {
        if (typeof property === "symbol") return false;
        this.#write([...path, property]);
        return Reflect.deleteProperty(this.#resolve(path) as object, property);
      },
      defineProperty: (_target, property, descriptor) => {
        if (typeof property === "symbol") return false;
        this.#write([...path, property]);
        const plain =
          "value" in descriptor
            ? { ...descriptor, value: this.#plain(descriptor.value) }
            : descriptor;
        return Reflect.defineProperty(this.#resolve(path) as object, property, plain);
      },
      has: (_target, property) => Reflect.has(this.#resolve(path) as object, property),
      ownKeys: () => Reflect.ownKeys(this.#resolve(path) as object),
      getOwnPropertyDescriptor: (_target, property) => {
        const descriptor = Reflect.getOwnPropertyDescriptor(
          this.#resolve(path) as object,
          property,
        );
        if (descriptor !== undefined && "value" in descriptor && isObject(descriptor.value))
          descriptor.value = this.#handle([...path, property as string]);
        return descriptor;
      },
    });
    handles.set(proxy, { draft: this, path });
    return proxy;
  }

  /** Before a write at `path`: copies the record it lies in, the first time only. */
  #write(path: RecordPath): void {
    if (!this.#open) throw internal("a state change wrote to the state after it returned");
    const record = recordOf(path);
    const key = record.join("\u0000");
    if (this.#touched.has(key)) return;
    this.#touched.add(key);
    const original = this.#resolve(record);
    this.#originals.push({ path: record, key, value: original });
    // A write inside the record (not of the record itself): give the document a copy to change.
    if (path.length > record.length && isObject(original))
      assign(this.#document, record, structuredClone(original));
  }

  /** A value stored through the view: views in it become plain copies of what they show. */
  #plain(value: unknown): unknown {
    if (!isObject(value)) return value;
    const handle = handles.get(value);
    if (handle !== undefined) return structuredClone(handle.draft.#resolve(handle.path));
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) value[i] = this.#plain(value[i]);
    } else if (Object.getPrototypeOf(value) === Object.prototype) {
      const record = value as Record<string, unknown>;
      for (const key of Object.keys(record)) record[key] = this.#plain(record[key]);
    }
    return value;
  }
}

/**
 * The records of a batch of changes: the first original of each, so a failed save can put the
 * whole batch back and the save can tell which records really changed.
 */
export class BatchLog {
  readonly #originals: Original[] = [];
  readonly #seen = new Set<string>();

  /** Takes over the records a successful change wrote to. */
  absorb(draft: Draft): void {
    for (const original of draft.originals) {
      if (this.#seen.has(original.key)) continue;
      this.#seen.add(original.key);
      this.#originals.push(original);
    }
  }

  /** The records whose value differs from before the batch, with their value now. */
  changes(document: StateDocument): RecordChange[] {
    const changes: RecordChange[] = [];
    for (const { path, value } of this.#originals) {
      const now = resolve(document, path);
      if (now === value) continue;
      if (JSON.stringify(now) === JSON.stringify(value)) continue;
      changes.push({ path, value: now });
    }
    return changes;
  }

  /** Puts the document back as it was before the batch. */
  rollback(document: StateDocument): void {
    restore(document, this.#originals);
  }
}

function resolve(document: StateDocument, path: RecordPath): unknown {
  let value: unknown = document;
  for (const key of path) {
    if (!isObject(value)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

function assign(document: StateDocument, path: RecordPath, value: unknown): void {
  let parent = document as unknown as Record<string, unknown>;
  for (const key of path.slice(0, -1)) {
    let next = parent[key];
    if (!isObject(next)) {
      next = {};
      parent[key] = next;
    }
    parent = next as Record<string, unknown>;
  }
  const last = path.at(-1) as string;
  if (value === undefined) delete parent[last];
  else parent[last] = value;
}

/** Newest first, so a record inside one replaced later is put back into the right object. */
function restore(document: StateDocument, originals: readonly Original[]): void {
  for (let i = originals.length - 1; i >= 0; i--) {
    const original = originals[i] as Original;
    const parent = resolve(document, original.path.slice(0, -1));
    if (!isObject(parent) && original.value === undefined) continue;
    assign(document, original.path, original.value);
  }
}
