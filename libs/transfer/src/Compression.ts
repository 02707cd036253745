import { Frames } from "@p2pal/domain"
import type { Block } from "./BlockReader.js"
import type { Zstd } from "./Zstd.js"

/** `send --compress`: auto compresses what pays, zstd everything that shrinks, none nothing. */
export const Modes = ["auto", "zstd", "none"] as const
export type Mode = (typeof Modes)[number]
/** zstd's fast end: on loopback the WebAssembly build's level 1 already trails the link on text. */
export const DefaultLevel = 1

export interface CompressOptions {
  readonly mode: Mode
  readonly level: number
}

/** Why `auto` sent a file's bytes as they are. */
export type RawReason = "already compressed" | "incompressible"

/** Below this original/compressed ratio a run goes raw: saving under ~10 % of the link is not worth the CPU. */
const MinRatio = 1.1
/** A compressed run must fit one frame, with room for the original length. */
const MaxCompressedBytes = Frames.MaxFrameBytes - Frames.HeaderBytes - Frames.ZstdLengthBytes
/** A block this small (a small file, or a file's tail) goes raw: a frame's overhead eats what zstd saves. */
const SmallBytes = 4096
/** An incompressible file is sampled again after this much, in case it changes character. */
const ResampleBytes = 64 * 1024 * 1024

const compressedExtensions = new Set(
  (
    "zip gz tgz bz2 tbz xz txz zst tzst lz4 lzma br 7z rar jar apk war whl deb rpm dmg " +
    "docx xlsx pptx odt ods odp epub jpg jpeg png gif webp heic heif avif jxl " +
    "mp4 m4v m4a mkv webm mov avi mp3 aac ogg oga opus flac wma wmv"
  ).split(" "),
)

/** Magic numbers of formats that are compressed already; `at` is where the bytes sit in the file. */
const magics: ReadonlyArray<{ readonly at: number; readonly bytes: ReadonlyArray<number> }> = [
  [0x50, 0x4b, 0x03, 0x04], // zip (and docx, jar, apk, ...)
  [0x1f, 0x8b], // gzip
  [0x28, 0xb5, 0x2f, 0xfd], // zstd
  [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], // xz
  [0x42, 0x5a, 0x68], // bzip2
  [0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c], // 7z
  [0x52, 0x61, 0x72, 0x21], // rar
  [0x04, 0x22, 0x4d, 0x18], // lz4
  [0xff, 0xd8, 0xff], // jpeg
  [0x89, 0x50, 0x4e, 0x47], // png
  [0x47, 0x49, 0x46, 0x38], // gif
  [0x1a, 0x45, 0xdf, 0xa3], // matroska, webm
  [0x4f, 0x67, 0x67, 0x53], // ogg
  [0x66, 0x4c, 0x61, 0x43], // flac
]
  .map((bytes) => ({ at: 0, bytes }))
  .concat([{ at: 4, bytes: [0x66, 0x74, 0x79, 0x70] }]) // ISO media: mp4, mov, heic, avif

/** Whether a file's name or first bytes say it is compressed already. */
export const alreadyCompressed = (path: string, head: Uint8Array): boolean => {
  const dot = path.lastIndexOf(".")
  if (dot > path.lastIndexOf("/") && compressedExtensions.has(path.slice(dot + 1).toLowerCase())) return true
  return magics.some(({ at, bytes }) => bytes.every((b, i) => head[at + i] === b))
}

/** Turns the blocks of one file into the frames that go on the wire. */
export interface Packer {
  /** The frames for `block`: its own Chunk frames (the very array when it goes raw), Zstd frames, or a mix. */
  readonly pack: (block: Block) => ReadonlyArray<Uint8Array>
}

/** Smoothed bytes per second: recent samples count most, one odd sample does not swing it. */
const smooth = (old: number | undefined, sample: number) =>
  old === undefined ? sample : old * 0.7 + sample * 0.3

/**
 * What `auto` weighs, in bytes per second, as the sender measures them: the compressor's intake and the
 * link's rate in wire bytes, taken while the link kept the sender waiting. When the link moves raw bytes
 * faster than the compressor takes them in, compressing would slow the transfer (like `zstd --adapt`).
 */
export class Speeds {
  compressor: number | undefined = undefined
  link: number | undefined = undefined
  compressed(bytes: number, seconds: number) {
    if (seconds > 0) this.compressor = smooth(this.compressor, bytes / seconds)
  }
  linkBound(wire: number, seconds: number) {
    if (seconds > 0) this.link = smooth(this.link, wire / seconds)
  }
  get linkFaster() {
    return this.compressor !== undefined && this.link !== undefined && this.link > this.compressor
  }
}

/** While the link outruns the compressor, one block in this many is compressed anyway, to keep measuring it. */
const ProbeEvery = 8

const raw: Packer = { pack: (block) => block.frames }

/**
 * The packer for file `index` (`path` in the manifest). `zstd` is undefined when nothing may be
 * compressed (the receiver offered no codec, --compress none, --encrypt). `onRaw` hears once why auto
 * sends the file raw.
 */
export const packer = (
  options: CompressOptions,
  zstd: Zstd | undefined,
  speeds: Speeds,
  index: number,
  path: string,
  onRaw: (reason: RawReason) => void,
): Packer => {
  if (zstd === undefined || options.mode === "none") return raw
  const auto = options.mode === "auto"
  let first = true
  /** Auto found the file compressed already: it all goes raw. */
  let rawFile = false
  let reported = false
  const report = (reason: RawReason) => {
    if (!reported) onRaw(reason)
    reported = true
  }
  /** Original over compressed bytes of the last run compressed: sizes the next run to fit one frame. */
  let ratio = 4
  /** Auto found the file incompressible: bytes sent raw since, until it samples again. */
  let rawSince: number | undefined
  /** Blocks sent raw in a row because the link outran the compressor. */
  let outrun = 0

  /** Chunks `from` to `to` of the block as one Zstd frame if they shrink enough and fit, else as they are. */
  const run = (block: Block, from: number, to: number): ReadonlyArray<Uint8Array> => {
    const payloads = block.payloads.slice(from, to)
    const original = Buffer.concat(payloads)
    const compressed = zstd.compress(original, options.level)
    ratio = original.length / compressed.length
    if (compressed.length > MaxCompressedBytes || ratio < MinRatio) return block.frames.slice(from, to)
    // Every chunk of a block but its last is full.
    const offset = block.start + from * block.payloads[0]!.length
    return [Frames.encode({ _tag: "Zstd", file: index, offset, size: original.length, bytes: compressed })]
  }

  /** The block as runs of as many chunks as should compress into one frame at the last ratio seen. */
  const compress = (block: Block) => {
    const frames: Array<Uint8Array> = []
    const count = block.payloads.length
    for (let from = 0; from < count;) {
      const to = Math.min(count, from + Math.max(1, Math.floor(ratio * 0.8)))
      frames.push(...run(block, from, to))
      from = to
    }
    return frames
  }

  return {
    pack: (block) => {
      if (first && auto && alreadyCompressed(path, block.payloads[0] ?? new Uint8Array(0))) {
        report("already compressed")
        rawFile = true
      }
      first = false
      if (rawFile || block.end - block.start < SmallBytes) return block.frames
      if (rawSince !== undefined) {
        rawSince += block.end - block.start
        if (rawSince < ResampleBytes) return block.frames
        rawSince = undefined
      }
      if (auto && speeds.linkFaster && ++outrun % ProbeEvery !== 0) return block.frames
      outrun = 0
      const frames = compress(block)
      if (auto) {
        const wire = frames.reduce((sum, f) => sum + f.length, 0)
        if ((block.end - block.start) / wire < MinRatio) {
          report("incompressible")
          rawSince = 0
        }
      }
      return frames
    },
  }
}
