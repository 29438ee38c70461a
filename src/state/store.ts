import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { internal } from "../errors.ts";
import type { StateDocument } from "./model.ts";

/** Where the state document lives; a later multi-host store puts part of it in etcd. */
export interface Store {
  /** The saved document, or undefined when nothing was ever saved. */
  load(): Promise<StateDocument | undefined>;
  /** Durably replaces the saved document (all or nothing). */
  save(document: StateDocument): Promise<void>;
}

const STATE_FILE = "state.json";

/** A store in one JSON file, replaced atomically: temp file, fsync, rename, fsync of the directory. */
export class FileStore implements Store {
  readonly directory: string;

  constructor(directory: string) {
    this.directory = directory;
  }

  async load(): Promise<StateDocument | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.directory, STATE_FILE), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw internal(`cannot read state in ${this.directory}: ${(error as Error).message}`, error);
    }
    let document: StateDocument;
    try {
      document = JSON.parse(text) as StateDocument;
    } catch (error) {
      throw internal(`state file ${join(this.directory, STATE_FILE)} is not valid JSON`, error);
    }
    if (document.version !== 1) {
      throw internal(
        `state file ${join(this.directory, STATE_FILE)} has version ${String(document.version)}; this Switchyard reads version 1`,
      );
    }
    return document;
  }

  async save(document: StateDocument): Promise<void> {
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
    const target = join(this.directory, STATE_FILE);
    const temporary = `${target}.${process.pid}.tmp`;
    try {
      const file = await open(temporary, "w", 0o600);
      try {
        await file.writeFile(JSON.stringify(document));
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temporary, target);
      // The rename is durable only once the directory entry itself is on disk.
      const directory = await open(this.directory, "r");
      try {
        await directory.sync();
      } finally {
        await directory.close();
      }
    } catch (error) {
      await rm(temporary, { force: true });
      throw internal(`cannot save state in ${this.directory}: ${(error as Error).message}`, error);
    }
  }
}

/** A store in memory, for tests. */
export class MemoryStore implements Store {
  saved: string | undefined;
  saves = 0;
  failNextSave = false;

  async load(): Promise<StateDocument | undefined> {
    return this.saved === undefined ? undefined : (JSON.parse(this.saved) as StateDocument);
  }

  async save(document: StateDocument): Promise<void> {
    if (this.failNextSave) {
      this.failNextSave = false;
      throw internal("cannot save state: disk full (simulated)");
    }
    this.saved = JSON.stringify(document);
    this.saves += 1;
  }
}
