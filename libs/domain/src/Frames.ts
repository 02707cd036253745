import { Data, Either } from "effect"
import { utf8Prefix } from "./Excerpt.js"

/**
 * Binary frames of the peer DataChannel. Every frame is a 17-byte big-endian header
 * (type u8 | a u32 | b u64 | len u32) followed by exactly `len` payload bytes.
 * What `a` and `b` mean depends on the type; a field a type does not use must be zero,
 * so every frame has exactly one encoding. The whole wire format stays in this one file (about
 * 300 lines), one codec per type, so it reads as a single table.
 */
export const HeaderBytes = 17
/** Largest chunk payload. */
export const MaxChunkBytes = 63 * 1024
/** An AES-256-GCM tag: with --encrypt each chunk carries one after its ciphertext. */
export const SealTagBytes = 16
/** No frame may exceed this. */
export const MaxFrameBytes = HeaderBytes + 64 * 1024
/** Largest file bytes one Zstd frame may stand for: the receiver's buffer for one frame is this big at most. */
export const MaxZstdOriginalBytes = 1024 * 1024
/** A Zstd payload starts with the original length (u32) in front of the compressed bytes. */
export const ZstdLengthBytes = 4
/** Codecs a receiver may list in its Accept, and the sender may use for file bytes. */
export const Codecs = ["zstd"] as const
export type CodecName = (typeof Codecs)[number]
/** Largest Reject / Error / Skip payload (UTF-8 bytes); longer texts are cut on encode. */
export const MaxTextBytes = 1024
/**
 * Room for ManifestPolicy.MaxEntries entries of about 170 bytes of JSON each (a path of about 130 bytes);
 * half as many entries may average twice that. Paths are at most 1024 bytes, so this is the tighter cap.
 */
export const MaxManifestBytes = 32 * 1024 * 1024

export type Frame =
  /** One slice of the UTF-8 JSON manifest: a = total manifest bytes, b = offset of this slice. */
  | {
      readonly _tag: "ManifestPart"
      readonly total: number
      readonly offset: number
      readonly bytes: Uint8Array
    }
  /**
   * The receiver accepts the manifest; payload = the codecs it decodes, comma-separated (none: empty,
   * as an older receiver sends it). Names are kept as sent: a later receiver may list ones a sender
   * does not know, which it ignores.
   */
  | { readonly _tag: "Accept"; readonly codecs: ReadonlyArray<string> }
  | { readonly _tag: "Reject"; readonly reason: string }
  /** a = file index (in manifest entries), b = byte offset in that file. */
  | { readonly _tag: "Chunk"; readonly file: number; readonly offset: number; readonly bytes: Uint8Array }
  /**
   * a = file index, b = byte offset in that file, payload = the original length `size` (u32, at most
   * MaxZstdOriginalBytes) then one zstd frame that decodes to exactly `size` bytes of the file there.
   * Sent only to a receiver whose Accept listed "zstd".
   */
  | {
      readonly _tag: "Zstd"
      readonly file: number
      readonly offset: number
      readonly size: number
      readonly bytes: Uint8Array
    }
  /** a = file index, b = file size, payload = SHA-256 of the file (32 bytes). */
  | { readonly _tag: "FileEnd"; readonly file: number; readonly size: number; readonly sha256: Uint8Array }
  /** b = cumulative bytes written by the receiver, those it held already when the transfer resumed included. */
  | { readonly _tag: "Ack"; readonly bytes: number }
  /** The receiver verified every file. */
  | { readonly _tag: "Done" }
  | { readonly _tag: "Error"; readonly message: string }
  /**
   * a = file index: the sender could not read that file (`send --skip-errors`), so it ends here
   * instead of with FileEnd; payload = why, in UTF-8.
   */
  | { readonly _tag: "Skip"; readonly file: number; readonly reason: string }
  /**
   * From the receiver, before Accept (which ends the list), when it resumes a transfer: a = file index,
   * b = bytes of that file it already holds; the file's size means it is verified and needs nothing.
   */
  | { readonly _tag: "ResumeFrom"; readonly file: number; readonly offset: number }

export class FrameError extends Data.TaggedError("FrameError")<{ readonly reason: string }> {}

type Tag = Frame["_tag"]
type FrameOf<T extends Tag> = Extract<Frame, { readonly _tag: T }>

/** A frame as it sits on the wire, before its type-specific meaning is applied. */
interface Wire {
  readonly a: number
  readonly b: number
  readonly payload: Uint8Array
}

interface Codec<T extends Tag> {
  readonly type: number
  /** Header fields this type gives a meaning to; the others must be zero. */
  readonly uses: "" | "a" | "b" | "ab"
  /** Inclusive bounds on the payload length. */
  readonly payload: readonly [min: number, max: number]
  toWire(frame: FrameOf<T>): Wire
  /** The frame, or why the wire form is invalid (header ranges and payload bounds already hold). */
  fromWire(wire: Wire): FrameOf<T> | string
}

/** fatal: reject invalid UTF-8; ignoreBOM: keep a leading U+FEFF so decode/encode round-trips exactly. */
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
const encoder = new TextEncoder()
const noPayload = new Uint8Array(0)

/** The text, or undefined if the bytes are not valid UTF-8. */
const utf8 = (payload: Uint8Array): string | undefined => {
  try {
    return decoder.decode(payload)
  } catch {
    return undefined
  }
}
const notUtf8 = "text is not valid UTF-8"

const bare = <T extends "Done">(tag: T, type: number): Codec<T> => ({
  type,
  uses: "",
  payload: [0, 0],
  toWire: () => ({ a: 0, b: 0, payload: noPayload }),
  fromWire: () => ({ _tag: tag }) as FrameOf<T>,
})

const text = <T extends "Reject" | "Error">(
  tag: T,
  type: number,
  field: T extends "Reject" ? "reason" : "message",
): Codec<T> => ({
  type,
  uses: "",
  payload: [0, MaxTextBytes],
  toWire: (frame) => ({
    a: 0,
    b: 0,
    payload: utf8Prefix((frame as Record<string, string>)[field]!, MaxTextBytes),
  }),
  fromWire: ({ payload }) => {
    const value = utf8(payload)
    return value === undefined ? notUtf8 : ({ _tag: tag, [field]: value } as FrameOf<T>)
  },
})

const codecs: { readonly [T in Tag]: Codec<T> } = {
  ManifestPart: {
    type: 1,
    uses: "ab",
    payload: [1, MaxFrameBytes - HeaderBytes],
    toWire: (f) => ({ a: f.total, b: f.offset, payload: f.bytes }),
    fromWire: ({ a: total, b: offset, payload: bytes }) =>
      total < 1 || total > MaxManifestBytes
        ? `manifest size ${total} is outside 1..${MaxManifestBytes}`
        : offset + bytes.length > total
          ? `manifest bytes ${offset}..${offset + bytes.length} run past its size ${total}`
          : { _tag: "ManifestPart", total, offset, bytes },
  },
  Accept: {
    type: 2,
    uses: "",
    payload: [0, MaxTextBytes],
    toWire: (f) => ({ a: 0, b: 0, payload: encoder.encode(f.codecs.join(",")) }),
    fromWire: ({ payload }) => {
      const list = utf8(payload)
      if (list === undefined) return notUtf8
      return { _tag: "Accept", codecs: list === "" ? [] : list.split(",") }
    },
  },
  Reject: text("Reject", 3, "reason"),
  Chunk: {
    type: 4,
    uses: "ab",
    payload: [1, MaxChunkBytes + SealTagBytes],
    toWire: (f) => ({ a: f.file, b: f.offset, payload: f.bytes }),
    // Whether offset + length fits the file is the receiver's check: it knows the declared size.
    fromWire: ({ a: file, b: offset, payload: bytes }) => ({ _tag: "Chunk", file, offset, bytes }),
  },
  Zstd: {
    type: 11,
    uses: "ab",
    payload: [ZstdLengthBytes + 1, MaxFrameBytes - HeaderBytes],
    toWire: (f) => {
      const payload = new Uint8Array(ZstdLengthBytes + f.bytes.length)
      new DataView(payload.buffer).setUint32(0, f.size)
      payload.set(f.bytes, ZstdLengthBytes)
      return { a: f.file, b: f.offset, payload }
    },
    // Whether it decodes to `size` bytes, and they fit the file, is the receiver's check.
    fromWire: ({ a: file, b: offset, payload }) => {
      const size = new DataView(payload.buffer, payload.byteOffset).getUint32(0)
      return size < 1 || size > MaxZstdOriginalBytes
        ? `original length ${size} is outside 1..${MaxZstdOriginalBytes}`
        : { _tag: "Zstd", file, offset, size, bytes: payload.subarray(ZstdLengthBytes) }
    },
  },
  FileEnd: {
    type: 5,
    uses: "ab",
    payload: [32, 32],
    toWire: (f) => ({ a: f.file, b: f.size, payload: f.sha256 }),
    fromWire: ({ a: file, b: size, payload }) => ({ _tag: "FileEnd", file, size, sha256: payload.slice() }),
  },
  Ack: {
    type: 6,
    uses: "b",
    payload: [0, 0],
    toWire: (f) => ({ a: 0, b: f.bytes, payload: noPayload }),
    fromWire: ({ b: bytes }) => ({ _tag: "Ack", bytes }),
  },
  Done: bare("Done", 7),
  Error: text("Error", 8, "message"),
  Skip: {
    type: 9,
    uses: "a",
    payload: [0, MaxTextBytes],
    toWire: (f) => ({ a: f.file, b: 0, payload: utf8Prefix(f.reason, MaxTextBytes) }),
    // Whether the file is the one being sent is the receiver's check: it knows where the transfer is.
    fromWire: ({ a: file, payload }) => {
      const reason = utf8(payload)
      return reason === undefined ? notUtf8 : { _tag: "Skip", file, reason }
    },
  },
  ResumeFrom: {
    type: 10,
    uses: "ab",
    payload: [0, 0],
    toWire: (f) => ({ a: f.file, b: f.offset, payload: noPayload }),
    // Whether the file exists and holds that many bytes is the sender's check: it knows the manifest.
    fromWire: ({ a: file, b: offset }) => ({ _tag: "ResumeFrom", file, offset }),
  },
}

/** The table is typed per tag; code working on any frame sees the erased form. */
const codecOf = (tag: Tag): Codec<Tag> => codecs[tag] as Codec<any>

const byType = new Map<number, readonly [Tag, Codec<Tag>]>(
  (Object.keys(codecs) as Array<Tag>).map((tag) => [codecs[tag].type, [tag, codecOf(tag)]]),
)

const U32Max = 0xffff_ffff
const TwoPow32 = 0x1_0000_0000

/** The type-independent rules: header ranges, unused fields zero, payload length in bounds. */
const checkFields = (codec: Codec<Tag>, a: number, b: number, length: number): string | undefined => {
  if (!Number.isInteger(a) || a < 0 || a > U32Max) return `field a ${a} is not a u32`
  if (!Number.isSafeInteger(b) || b < 0) return `field b ${b} is not a safe non-negative integer`
  if (!codec.uses.includes("a") && a !== 0) return `field a must be 0, got ${a}`
  if (!codec.uses.includes("b") && b !== 0) return `field b must be 0, got ${b}`
  const [min, max] = codec.payload
  if (!Number.isInteger(length) || length < min || length > max)
    return `payload of ${length} bytes is outside ${min}..${max}`
  return undefined
}

/** Everything decode checks after the header; encode runs it too, so it never emits a frame decode refuses. */
const validate = (codec: Codec<Tag>, wire: Wire): Frame | string =>
  checkFields(codec, wire.a, wire.b, wire.payload.length) ?? codec.fromWire(wire)

const writeHeader = (out: Uint8Array, type: number, a: number, b: number, len: number): void => {
  const view = new DataView(out.buffer, out.byteOffset, HeaderBytes)
  view.setUint8(0, type)
  view.setUint32(1, a)
  view.setUint32(5, Math.floor(b / TwoPow32))
  view.setUint32(9, b % TwoPow32)
  view.setUint32(13, len)
}

/** Encodes a frame; throws a RangeError (a defect) for a frame that `decode` would reject. */
export const encode = (frame: Frame): Uint8Array => {
  const codec = codecOf(frame._tag)
  const wire = codec.toWire(frame)
  const problem = validate(codec, wire)
  if (typeof problem === "string") throw new RangeError(`cannot encode ${frame._tag}: ${problem}`)
  const out = new Uint8Array(HeaderBytes + wire.payload.length)
  writeHeader(out, codec.type, wire.a, wire.b, wire.payload.length)
  out.set(wire.payload, HeaderBytes)
  return out
}

/**
 * Hot path for the sender: writes a Chunk header at the start of `frame`, whose remaining
 * `frame.length - HeaderBytes` bytes are the payload the caller fills (e.g. reads the file straight
 * into). The caller owns the memory, so many frames can share one buffer.
 */
export const chunkInto = (frame: Uint8Array, file: number, offset: number): Uint8Array => {
  const length = frame.length - HeaderBytes
  const problem = checkFields(codecOf("Chunk"), file, offset, length)
  if (problem !== undefined) throw new RangeError(`cannot write a Chunk header: ${problem}`)
  writeHeader(frame, codecs.Chunk.type, file, offset, length)
  return frame
}

const fail = (reason: string) => Either.left(new FrameError({ reason }))

/** Decodes one DataChannel message. Chunk, Zstd and ManifestPart bytes are views into `message`, not copies. */
export const decode = (message: Uint8Array): Either.Either<Frame, FrameError> => {
  if (message.length < HeaderBytes)
    return fail(`frame of ${message.length} bytes is shorter than the ${HeaderBytes}-byte header`)
  if (message.length > MaxFrameBytes)
    return fail(`frame of ${message.length} bytes is larger than the ${MaxFrameBytes}-byte limit`)
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength)
  const entry = byType.get(view.getUint8(0))
  if (entry === undefined) return fail(`unknown frame type ${view.getUint8(0)}`)
  const [tag, codec] = entry
  const high = view.getUint32(5)
  if (high > Math.floor(Number.MAX_SAFE_INTEGER / TwoPow32))
    return fail(`${tag}: field b exceeds Number.MAX_SAFE_INTEGER`)
  const len = view.getUint32(13)
  const payload = message.subarray(HeaderBytes)
  if (len !== payload.length)
    return fail(`${tag}: length field says ${len} payload bytes but the frame carries ${payload.length}`)
  const frame = validate(codec, { a: view.getUint32(1), b: high * TwoPow32 + view.getUint32(9), payload })
  return typeof frame === "string" ? fail(`${tag}: ${frame}`) : Either.right(frame)
}
