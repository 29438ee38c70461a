/** Finding Docker Compose v2 for the tests that drive it. */

import { execa } from "execa";

/** Compose v2 as scripts/docker-release.sh unpacks it (it also runs standalone). */
const COMPOSE_CANDIDATES = [
  process.env.COMPOSE,
  "/opt/switchyard/docker-28/cli-plugins/docker-compose",
  "/usr/libexec/docker/cli-plugins/docker-compose",
  "/usr/local/lib/docker/cli-plugins/docker-compose",
].filter((path): path is string => path !== undefined && path !== "");

export async function findCompose(): Promise<string> {
  for (const candidate of COMPOSE_CANDIDATES) {
    const outcome = await execa(candidate, ["version"], { reject: false });
    if (outcome.exitCode === 0 && /version v?2\./.test(String(outcome.stdout))) return candidate;
  }
  throw new Error(
    `this test needs Docker Compose v2: run \`make docker\` (scripts/docker-release.sh fetches Debian's docker-compose), or set COMPOSE=/path/to/docker-compose; looked in ${COMPOSE_CANDIDATES.join(", ")}`,
  );
}
