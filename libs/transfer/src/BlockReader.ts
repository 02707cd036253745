import { Frames } from "@p2pal/domain"
import { Data, Effect } from "effect"
import { constants as fsConstants, type Stats } from "node:fs"
import * as fs from "node:fs/promises"
import { absorbPrefix, type FileHash, Hasher } from "./Hasher.js"
import { readFailure } from "./Io.js"
import type { ReadResult } from "./SmallReads.js"
import type { Source } from "./Sources.js"

type SmallReadDone = ReadResult & { _tag: "read" }

/** The source of the file being sent failed it; `reason` names no local path, the receiver hears it too. */
export class Unreadable extends Data.TaggedError("Unreadable")<{ readonly reason: string }> {}

const cannotRead = (e: unknown) => new Unreadable({ reason: readFailure(e) })

const changed = "it changed while being sent"

/** Chunks read from disk per read call: large reads keep the disk from idling the pump. */
const ChunksPerRead = 16
/** Reads in flight ahead of the one being sent. */
const ReadAhead = 4
/** Bytes of one block: what a file prepared ahead holds until its turn. */
export const blockBytes = (chunkSize: number) => chunkSize * ChunksPerRead

/**
 * A file this small (and sent from its start, in one chunk) is read whole by the reading thread
 * (SmallReads.ts), many in one trip, and its frames go out with other small files' (Outbox.ts).
 */
export const SmallFileBytes = 32 * 1024

export const isSmall = ({ source, size, from, chunkSize }: Options) =>
  source.stream === undefined && from === 0 && size <= Math.min(SmallFileBytes, chunkSize)

/** A run of chunk frames back to back in one buffer, for the file's bytes from `start` to `end`. */
export interface Block {
  readonly frames: ReadonlyArray<Uint8Array>
  /** Each frame's payload: the file's bytes. */
  readonly payloads: ReadonlyArray<Uint8Array>
  readonly start: number
  readonly end: number
}

export interface BlockReader {
  /** The next block in file order; undefined after the last. */
  readonly next: Effect.Effect<Block | undefined, Unreadable>
  /** After the last block: fails if the file grew, or was rewritten in place, since it was listed. */
  readonly unchanged: Effect.Effect<void, Unreadable>
}

export interface Options {
  readonly source: Source
  /** The file's index in the manifest and its size there. */
  readonly index: number
  readonly size: number
  /** Where sending starts: the bytes before it, which the receiver holds, go only to the hash. */
  readonly from: number
  readonly chunkSize: number
}

/**
 * A file opened, and its reads started, as plain promises the moment it is asked for: a file prepared
 * ahead of its turn (Lookahead.ts) costs the sender no wait on the thread pool when its turn comes.
 */
export interface Prepared {
  /** Feeds the bytes before `from` (a resume) to the hash; rejects if the file could not be opened. */
  readonly hashPrefix: (hash: FileHash) => Promise<void>
  /** Queues reads until `depth` blocks are in flight or the file is all asked for. */
  readonly readAhead: (depth: number) => void
  readonly reads: Array<Promise<Block>>
  /** The file's state once its last read is done, asked for then rather than when the sender gets there. */
  readonly statAfterLast: () => Promise<Pick<Stats, "size" | "mtimeMs">>
  /** A file only read loses nothing if closing it fails, so nothing waits for it either. */
  readonly close: () => void
}

export const prepare = (options: Options, hasher: Hasher, depth: number): Prepared => {
  const { source, index, size, chunkSize } = options
  // A symlink swapped in since the manifest was built is refused, not followed (O_NOFOLLOW), and a
  // FIFO cannot hang the open (O_NONBLOCK; it changes nothing for regular files).
  const handle = fs.open(source.path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK)
  // Awaited when the file's turn comes; this only keeps a failure before then from going unhandled.
  handle.catch(() => {})
  // One buffer holds a run of chunk frames back to back, and one readv fills their payloads in
  // place: file bytes are never copied into frames, and the run moves to the hashing thread whole.
  const readBlock = async (start: number, end: number): Promise<Block> => {
    const count = Math.ceil((end - start) / chunkSize)
    const block = hasher.allocate(end - start + count * Frames.HeaderBytes)
    const frames: Array<Uint8Array> = []
    for (let at = start, base = 0; at < end; at += chunkSize) {
      const length = Math.min(chunkSize, end - at)
      frames.push(Frames.chunkInto(block.subarray(base, base + Frames.HeaderBytes + length), index, at))
      base += Frames.HeaderBytes + length
    }
    const payloads = frames.map((f) => f.subarray(Frames.HeaderBytes))
    const { bytesRead } = await (await handle).readv(payloads, start)
    if (bytesRead !== end - start) throw new Error(changed)
    return { frames, payloads, start, end }
  }
  const reads: Array<Promise<Block>> = []
  let statAfterLast: Promise<Stats> | undefined
  let queued = options.from
  const readAhead = (depth: number) => {
    while (reads.length < depth && queued < size) {
      const end = Math.min(queued + blockBytes(chunkSize), size)
      const read = readBlock(queued, end)
      // Awaited in order by `next`; this only keeps a failure behind an earlier one from going unhandled.
      read.catch(() => {})
      reads.push(read)
      queued = end
      if (end === size) {
        statAfterLast = read.then(() => handle.then((h) => h.stat()))
        statAfterLast.catch(() => {})
      }
    }
  }
  readAhead(depth)
  return {
    hashPrefix: async (hash) => absorbPrefix(hasher, hash, await handle, options.from),
    readAhead,
    reads,
    statAfterLast: () => statAfterLast ?? handle.then((h) => h.stat()),
    close: () => void handle.then((h) => h.close()).catch(() => {}),
  }
}

/** A small file (see isSmall) as the reading thread read it: its one chunk frame, built in the same buffer. */
export const prepareRead = (options: Options, read: Promise<SmallReadDone>): Prepared => {
  const { index, size } = options
  const block = read.then(({ buffer, bytesRead }): Block => {
    if (bytesRead !== size) throw new Error(changed)
    const frame = Frames.chunkInto(new Uint8Array(buffer), index, 0)
    return { frames: [frame], payloads: [frame.subarray(Frames.HeaderBytes)], start: 0, end: size }
  })
  // Awaited when the file's turn comes; this only keeps a failure before then from going unhandled.
  block.catch(() => {})
  return {
    hashPrefix: () => Promise.resolve(),
    readAhead: () => {},
    reads: size === 0 ? [] : [block],
    statAfterLast: () => read,
    close: () => {},
  }
}

/**
 * Reads a file being sent as blocks of chunk frames, a few reads ahead of the network, taking it from
 * `prepared` if it was prepared ahead of its turn. The file closes with the scope.
 */
export const open = (options: Options & { readonly hash: FileHash }, prepared?: () => Prepared | undefined) =>
  Effect.gen(function* () {
    const { source, size, hash } = options
    const hasher = yield* Hasher
    const file = yield* Effect.acquireRelease(
      Effect.sync(() => prepared?.() ?? prepare(options, hasher, ReadAhead)),
      (p) => Effect.sync(p.close),
    )
    yield* Effect.tryPromise({ try: () => file.hashPrefix(hash), catch: cannotRead })
    file.readAhead(ReadAhead)
    const reader: BlockReader = {
      next: Effect.suspend(() => {
        const read = file.reads.shift()
        if (read === undefined) return Effect.succeed(undefined)
        return Effect.tryPromise({ try: () => read, catch: cannotRead }).pipe(
          Effect.map((block) => {
            file.readAhead(ReadAhead)
            return block
          }),
        )
      }),
      unchanged: Effect.gen(function* () {
        // A shrunk file already failed its read.
        const now = yield* Effect.tryPromise({ try: file.statAfterLast, catch: cannotRead })
        if (now.size !== size || now.mtimeMs !== source.mtimeMs)
          return yield* new Unreadable({ reason: changed })
      }),
    }
    return reader
  })
