import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import {
  chunkInto,
  Codecs,
  MaxZstdOriginalBytes,
  decode,
  encode,
  type Frame,
  HeaderBytes,
  MaxChunkBytes,
  SealTagBytes,
  MaxFrameBytes,
  MaxManifestBytes,
  MaxTextBytes,
} from "../src/Frames.js"

const u32 = fc.integer({ min: 0, max: 0xffff_ffff })
const safe = fc.maxSafeNat()
/** Text that fits MaxTextBytes (at most 4 UTF-8 bytes per code point) and is well-formed Unicode. */
const text = fc.string({ unit: "binary", maxLength: MaxTextBytes / 4 })

const manifestPart = fc
  .record({
    bytes: fc.uint8Array({ minLength: 1, maxLength: 300 }),
    offset: fc.integer({ min: 0, max: MaxManifestBytes }),
    slack: fc.nat(),
  })
  .map(({ bytes, offset, slack }): Frame => {
    const start = Math.min(offset, MaxManifestBytes - bytes.length)
    return {
      _tag: "ManifestPart",
      offset: start,
      total: Math.min(start + bytes.length + slack, MaxManifestBytes),
      bytes,
    }
  })

const frame: fc.Arbitrary<Frame> = fc.oneof(
  manifestPart,
  fc.subarray<string>([...Codecs]).map((codecs): Frame => ({ _tag: "Accept", codecs })),
  fc
    .record({
      file: u32,
      offset: safe,
      size: fc.integer({ min: 1, max: MaxZstdOriginalBytes }),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 300 }),
    })
    .map((f): Frame => ({ _tag: "Zstd", ...f })),
  text.map((reason): Frame => ({ _tag: "Reject", reason })),
  fc
    .record({ file: u32, offset: safe, bytes: fc.uint8Array({ minLength: 1, maxLength: 300 }) })
    .map((f): Frame => ({ _tag: "Chunk", ...f })),
  fc
    .record({ file: u32, size: safe, sha256: fc.uint8Array({ minLength: 32, maxLength: 32 }) })
    .map((f): Frame => ({ _tag: "FileEnd", ...f })),
  safe.map((bytes): Frame => ({ _tag: "Ack", bytes })),
  fc.constant<Frame>({ _tag: "Done" }),
  text.map((message): Frame => ({ _tag: "Error", message })),
  fc.record({ file: u32, reason: text }).map((f): Frame => ({ _tag: "Skip", ...f })),
  fc.record({ file: u32, offset: safe }).map((f): Frame => ({ _tag: "ResumeFrom", ...f })),
)

/** A header with the given fields, followed by `payload`. */
const raw = (type: number, a: number, b: bigint, payload: Uint8Array, len = payload.length): Uint8Array => {
  const out = new Uint8Array(HeaderBytes + payload.length)
  const view = new DataView(out.buffer)
  view.setUint8(0, type)
  view.setUint32(1, a)
  view.setBigUint64(5, b)
  view.setUint32(13, len)
  out.set(payload, HeaderBytes)
  return out
}

const reasonOf = (message: Uint8Array): string =>
  Either.match(decode(message), { onLeft: (e) => e.reason, onRight: (f) => `decoded ${f._tag}` })

/** Messages whose header is mostly plausible, so decoding gets past the first checks. */
const nearlyValid = fc
  .record({
    type: fc.integer({ min: 0, max: 11 }),
    a: fc.oneof(fc.constant(0), u32),
    b: fc.oneof(
      fc.constant(0n),
      fc.bigUint(2n ** 64n - 1n),
      fc.bigUint(BigInt(Number.MAX_SAFE_INTEGER) + 2n),
    ),
    payload: fc.oneof(
      fc.uint8Array({ maxLength: 40 }),
      fc.string({ unit: "binary", maxLength: 40 }).map((s) => new TextEncoder().encode(s)),
    ),
    lenDelta: fc.oneof(fc.constant(0), fc.integer({ min: -2, max: 2 })),
  })
  .map(({ type, a, b, payload, lenDelta }) =>
    raw(type, a, b, payload, Math.max(0, payload.length + lenDelta)),
  )

describe("Frames", () => {
  it.prop("decode(encode(f)) equals f for every frame type", [frame], ([f]) => {
    const bytes = encode(f)
    expect(bytes.length).toBeLessThanOrEqual(MaxFrameBytes)
    expect(decode(bytes)).toEqual(Either.right(f))
  })

  it.prop(
    "arbitrary bytes never throw: decode refuses them or they re-encode to the same bytes",
    [fc.oneof(fc.uint8Array({ maxLength: 80 }), nearlyValid)],
    ([bytes]) => {
      const result = decode(bytes)
      if (Either.isRight(result)) expect(encode(result.right)).toEqual(bytes)
      else expect(result.left._tag).toBe("FrameError")
    },
    { fastCheck: { numRuns: 2_000 } },
  )

  it("round-trips the largest frames", () => {
    const chunk: Frame = {
      _tag: "Chunk",
      file: 0xffff_ffff,
      offset: Number.MAX_SAFE_INTEGER,
      bytes: new Uint8Array(MaxChunkBytes).fill(7),
    }
    const part: Frame = {
      _tag: "ManifestPart",
      total: MaxManifestBytes,
      offset: MaxManifestBytes - 65536,
      bytes: new Uint8Array(65536).fill(1),
    }
    for (const f of [chunk, part]) expect(decode(encode(f))).toEqual(Either.right(f))
    expect(encode(part).length).toBe(MaxFrameBytes)
  })

  it("carries a manifest of MaxManifestBytes in ManifestPart slices, as the sender cuts it", () => {
    const manifest = new Uint8Array(MaxManifestBytes).map((_, i) => i % 251)
    const received = new Uint8Array(MaxManifestBytes)
    let slices = 0
    for (let offset = 0; offset < manifest.length; offset += MaxChunkBytes) {
      const bytes = manifest.subarray(offset, offset + MaxChunkBytes)
      const part = Either.getOrThrow(
        decode(encode({ _tag: "ManifestPart", total: manifest.length, offset, bytes })),
      )
      if (part._tag !== "ManifestPart") throw new Error(`decoded ${part._tag}`)
      expect([part.total, part.offset]).toEqual([manifest.length, offset])
      received.set(part.bytes, part.offset)
      slices++
    }
    expect(slices).toBe(Math.ceil(MaxManifestBytes / MaxChunkBytes))
    expect(Buffer.from(received).equals(Buffer.from(manifest))).toBe(true)
  })

  it("keeps codec names an Accept lists, known or not, so it re-encodes to the same bytes", () => {
    const message = raw(2, 0, 0n, new TextEncoder().encode("lz4,zstd"))
    expect(decode(message)).toEqual(Either.right({ _tag: "Accept", codecs: ["lz4", "zstd"] }))
    expect(decode(raw(2, 0, 0n, new Uint8Array(0)))).toEqual(Either.right({ _tag: "Accept", codecs: [] }))
  })

  it("returns Chunk and ManifestPart payloads as views of the message, not copies", () => {
    const message = encode({ _tag: "Chunk", file: 1, offset: 2, bytes: new Uint8Array([1, 2, 3]) })
    const f = Either.getOrThrow(decode(message))
    expect(f._tag === "Chunk" && f.bytes.buffer).toBe(message.buffer)
    expect(f._tag === "Chunk" && f.bytes.byteOffset).toBe(HeaderBytes)
  })

  it("chunkInto lays out the same bytes as encode, with the payload left to the caller", () => {
    const bytes = new Uint8Array([9, 8, 7, 6])
    const frame = chunkInto(new Uint8Array(HeaderBytes + bytes.length), 3, 2 ** 40 + 5)
    frame.set(bytes, HeaderBytes)
    expect(frame).toEqual(encode({ _tag: "Chunk", file: 3, offset: 2 ** 40 + 5, bytes }))
    const shared = new Uint8Array(2 * (HeaderBytes + 2))
    chunkInto(shared.subarray(HeaderBytes + 2), 1, 7)
    expect(shared.subarray(0, HeaderBytes + 2).every((b) => b === 0)).toBe(true)
    expect(() => chunkInto(new Uint8Array(HeaderBytes), 0, 0)).toThrow(RangeError)
    expect(() => chunkInto(new Uint8Array(HeaderBytes + MaxChunkBytes + SealTagBytes + 1), 0, 0)).toThrow(
      RangeError,
    )
    expect(() => chunkInto(new Uint8Array(HeaderBytes + 1), -1, 0)).toThrow(RangeError)
    expect(() => chunkInto(new Uint8Array(HeaderBytes + 1), 0, Number.MAX_SAFE_INTEGER + 1)).toThrow(
      RangeError,
    )
  })

  it("encode refuses frames decode would reject", () => {
    const bad: ReadonlyArray<Frame> = [
      { _tag: "Chunk", file: 0, offset: 0, bytes: new Uint8Array(0) },
      { _tag: "Chunk", file: 2 ** 32, offset: 0, bytes: new Uint8Array(1) },
      { _tag: "Chunk", file: 0, offset: 0.5, bytes: new Uint8Array(1) },
      { _tag: "FileEnd", file: 0, size: 1, sha256: new Uint8Array(31) },
      { _tag: "Ack", bytes: -1 },
      { _tag: "ManifestPart", total: 0, offset: 0, bytes: new Uint8Array(1) },
      { _tag: "ManifestPart", total: 2, offset: 1, bytes: new Uint8Array(2) },
      { _tag: "Skip", file: 2 ** 32, reason: "gone" },
      { _tag: "Skip", file: -1, reason: "gone" },
    ]
    for (const f of bad) expect(() => encode(f), f._tag).toThrow(RangeError)
  })

  it("cuts a long text at a character boundary instead of refusing it", () => {
    const reason = "é".repeat(MaxTextBytes) // 2 bytes each
    const decoded = Either.getOrThrow(decode(encode({ _tag: "Reject", reason })))
    expect(decoded).toEqual({ _tag: "Reject", reason: "é".repeat(MaxTextBytes / 2) })
    const emoji = Either.getOrThrow(decode(encode({ _tag: "Error", message: `x${"😀".repeat(300)}` })))
    expect(emoji).toEqual({ _tag: "Error", message: `x${"😀".repeat(255)}` })
    const skip = Either.getOrThrow(
      decode(encode({ _tag: "Skip", file: 3, reason: "é".repeat(MaxTextBytes) })),
    )
    expect(skip).toEqual({ _tag: "Skip", file: 3, reason: "é".repeat(MaxTextBytes / 2) })
  })

  it("keeps a leading byte order mark in text", () => {
    expect(decode(encode({ _tag: "Error", message: "\ufeffboom" }))).toEqual(
      Either.right({ _tag: "Error", message: "\ufeffboom" }),
    )
  })

  const none = new Uint8Array(0)
  const rejections: ReadonlyArray<readonly [string, Uint8Array, RegExp]> = [
    ["empty message", none, /shorter than the 17-byte header/],
    ["16 bytes", new Uint8Array(16), /shorter than the 17-byte header/],
    [
      "oversized, checked before the type",
      new Uint8Array(MaxFrameBytes + 1),
      /larger than the 65553-byte limit/,
    ],
    ["oversized chunk frame", raw(4, 0, 0n, new Uint8Array(MaxFrameBytes - HeaderBytes + 1)), /larger than/],
    ["type 0", raw(0, 0, 0n, none), /unknown frame type 0/],
    ["type 12", raw(12, 0, 0n, none), /unknown frame type 12/],
    ["Zstd with no bytes", raw(11, 0, 0n, new Uint8Array(4)), /Zstd: payload of 4 bytes/],
    [
      "Zstd standing for more than its cap",
      raw(11, 0, 0n, new Uint8Array([0, 0x10, 0, 1, 7])),
      new RegExp(`Zstd: original length ${MaxZstdOriginalBytes + 1} is outside`),
    ],
    ["Zstd standing for nothing", raw(11, 0, 0n, new Uint8Array([0, 0, 0, 0, 7])), /original length 0/],
    ["type 255", raw(255, 0, 0n, none), /unknown frame type 255/],
    ["truncated chunk", raw(4, 0, 0n, new Uint8Array(10), 11), /length field says 11 .* carries 10/],
    ["extra bytes", raw(2, 0, 0n, new Uint8Array(1), 0), /length field says 0 .* carries 1/],
    [
      "b above MAX_SAFE_INTEGER",
      raw(6, 0, BigInt(Number.MAX_SAFE_INTEGER) + 1n, none),
      /exceeds Number.MAX_SAFE/,
    ],
    ["b = 2^64 - 1", raw(5, 0, 2n ** 64n - 1n, new Uint8Array(32)), /exceeds Number.MAX_SAFE/],
    ["empty chunk", raw(4, 0, 0n, none), /Chunk: payload of 0 bytes is outside 1\.\.64528/],
    [
      "chunk over MaxChunkBytes plus a seal tag",
      raw(4, 0, 0n, new Uint8Array(MaxChunkBytes + SealTagBytes + 1)),
      /Chunk: payload of 64529/,
    ],
    ["short hash", raw(5, 0, 10n, new Uint8Array(31)), /FileEnd: payload of 31 bytes is outside 32\.\.32/],
    ["long hash", raw(5, 0, 10n, new Uint8Array(33)), /FileEnd: payload of 33/],
    ["Accept with invalid UTF-8", raw(2, 0, 0n, new Uint8Array([0xff])), /Accept: text is not valid UTF-8/],
    ["Accept with a", raw(2, 1, 0n, none), /Accept: field a must be 0/],
    ["Done with b", raw(7, 0, 5n, none), /Done: field b must be 0/],
    ["Ack with a", raw(6, 3, 5n, none), /Ack: field a must be 0/],
    ["Ack with a payload", raw(6, 0, 5n, new Uint8Array(8)), /Ack: payload of 8/],
    [
      "Reject with invalid UTF-8",
      raw(3, 0, 0n, new Uint8Array([0x61, 0xff])),
      /Reject: text is not valid UTF-8/,
    ],
    [
      "Error with an overlong encoding",
      raw(8, 0, 0n, new Uint8Array([0xc0, 0xaf])),
      /Error: text is not valid UTF-8/,
    ],
    ["Error with a UTF-8 surrogate", raw(8, 0, 0n, new Uint8Array([0xed, 0xa0, 0x80])), /not valid UTF-8/],
    [
      "Reject text too long",
      raw(3, 0, 0n, new Uint8Array(MaxTextBytes + 1).fill(0x61)),
      /Reject: payload of 1025/,
    ],
    ["Skip with b", raw(9, 1, 5n, none), /Skip: field b must be 0/],
    ["Skip with invalid UTF-8", raw(9, 1, 0n, new Uint8Array([0x61, 0xff])), /Skip: text is not valid UTF-8/],
    [
      "Skip reason too long",
      raw(9, 1, 0n, new Uint8Array(MaxTextBytes + 1).fill(0x61)),
      /Skip: payload of 1025/,
    ],
    ["ResumeFrom with a payload", raw(10, 1, 5n, new Uint8Array(1)), /ResumeFrom: payload of 1 bytes/],
    ["manifest size 0", raw(1, 0, 0n, new Uint8Array(1)), /ManifestPart: manifest size 0 is outside/],
    [
      "manifest over the cap",
      raw(1, MaxManifestBytes + 1, 0n, new Uint8Array(1)),
      new RegExp(`manifest size ${MaxManifestBytes + 1} is outside`),
    ],
    ["manifest part past its size", raw(1, 10, 8n, new Uint8Array(3)), /bytes 8\.\.11 run past its size 10/],
    ["empty manifest part", raw(1, 10, 0n, none), /ManifestPart: payload of 0 bytes/],
  ]
  it.each(rejections)("rejects %s", (_, message, reason) => {
    expect(reasonOf(message)).toMatch(reason)
  })

  it("accepts the edges next to those rejections", () => {
    expect(reasonOf(raw(6, 0, BigInt(Number.MAX_SAFE_INTEGER), none))).toBe("decoded Ack")
    expect(reasonOf(raw(4, 0, 0n, new Uint8Array(MaxChunkBytes)))).toBe("decoded Chunk")
    expect(reasonOf(raw(1, 10, 7n, new Uint8Array(3)))).toBe("decoded ManifestPart")
    expect(reasonOf(raw(3, 0, 0n, new Uint8Array(MaxTextBytes).fill(0x61)))).toBe("decoded Reject")
    expect(reasonOf(raw(3, 0, 0n, none))).toBe("decoded Reject")
    expect(reasonOf(raw(9, 0xffff_ffff, 0n, new Uint8Array(MaxTextBytes).fill(0x61)))).toBe("decoded Skip")
  })

  it("decodes a message that is a view into a larger buffer", () => {
    const inner = encode({ _tag: "Ack", bytes: 42 })
    const big = new Uint8Array(inner.length + 10)
    big.set(inner, 5)
    expect(decode(big.subarray(5, 5 + inner.length))).toEqual(Either.right({ _tag: "Ack", bytes: 42 }))
  })
})
