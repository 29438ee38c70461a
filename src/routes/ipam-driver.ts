import type { FastifyInstance } from "fastify";
import type { IpamDriver } from "../driver/ipam-driver.ts";
import {
  emptyBody,
  releaseAddressBody,
  releasePoolBody,
  requestAddressBody,
  requestPoolBody,
} from "../protocol/schemas.ts";
import type {
  ReleaseAddressRequest,
  ReleasePoolRequest,
  RequestAddressRequest,
  RequestAddressResponse,
  RequestPoolRequest,
  RequestPoolResponse,
} from "../protocol/wire.ts";

/** `/IpamDriver.*`: decode, call the IPAM driver, encode. */
export function registerIpamRoutes(app: FastifyInstance, ipam: IpamDriver): void {
  app.post("/IpamDriver.GetCapabilities", { schema: { body: emptyBody } }, async () => ({
    RequiresMACAddress: false,
    RequiresRequestReplay: false,
  }));

  app.post("/IpamDriver.GetDefaultAddressSpaces", { schema: { body: emptyBody } }, async () => {
    const spaces = ipam.defaultAddressSpaces();
    return { LocalDefaultAddressSpace: spaces.local, GlobalDefaultAddressSpace: spaces.global };
  });

  app.post<{ Body: RequestPoolRequest }>(
    "/IpamDriver.RequestPool",
    { schema: { body: requestPoolBody } },
    async (request): Promise<RequestPoolResponse> => {
      const body = request.body;
      const result = await ipam.requestPool({
        addressSpace: body.AddressSpace,
        pool: body.Pool,
        subPool: body.SubPool,
        v6: body.V6,
        options: body.Options,
      });
      return { PoolID: result.poolId, Pool: result.pool, Data: {} };
    },
  );

  app.post<{ Body: ReleasePoolRequest }>(
    "/IpamDriver.ReleasePool",
    { schema: { body: releasePoolBody } },
    async (request) => {
      await ipam.releasePool(request.body.PoolID);
      return {};
    },
  );

  app.post<{ Body: RequestAddressRequest }>(
    "/IpamDriver.RequestAddress",
    { schema: { body: requestAddressBody } },
    async (request): Promise<RequestAddressResponse> => {
      const body = request.body;
      const address = await ipam.requestAddress({
        poolId: body.PoolID,
        address: body.Address,
        options: body.Options,
      });
      return { Address: address, Data: {} };
    },
  );

  app.post<{ Body: ReleaseAddressRequest }>(
    "/IpamDriver.ReleaseAddress",
    { schema: { body: releaseAddressBody } },
    async (request) => {
      await ipam.releaseAddress(request.body.PoolID, request.body.Address);
      return {};
    },
  );
}
