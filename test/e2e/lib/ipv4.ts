/** IPv4 arithmetic for assertions about handed-out addresses. */

/** Converts dotted-quad text to a 32-bit unsigned number; throws on anything else. */
export function ipv4ToNumber(address: string): number {
  const parts = address.split(".");
  if (parts.length !== 4) throw new Error(`not an IPv4 address: "${address}"`);
  let value = 0;
  for (const part of parts) {
    const octet = Number(part);
    if (!/^\d{1,3}$/.test(part) || octet > 255)
      throw new Error(`not an IPv4 address: "${address}"`);
    value = value * 256 + octet;
  }
  return value;
}

/** True when `address` lies inside `cidr` (e.g. "10.231.1.128/25"). */
export function inCidr(address: string, cidr: string): boolean {
  const [base, lengthText] = cidr.split("/");
  const length = Number(lengthText);
  if (base === undefined || !Number.isInteger(length) || length < 0 || length > 32) {
    throw new Error(`not an IPv4 CIDR: "${cidr}"`);
  }
  const size = 2 ** (32 - length);
  const start = Math.floor(ipv4ToNumber(base) / size) * size;
  const value = ipv4ToNumber(address);
  return value >= start && value < start + size;
}
