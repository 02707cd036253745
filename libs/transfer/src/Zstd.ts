import * as wasm from "@bokuweb/zstd-wasm"
import { Effect } from "effect"
import * as zlib from "node:zlib"

/**
 * zstd for file bytes: node:zlib's where the running Node has it (22.15 and later), else the WebAssembly
 * build of @bokuweb/zstd-wasm (no install script, nothing downloaded). Each call is one whole zstd frame.
 */
export interface Zstd {
  /** Which implementation runs, for the README's claim and the bench. */
  readonly library: string
  readonly compress: (bytes: Uint8Array, level: number) => Uint8Array
  /**
   * Exactly `size` bytes, or undefined if `bytes` are not a zstd frame of `size` bytes. Never holds more
   * than `size` bytes of output, however large the frame claims or turns out to be: a bomb stops there.
   */
  readonly decompress: (bytes: Uint8Array, size: number) => Uint8Array | undefined
}

/** Levels this p2pal offers: zstd's negative ones and those over 19 (slow, memory hungry) are left out. */
export const MinLevel = 1
export const MaxLevel = 19

const Magic = 0xfd2fb528

/**
 * The content size a zstd frame header declares: a number, "absent" when the header leaves it out, or
 * undefined when the bytes do not start with a zstd frame header (RFC 8878, section 3.1.1.1).
 */
export const declaredSize = (bytes: Uint8Array): number | "absent" | undefined => {
  if (bytes.length < 5) return undefined
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (view.getUint32(0, true) !== Magic) return undefined
  const descriptor = view.getUint8(4)
  if ((descriptor & 0x08) !== 0) return undefined
  const singleSegment = (descriptor & 0x20) !== 0
  const fieldBytes = [singleSegment ? 1 : 0, 2, 4, 8][descriptor >> 6]!
  const at = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][descriptor & 0x03]!
  if (fieldBytes === 0) return "absent"
  if (bytes.length < at + fieldBytes) return undefined
  switch (fieldBytes) {
    case 1:
      return view.getUint8(at)
    case 2:
      return view.getUint16(at, true) + 256
    case 4:
      return view.getUint32(at, true)
    default:
      return Number(view.getBigUint64(at, true))
  }
}

/** Whether a zstd frame header allows no more than `size` bytes out: it declares exactly that, or nothing. */
const fits = (bytes: Uint8Array, size: number) => {
  const declared = declaredSize(bytes)
  return declared === "absent" || declared === size
}

/** What node:zlib has from Node 22.15 on; @types/node 20 does not describe it. */
interface ZlibZstd {
  readonly zstdCompressSync: (bytes: Uint8Array, options: object) => Buffer
  readonly zstdDecompressSync: (bytes: Uint8Array, options: object) => Buffer
}

const fromZlib = (z: ZlibZstd, levelParam: number): Zstd => ({
  library: `node:zlib (Node ${process.versions.node})`,
  compress: (bytes, level) =>
    z.zstdCompressSync(bytes, { params: { [levelParam]: level }, pledgedSrcSize: bytes.length }),
  decompress: (bytes, size) => {
    if (!fits(bytes, size)) return undefined
    try {
      // maxOutputLength: zlib stops, and throws, at the first byte past it.
      const out = z.zstdDecompressSync(bytes, { maxOutputLength: size })
      return out.length === size ? out : undefined
    } catch {
      return undefined
    }
  },
})

const fromWasm: Zstd = {
  library: "@bokuweb/zstd-wasm 0.0.27 (WebAssembly)",
  compress: (bytes, level) => wasm.compress(bytes, level),
  decompress: (bytes, size) => {
    // The library sizes its output buffer by the header's content size (or by defaultHeapSize when the
    // header has none), and ZSTD_decompress fails rather than write past that buffer.
    if (!fits(bytes, size)) return undefined
    try {
      const out = wasm.decompress(bytes, { defaultHeapSize: size })
      return out.length === size ? out : undefined
    } catch {
      return undefined
    }
  },
}

const load = async (): Promise<Zstd> => {
  const z = zlib as unknown as Partial<ZlibZstd> & { constants: Record<string, number> }
  const levelParam = z.constants["ZSTD_c_compressionLevel"]
  if (z.zstdCompressSync !== undefined && z.zstdDecompressSync !== undefined && levelParam !== undefined)
    return fromZlib(z as ZlibZstd, levelParam)
  await wasm.init()
  return fromWasm
}

let loaded: Promise<Zstd> | undefined

/** The process's zstd, loaded once (the WebAssembly module compiles on first use). */
export const zstd: Effect.Effect<Zstd> = Effect.promise(() => (loaded ??= load()))
