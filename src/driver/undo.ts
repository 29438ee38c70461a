import type { Logger } from "pino";

/** Host changes made so far by one request, undone in reverse order if a later step fails. */
export class UndoList {
  readonly #steps: { what: string; undo: () => Promise<void> }[] = [];
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  push(what: string, undo: () => Promise<void>): void {
    this.#steps.push({ what, undo });
  }

  /** Undoes every step, logging (not throwing) failures so the original error is reported. */
  async rollback(): Promise<void> {
    for (const step of this.#steps.reverse()) {
      try {
        await step.undo();
      } catch (error) {
        this.#logger.error({ err: error, step: step.what }, "rollback step failed");
      }
    }
  }
}
