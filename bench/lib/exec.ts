/** Running host commands and the docker client for the benchmarks (argv, never a shell). */
import { execa } from "execa";

/**
 * Whichever docker client is first on PATH (make puts the client of the Docker release under
 * test there), negotiating the API version with the daemon.
 */
export const DOCKER = "docker";
const TIMEOUT_MS = 180_000;

/** How a command ended. */
export interface Outcome {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs `argv` and reports how it ended without throwing on a non-zero exit. */
export async function runMayFail(
  argv: readonly string[],
  options: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {},
): Promise<Outcome> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error("empty command");
  const result = await execa(file, args, {
    env: options.env,
    input: options.input,
    reject: false,
    timeout: options.timeoutMs ?? TIMEOUT_MS,
  });
  if (result.exitCode === undefined) {
    throw new Error(`cannot run ${argv.join(" ")}: ${result.shortMessage ?? result.message}`);
  }
  return {
    exitCode: result.exitCode,
    stdout: String(result.stdout ?? "").trim(),
    stderr: String(result.stderr ?? "").trim(),
  };
}

/** Runs `argv`; returns trimmed stdout, throws with argv and stderr on a non-zero exit. */
export async function run(
  argv: readonly string[],
  options: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {},
): Promise<string> {
  const outcome = await runMayFail(argv, options);
  if (outcome.exitCode !== 0) {
    throw new Error(
      `${argv.join(" ")} failed (exit ${outcome.exitCode}): ${outcome.stderr || outcome.stdout}`,
    );
  }
  return outcome.stdout;
}

/** `docker ARGS…` with the 20.10 client; throws on failure. */
export function docker(args: readonly string[], timeoutMs?: number): Promise<string> {
  return run([DOCKER, ...args], { timeoutMs });
}

/** `docker ARGS…` with the 20.10 client; reports failure instead of throwing. */
export function dockerMayFail(args: readonly string[], timeoutMs?: number): Promise<Outcome> {
  return runMayFail([DOCKER, ...args], { timeoutMs });
}
