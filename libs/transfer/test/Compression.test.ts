import { describe, expect, it } from "@effect/vitest"
import { Frames } from "@p2pal/domain"
import type { Block } from "@p2pal/transfer/BlockReader"
import * as Compression from "@p2pal/transfer/Compression"
import { declaredSize, zstd } from "@p2pal/transfer/Zstd"
import { Effect, Either, FastCheck as fc } from "effect"
import { randomBytes } from "node:crypto"

/** Log-like text: compresses well, as the "repetitive text" does. */
const text = (bytes: number) => {
  const lines: Array<string> = []
  for (let i = 0, length = 0; length < bytes; i++) {
    const line = `2026-12-07T18:00:${i % 60} INFO request ${i % 977} path=/api/items/${i % 131} status=200\n`
    lines.push(line)
    length += line.length
  }
  return Buffer.from(lines.join("")).subarray(0, bytes)
}

/** `bytes` of file `index` from `start` as BlockReader lays a block out: Chunk frames of `chunkSize`. */
const blockOf = (index: number, start: number, bytes: Uint8Array, chunkSize: number): Block => {
  const frames: Array<Uint8Array> = []
  for (let at = 0; at < bytes.length; at += chunkSize)
    frames.push(
      Frames.encode({
        _tag: "Chunk",
        file: index,
        offset: start + at,
        bytes: bytes.subarray(at, at + chunkSize),
      }),
    )
  const payloads = frames.map((f) => f.subarray(Frames.HeaderBytes))
  return { frames, payloads, start, end: start + bytes.length }
}

/** What a receiver makes of the frames: the file bytes, checked for order as Receiver.ts checks them. */
const unpack = (frames: ReadonlyArray<Uint8Array>, z: Effect.Effect.Success<typeof zstd>) => {
  const parts: Array<Uint8Array> = []
  let at = 0
  for (const message of frames) {
    const frame = Either.getOrThrow(Frames.decode(message))
    if (frame._tag !== "Chunk" && frame._tag !== "Zstd") throw new Error(`got ${frame._tag}`)
    expect(frame.offset).toBe(at)
    const bytes = frame._tag === "Chunk" ? frame.bytes : z.decompress(frame.bytes, frame.size)
    if (bytes === undefined) throw new Error(`a Zstd frame at ${frame.offset} did not decode`)
    parts.push(bytes)
    at += bytes.length
  }
  return Buffer.concat(parts)
}

const wireBytes = (frames: ReadonlyArray<Uint8Array>) => frames.reduce((sum, f) => sum + f.length, 0)
const options = (mode: Compression.Mode): Compression.CompressOptions => ({ mode, level: 1 })

describe("Compression", () => {
  it.effect("round-trips over arbitrary chunk and block boundaries, compressible or not", () =>
    Effect.gen(function* () {
      const z = yield* zstd
      const sample = Buffer.concat([text(150_000), randomBytes(60_000), text(100_000)])
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            fc.integer({ min: 1, max: sample.length }),
            // From 256 bytes: smaller chunks only make the run slower, not the boundaries any more arbitrary.
            fc.integer({ min: 256, max: Frames.MaxChunkBytes }),
            fc.array(fc.integer({ min: 1, max: 16 }), { minLength: 1, maxLength: 40 }),
            fc.constantFrom(...Compression.Modes),
            fc.boolean(),
            async (size, chunkSize, blockChunks, mode, linkFaster) => {
              const bytes = sample.subarray(0, size)
              const speeds = new Compression.Speeds()
              if (linkFaster) {
                speeds.compressed(1, 1)
                speeds.linkBound(2, 1)
              }
              const packer = Compression.packer(options(mode), z, speeds, 3, "data.log", () => {})
              const frames: Array<Uint8Array> = []
              for (let start = 0, i = 0; start < size; i++) {
                const end = Math.min(size, start + chunkSize * blockChunks[i % blockChunks.length]!)
                frames.push(...packer.pack(blockOf(3, start, bytes.subarray(start, end), chunkSize)))
                start = end
              }
              expect(unpack(frames, z).equals(bytes)).toBe(true)
              for (const f of frames) expect(f.length).toBeLessThanOrEqual(Frames.MaxFrameBytes)
            },
          ),
          { numRuns: 40 },
        ),
      )
    }),
  )

  it.effect("compresses text, and auto sends a .zip or random bytes as they are, saying why", () =>
    Effect.gen(function* () {
      const z = yield* zstd
      const logs = text(1_000_000)
      const pack = (mode: Compression.Mode, path: string, bytes: Uint8Array) => {
        const why: Array<Compression.RawReason> = []
        const packer = Compression.packer(options(mode), z, new Compression.Speeds(), 0, path, (reason) =>
          why.push(reason),
        )
        const frames = packer.pack(blockOf(0, 0, bytes, Frames.MaxChunkBytes))
        return { ratio: bytes.length / wireBytes(frames), why, frames }
      }
      expect(pack("auto", "app.log", logs).ratio).toBeGreaterThan(5)
      expect(pack("zstd", "app.log", logs).ratio).toBeGreaterThan(5)
      expect(pack("none", "app.log", logs).ratio).toBeLessThan(1)
      const zip = pack("auto", "logs.zip", logs)
      expect([zip.ratio < 1, zip.why]).toEqual([true, ["already compressed"]])
      const gzipMagic = Buffer.concat([Buffer.from([0x1f, 0x8b]), logs.subarray(2)])
      expect(pack("auto", "no-extension", gzipMagic).why).toEqual(["already compressed"])
      const random = pack("auto", "random.bin", randomBytes(1_000_000))
      expect([random.ratio < 1, random.why]).toEqual([true, ["incompressible"]])
      // --compress zstd is told to compress: it does not sort files, though a run that does not shrink goes raw.
      expect(pack("zstd", "logs.zip", logs).ratio).toBeGreaterThan(5)
    }),
  )

  it.effect(
    "auto sends raw while the link outruns the compressor, compressing one block in 8 to measure it",
    () =>
      Effect.gen(function* () {
        const z = yield* zstd
        const speeds = new Compression.Speeds()
        const packer = Compression.packer(options("auto"), z, speeds, 0, "app.log", () => {})
        const logs = text(3 * 16 * 1024)
        const kind = (i: number) =>
          Either.getOrThrow(Frames.decode(packer.pack(blockOf(0, i * logs.length, logs, 1024))[0]!))._tag
        expect(kind(0)).toBe("Zstd")
        speeds.compressed(100e6, 1)
        speeds.linkBound(50e6, 1)
        expect([kind(1), speeds.linkFaster]).toEqual(["Zstd", false])
        // A fast LAN: raw bytes go faster than zstd takes them in.
        for (let i = 0; i < 10; i++) speeds.linkBound(1e9, 1)
        expect(Array.from({ length: 16 }, (_, i) => kind(2 + i))).toEqual([
          ...Array(7).fill("Chunk"),
          "Zstd",
          ...Array(7).fill("Chunk"),
          "Zstd",
        ])
      }),
  )
})

describe("Zstd", () => {
  it.effect("decodes a frame only to exactly its declared size: a bomb stops at the cap", () =>
    Effect.gen(function* () {
      const z = yield* zstd
      const big = new Uint8Array(Frames.MaxZstdOriginalBytes)
      const bomb = z.compress(big, 19)
      expect(bomb.length).toBeLessThan(200)
      expect(declaredSize(bomb)).toBe(big.length)
      expect(z.decompress(bomb, big.length)?.length).toBe(big.length)
      expect(z.decompress(bomb, 1000)).toBeUndefined()
      expect(z.decompress(bomb, big.length + 1)).toBeUndefined()
      // With its content size left out of the header, the cap still holds.
      const unsized = Buffer.from(bomb)
      unsized[4] = unsized[4]! & 0x3f & ~0x20
      const withWindow = Buffer.concat([unsized.subarray(0, 5), Buffer.from([0x58]), bomb.subarray(9)])
      expect(declaredSize(withWindow)).toBe("absent")
      expect(z.decompress(withWindow, 1000)).toBeUndefined()
      expect(z.decompress(new Uint8Array([1, 2, 3, 4, 5, 6]), 10)).toBeUndefined()
      const two = Buffer.concat([z.compress(big.subarray(0, 10), 1), z.compress(big, 1)])
      expect(z.decompress(two, 10)).toBeUndefined()
    }),
  )
})
