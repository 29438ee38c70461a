import {
  type DockerApi,
  DockerApiError,
  type DockerEvent,
} from "../../src/discovery/docker-api.ts";

/**
 * A Docker API with containers on networks and an event stream the test feeds; a network
 * named in `missing` answers 404, as Docker does for one it no longer knows.
 */
export class FakeDocker implements DockerApi {
  readonly containers = new Map<string, unknown>();
  readonly networks = new Map<string, Record<string, { EndpointID: string; Name?: string }>>();
  readonly missing = new Set<string>();
  #listener: ((event: DockerEvent) => void) | undefined;

  async get(path: string): Promise<unknown> {
    const container = /^\/containers\/([^/]+)\/json$/.exec(path)?.[1];
    if (container !== undefined) {
      const found = this.containers.get(container);
      if (found === undefined) throw new DockerApiError(path, 404, "no such container");
      return found;
    }
    const network = /^\/networks\/([^/]+)$/.exec(path)?.[1];
    if (network !== undefined) {
      if (this.missing.has(network)) throw new DockerApiError(path, 404, "network not found");
      return { Containers: this.networks.get(network) ?? {} };
    }
    throw new Error(`unexpected ${path}`);
  }

  events(
    _filters: Record<string, string[]>,
    onEvent: (event: DockerEvent) => void,
    signal: AbortSignal,
  ): Promise<void> {
    this.#listener = onEvent;
    return new Promise((resolve) => signal.addEventListener("abort", () => resolve()));
  }

  emit(event: DockerEvent): void {
    this.#listener?.(event);
  }
}
