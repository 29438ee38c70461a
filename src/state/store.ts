import { type FileHandle, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { internal } from "../errors.ts";
import { emptyState, type StateDocument } from "./model.ts";
import { applyChanges, type RecordChange } from "./records.ts";

/** Where the state document lives; a later multi-host store puts part of it in etcd. */
export interface Store {
  /** The saved document, or undefined when nothing was ever saved. */
  load(): Promise<StateDocument | undefined>;
  /**
   * Durably records a batch of changes (all or nothing): `changes` are the records it set or
   * removed, `document` the whole state after them.
   */
  save(document: StateDocument, changes: readonly RecordChange[]): Promise<void>;
  /** At shutdown: folds what the store keeps besides the document into it, lets go of files. */
  close?(document: StateDocument): Promise<void>;
}

const STATE_FILE = "state.json";
const JOURNAL_FILE = "state.journal";
const FORMAT_VERSION = 1;

/** A journal line: one saved batch, each record whole (no `value`: the record went). */
interface JournalEntry {
  v: number;
  changes: { path: string[]; value?: unknown }[];
}

/** Options of a {@link FileStore}; the defaults suit a plugin. */
export interface FileStoreOptions {
  /**
   * The journal is folded into a new snapshot once it holds this many bytes and as many as the
   * snapshot: a change then costs its own line plus, on average, at most as much again.
   */
  compactBytes?: number;
}

/**
 * A store in two files: `state.json`, a snapshot of the whole document replaced atomically
 * (temp file, fsync, rename, fsync of the directory), and `state.journal`, one JSON line per
 * saved batch holding only the records it changed, appended and fdatasync'd before the batch
 * is answered. Loading replays the journal over the snapshot; a torn last line (a crash in
 * the middle of an append, never answered) is dropped. Compaction writes the snapshot first
 * and only then empties the journal, and replaying a journal the snapshot already holds ends
 * in the same state, so a crash at any point between loses nothing and duplicates nothing.
 */
export class FileStore implements Store {
  readonly directory: string;
  readonly #compactBytes: number;
  #journal: FileHandle | undefined;
  /** Length of the journal's whole lines: what a failed append is cut back to. */
  #journalBytes = 0;
  /** A failed append may have left part of a line: cut it off before the next one. */
  #journalTorn = false;
  #snapshotBytes = 0;

  constructor(directory: string, options: FileStoreOptions = {}) {
    this.directory = directory;
    this.#compactBytes = options.compactBytes ?? 1024 * 1024;
  }

  async load(): Promise<StateDocument | undefined> {
    const snapshot = await this.#read(STATE_FILE);
    const journal = await this.#read(JOURNAL_FILE);
    if (snapshot === undefined && (journal === undefined || journal === "")) return undefined;
    let document: StateDocument;
    if (snapshot === undefined) {
      document = emptyState();
    } else {
      try {
        document = JSON.parse(snapshot) as StateDocument;
      } catch (error) {
        throw internal(`state file ${this.#path(STATE_FILE)} is not valid JSON`, error);
      }
      checkVersion(document?.version, this.#path(STATE_FILE));
      this.#snapshotBytes = Buffer.byteLength(snapshot);
    }
    if (journal !== undefined && journal !== "") {
      for (const entry of this.#entries(journal)) applyChanges(document, entry.changes);
      // Start from one clean file: the next append must not follow a torn line.
      await this.compact(document);
    }
    return document;
  }

  async save(document: StateDocument, changes: readonly RecordChange[]): Promise<void> {
    const entry: JournalEntry = {
      v: FORMAT_VERSION,
      changes: changes.map(({ path, value }) =>
        value === undefined ? { path: [...path] } : { path: [...path], value },
      ),
    };
    const line = `${JSON.stringify(entry)}\n`;
    try {
      const journal = await this.#openJournal();
      if (this.#journalTorn) {
        await journal.truncate(this.#journalBytes);
        this.#journalTorn = false;
      }
      this.#journalTorn = true;
      await journal.appendFile(line);
      await journal.datasync();
      this.#journalTorn = false;
      this.#journalBytes += Buffer.byteLength(line);
    } catch (error) {
      // The line may be on disk in part or whole: it is cut off before anything else is
      // appended, so a change answered as failed never comes back after a crash... unless the
      // cut itself fails; then the next save tries again first.
      await this.#cutTornLine();
      throw internal(`cannot save state in ${this.directory}: ${(error as Error).message}`, error);
    }
    if (this.#journalBytes >= Math.max(this.#compactBytes, this.#snapshotBytes)) {
      // The batch is durable already; a failed compaction leaves the journal as it was.
      await this.compact(document).catch(() => undefined);
    }
  }

  /** Writes the whole document as the new snapshot, then empties the journal. */
  async compact(document: StateDocument): Promise<void> {
    const text = JSON.stringify(document);
    await this.#writeSnapshot(text);
    this.#snapshotBytes = Buffer.byteLength(text);
    const journal = await this.#openJournal();
    await journal.truncate(0);
    await journal.datasync();
    this.#journalBytes = 0;
    this.#journalTorn = false;
  }

  /** Folds the journal into the snapshot and closes it: an older Switchyard reads it all. */
  async close(document: StateDocument): Promise<void> {
    try {
      await this.compact(document);
    } finally {
      await this.#journal?.close();
      this.#journal = undefined;
    }
  }

  /** Closes the journal without folding it, as a crash would leave it (tests, benchmarks). */
  async abandon(): Promise<void> {
    await this.#journal?.close();
    this.#journal = undefined;
  }

  #path(name: string): string {
    return join(this.directory, name);
  }

  async #read(name: string): Promise<string | undefined> {
    try {
      return await readFile(this.#path(name), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw internal(`cannot read state in ${this.directory}: ${(error as Error).message}`, error);
    }
  }

  /**
   * The journal's entries. A bad line is tolerated only at the end (an append a crash cut
   * short, never answered); one followed by good lines means the file was damaged.
   */
  *#entries(text: string): Generator<JournalEntry> {
    const lines = text.split("\n");
    let bad: number | undefined;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] as string;
      const complete = i < lines.length - 1;
      if (line === "" && !complete) break;
      const entry = complete ? parseEntry(line) : undefined;
      if (entry === undefined) {
        bad ??= i + 1;
        continue;
      }
      if (bad !== undefined) {
        throw internal(
          `state journal ${this.#path(JOURNAL_FILE)} is damaged at line ${bad} (good lines follow it)`,
        );
      }
      checkVersion(entry.v, `${this.#path(JOURNAL_FILE)} line ${i + 1}`);
      yield entry;
    }
  }

  async #openJournal(): Promise<FileHandle> {
    if (this.#journal !== undefined) return this.#journal;
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
    const journal = await open(this.#path(JOURNAL_FILE), "a", 0o600);
    // A new file's name is durable only once its directory is.
    await this.#syncDirectory();
    this.#journalBytes = (await journal.stat()).size;
    this.#journal = journal;
    return journal;
  }

  async #cutTornLine(): Promise<void> {
    try {
      if (this.#journal !== undefined && this.#journalTorn) {
        await this.#journal.truncate(this.#journalBytes);
        await this.#journal.datasync();
        this.#journalTorn = false;
      }
    } catch {
      // #journalTorn stays set: the next save cuts before it appends.
    }
  }

  async #writeSnapshot(text: string): Promise<void> {
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
    const target = this.#path(STATE_FILE);
    const temporary = `${target}.${process.pid}.tmp`;
    try {
      const file = await open(temporary, "w", 0o600);
      try {
        await file.writeFile(text);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temporary, target);
      // The rename is durable only once the directory entry itself is on disk.
      await this.#syncDirectory();
    } catch (error) {
      await rm(temporary, { force: true });
      throw internal(`cannot save state in ${this.directory}: ${(error as Error).message}`, error);
    }
  }

  async #syncDirectory(): Promise<void> {
    const directory = await open(this.directory, "r");
    try {
      await directory.sync();
    } finally {
      await directory.close();
    }
  }
}

function parseEntry(line: string): JournalEntry | undefined {
  try {
    const entry = JSON.parse(line) as JournalEntry;
    if (entry === null || typeof entry !== "object" || !Array.isArray(entry.changes))
      return undefined;
    for (const change of entry.changes) {
      if (!Array.isArray(change?.path) || change.path.length === 0) return undefined;
      if (!change.path.every((key) => typeof key === "string")) return undefined;
    }
    return entry;
  } catch {
    return undefined;
  }
}

function checkVersion(version: unknown, where: string): void {
  if (version !== FORMAT_VERSION) {
    throw internal(
      `state file ${where} has version ${String(version)}; this Switchyard reads version ${FORMAT_VERSION}`,
    );
  }
}
