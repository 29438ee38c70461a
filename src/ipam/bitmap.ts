/** Bits per chunk: 4,096 addresses cost 512 bytes once any one of them is allocated. */
export const CHUNK_BITS = 4096;
const CHUNK_SHIFT = 12n;
const CHUNK_MASK = BigInt(CHUNK_BITS - 1);
const CHUNK_BYTES = CHUNK_BITS / 8;

interface Chunk {
  readonly bytes: Uint8Array;
  /** Set bits in `bytes`, so full chunks are skipped without scanning them. */
  count: number;
}

const popcount8 = (byte: number): number => {
  let n = byte;
  n -= (n >> 1) & 0x55;
  n = (n & 0x33) + ((n >> 2) & 0x33);
  return (n + (n >> 4)) & 0x0f;
};

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * A set of bit positions in `[0, size)` stored as fixed-size chunks that exist only while they
 * hold a set bit, so a /64 costs nothing until used and a busy /16 costs about 8 KB.
 */
export class SparseBitmap {
  readonly size: bigint;
  readonly #chunks = new Map<bigint, Chunk>();
  #count = 0;

  constructor(size: bigint) {
    this.size = size;
  }

  /** How many bits are set. */
  get count(): number {
    return this.#count;
  }

  /** True when `bit` is set. */
  has(bit: bigint): boolean {
    const chunk = this.#chunks.get(bit >> CHUNK_SHIFT);
    if (chunk === undefined) return false;
    const offset = Number(bit & CHUNK_MASK);
    return ((chunk.bytes[offset >> 3] ?? 0) & (1 << (offset & 7))) !== 0;
  }

  /** Sets `bit`; returns false when it was set already. */
  set(bit: bigint): boolean {
    this.#checkRange(bit);
    const index = bit >> CHUNK_SHIFT;
    let chunk = this.#chunks.get(index);
    if (chunk === undefined) {
      chunk = { bytes: new Uint8Array(CHUNK_BYTES), count: 0 };
      this.#chunks.set(index, chunk);
    }
    const offset = Number(bit & CHUNK_MASK);
    const byte = chunk.bytes[offset >> 3] ?? 0;
    const mask = 1 << (offset & 7);
    if ((byte & mask) !== 0) return false;
    chunk.bytes[offset >> 3] = byte | mask;
    chunk.count++;
    this.#count++;
    return true;
  }

  /** Clears `bit`; returns false when it was clear already. Empty chunks are dropped. */
  clear(bit: bigint): boolean {
    const index = bit >> CHUNK_SHIFT;
    const chunk = this.#chunks.get(index);
    if (chunk === undefined) return false;
    const offset = Number(bit & CHUNK_MASK);
    const byte = chunk.bytes[offset >> 3] ?? 0;
    const mask = 1 << (offset & 7);
    if ((byte & mask) === 0) return false;
    chunk.bytes[offset >> 3] = byte & ~mask;
    chunk.count--;
    this.#count--;
    if (chunk.count === 0) this.#chunks.delete(index);
    return true;
  }

  /**
   * The lowest clear bit in `[from, to]`, or undefined. Costs one step per materialised chunk
   * in the way, never one per bit of the range: a missing chunk answers at once.
   */
  findClear(from: bigint, to: bigint): bigint | undefined {
    let position = from;
    while (position <= to) {
      const index = position >> CHUNK_SHIFT;
      const chunkStart = index << CHUNK_SHIFT;
      const chunk = this.#chunks.get(index);
      if (chunk === undefined) return position;
      const chunkLast = chunkStart + CHUNK_MASK;
      if (chunk.count < CHUNK_BITS) {
        const found = scanClear(
          chunk.bytes,
          Number(position - chunkStart),
          Number((to < chunkLast ? to : chunkLast) - chunkStart),
        );
        if (found !== -1) return chunkStart + BigInt(found);
      }
      position = chunkLast + 1n;
    }
    return undefined;
  }

  /** A deep copy. */
  clone(): SparseBitmap {
    const copy = new SparseBitmap(this.size);
    for (const [index, chunk] of this.#chunks) {
      copy.#chunks.set(index, { bytes: chunk.bytes.slice(), count: chunk.count });
    }
    copy.#count = this.#count;
    return copy;
  }

  /**
   * Plain JSON: chunk index (decimal) → base64 of the chunk's bytes, bit 0 of byte 0 first,
   * trailing zero bytes trimmed (a chunk holding only a gateway encodes as 4 characters).
   */
  encode(): Record<string, string> {
    const out: Record<string, string> = {};
    const indexes = [...this.#chunks.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const index of indexes) {
      const bytes = this.#chunks.get(index)?.bytes ?? new Uint8Array();
      let end = bytes.length;
      while (end > 0 && bytes[end - 1] === 0) end--;
      out[index.toString()] = Buffer.from(bytes.buffer, bytes.byteOffset, end).toString("base64");
    }
    return out;
  }

  /** Rebuilds a bitmap from {@link encode}'s output; throws Error naming the bad chunk. */
  static decode(size: bigint, encoded: Record<string, string>): SparseBitmap {
    const bitmap = new SparseBitmap(size);
    for (const [key, text] of Object.entries(encoded)) {
      if (!/^(0|[1-9][0-9]*)$/.test(key)) throw new Error(`chunk key "${key}" is not an index`);
      const index = BigInt(key);
      if (index << CHUNK_SHIFT >= size) throw new Error(`chunk ${key} lies beyond the range`);
      if (typeof text !== "string" || !BASE64.test(text) || text.length % 4 !== 0) {
        throw new Error(`chunk ${key} is not base64`);
      }
      const decoded = Buffer.from(text, "base64");
      if (decoded.length > CHUNK_BYTES) throw new Error(`chunk ${key} is too long`);
      const bytes = new Uint8Array(CHUNK_BYTES);
      bytes.set(decoded);
      let count = 0;
      for (const byte of bytes) count += popcount8(byte);
      if (count === 0) continue;
      const last = (index << CHUNK_SHIFT) + CHUNK_MASK;
      if (last >= size) {
        // The final chunk of a small range must not claim bits past its end.
        const validBits = Number(size - (index << CHUNK_SHIFT));
        if (scanSet(bytes, validBits) !== -1)
          throw new Error(`chunk ${key} sets bits past the end`);
      }
      bitmap.#chunks.set(index, { bytes, count });
      bitmap.#count += count;
    }
    return bitmap;
  }

  #checkRange(bit: bigint): void {
    if (bit < 0n || bit >= this.size) {
      throw new RangeError(`bit ${bit} is outside the bitmap [0, ${this.size})`);
    }
  }
}

/** The first clear bit in `[first, last]` of a chunk, or -1. */
function scanClear(bytes: Uint8Array, first: number, last: number): number {
  let bit = first;
  while (bit <= last) {
    const byte = bytes[bit >> 3] ?? 0;
    if (byte === 0xff) {
      bit = (bit | 7) + 1;
      continue;
    }
    if ((byte & (1 << (bit & 7))) === 0) return bit;
    bit++;
  }
  return -1;
}

/** The first set bit at or after `from`, or -1. */
function scanSet(bytes: Uint8Array, from: number): number {
  for (let bit = from; bit < bytes.length * 8; bit++) {
    if (((bytes[bit >> 3] ?? 0) & (1 << (bit & 7))) !== 0) return bit;
  }
  return -1;
}
