import { execa } from "execa";
import type { Logger } from "pino";
import { internal } from "../errors.ts";

/** What one command printed and how it ended. */
export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Options for one command run. */
export interface RunOptions {
  /** Text written to the command's standard input (e.g. an `ip -batch -` script). */
  input?: string;
  /** Resolve with the result instead of throwing when the exit code is not 0. */
  allowFailure?: boolean;
}

/** The single gateway through which Switchyard runs host commands. */
export type Runner = (argv: readonly string[], options?: RunOptions) => Promise<CommandResult>;

/** A command that exited non-zero; carries stderr so callers can classify it. */
export class CommandError extends Error {
  readonly argv: readonly string[];
  readonly stderr: string;
  readonly exitCode: number;

  constructor(argv: readonly string[], result: CommandResult) {
    super(`${argv.join(" ")} failed (exit ${result.exitCode}): ${result.stderr.trim()}`);
    this.argv = argv;
    this.stderr = result.stderr;
    this.exitCode = result.exitCode;
  }
}

const COMMAND_TIMEOUT_MS = 15_000;

/**
 * Builds the real runner: argument arrays only (never a shell), a timeout, one debug line
 * per command with argv, exit code and duration.
 */
export function createRunner(logger: Logger): Runner {
  return async (argv, options = {}) => {
    const [file, ...args] = argv;
    if (file === undefined) throw internal("empty command");
    const started = performance.now();
    const result = await execa(file, args, {
      input: options.input,
      reject: false,
      timeout: COMMAND_TIMEOUT_MS,
      stripFinalNewline: false,
    });
    const outcome: CommandResult = {
      stdout: String(result.stdout ?? ""),
      stderr: String(result.stderr ?? ""),
      exitCode: result.exitCode ?? (result.timedOut ? 124 : 1),
    };
    const durationMs = Math.round((performance.now() - started) * 10) / 10;
    logger.debug({ argv, exitCode: outcome.exitCode, durationMs }, "command");
    if (result.failed && result.exitCode === undefined) {
      throw internal(`cannot run ${file}: ${result.shortMessage ?? result.message}`, result);
    }
    if (outcome.exitCode !== 0 && !options.allowFailure) throw new CommandError(argv, outcome);
    return outcome;
  };
}
