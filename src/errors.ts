/** The classes of failure Switchyard reports; each maps to one `{"Err": …}` answer. */
export type ErrorKind = "BadRequest" | "NotFound" | "Conflict" | "Exhausted" | "Internal";

/** An error whose message is written for the person running `docker network …`. */
export class SwitchyardError extends Error {
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.name = `${kind}Error`;
  }
}

/** The request itself is wrong (bad CIDR, bad option value, malformed body). */
export const badRequest = (message: string): SwitchyardError =>
  new SwitchyardError("BadRequest", message);
/** The request names a network, endpoint, pool or interface that does not exist. */
export const notFound = (message: string): SwitchyardError =>
  new SwitchyardError("NotFound", message);
/** The request clashes with something that exists (overlap, address in use). */
export const conflict = (message: string): SwitchyardError =>
  new SwitchyardError("Conflict", message);
/** A pool has no address (or a space no pool) left. */
export const exhausted = (message: string): SwitchyardError =>
  new SwitchyardError("Exhausted", message);
/** Something failed on the host; the message says what was being done. */
export const internal = (message: string, cause?: unknown): SwitchyardError =>
  new SwitchyardError("Internal", message, { cause });
