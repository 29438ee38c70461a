/**
 * Conditions of the host that break container networking and that only the user can fix
 * (Docker's settings, another daemon's leftovers): kept for the status view, each logged once
 * when it appears.
 */
export class HostWarnings {
  readonly #current = new Map<string, string>();

  /** Sets (or, with undefined, clears) the warning under `key`; true when it is new or changed. */
  set(key: string, message: string | undefined): boolean {
    if (message === undefined) return this.#current.delete(key);
    if (this.#current.get(key) === message) return false;
    this.#current.set(key, message);
    return true;
  }

  /** The warnings in force, oldest first. */
  list(): string[] {
    return [...this.#current.values()];
  }
}
