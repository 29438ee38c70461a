import { badRequest } from "../errors.ts";

/**
 * Docker's names for what Switchyard knows only by ID. The plugin never asks Docker (calling
 * the Docker API from a plugin deadlocks dockerd at start-up); the host-side status command
 * sends `docker network inspect` output along with its request instead.
 */
export interface DockerNames {
  /** Network ID → network name. */
  networks: ReadonlyMap<string, string>;
  /** Endpoint ID → name of the container the endpoint belongs to. */
  containers: ReadonlyMap<string, string>;
}

/** No names known: the views fall back to short IDs. */
export const NO_NAMES: DockerNames = { networks: new Map(), containers: new Map() };

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * Names from the JSON array `docker network inspect NET…` prints (each network's `Id`, `Name`
 * and `Containers` map of `{Name, EndpointID}`). An empty body (`{}`) means no names; fields
 * other than those are ignored, so any Docker version's output fits.
 */
export function namesFromInspect(body: unknown): DockerNames {
  if (isObject(body) && Object.keys(body).length === 0) return NO_NAMES;
  if (!Array.isArray(body)) {
    throw badRequest(
      "the status request body must be the output of `docker network inspect` (a JSON array), or empty",
    );
  }
  const networks = new Map<string, string>();
  const containers = new Map<string, string>();
  for (const network of body) {
    if (!isObject(network)) continue;
    const { Id: id, Name: name, Containers: attached } = network;
    if (typeof id === "string" && typeof name === "string") networks.set(id, name);
    if (!isObject(attached)) continue;
    for (const container of Object.values(attached)) {
      if (!isObject(container)) continue;
      const { EndpointID: endpointId, Name: containerName } = container;
      if (typeof endpointId === "string" && typeof containerName === "string")
        containers.set(endpointId, containerName);
    }
  }
  return { networks, containers };
}

export { shortId } from "../names.ts";
