import {
  CommandError,
  type CommandResult,
  type Runner,
  type RunOptions,
} from "../../src/exec/runner.ts";

/** A runner for tests: records every call and answers from a script. */
export function createRecordingRunner(
  answer: (argv: readonly string[], input?: string) => Partial<CommandResult> = () => ({}),
): Runner & { calls: { argv: readonly string[]; input?: string }[] } {
  const calls: { argv: readonly string[]; input?: string }[] = [];
  const runner = async (argv: readonly string[], options: RunOptions = {}) => {
    calls.push({ argv, input: options.input });
    const result: CommandResult = {
      stdout: "",
      stderr: "",
      exitCode: 0,
      ...answer(argv, options.input),
    };
    if (result.exitCode !== 0 && !options.allowFailure) throw new CommandError(argv, result);
    return result;
  };
  return Object.assign(runner, { calls });
}
