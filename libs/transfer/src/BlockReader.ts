import { Frames } from "@p2pal/domain"
import { Data, Effect } from "effect"
import { constants as fsConstants, type Stats } from "node:fs"
import * as fs from "node:fs/promises"
import { absorbPrefix, type FileHash, Hasher } from "./Hasher.js"
import { readFailure } from "./Io.js"
import type { Source } from "./Sources.js"

/** The source of the file being sent failed it; `reason` names no local path, the receiver hears it too. */
export class Unreadable extends Data.TaggedError("Unreadable")<{ readonly reason: string }> {}

const cannotRead = (e: unknown) => new Unreadable({ reason: readFailure(e) })

const changed = "it changed while being sent"

/** Chunks read from disk per read call: large reads keep the disk from idling the pump. */
const ChunksPerRead = 16
/** Reads in flight ahead of the one being sent. */
const ReadAhead = 4

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
  /** Where sending starts: the bytes before it, which the receiver holds, go only to `hash`. */
  readonly from: number
  readonly chunkSize: number
  readonly hash: FileHash
}

/**
 * Opens a file being sent and reads it as blocks of chunk frames, a few reads ahead of the network.
 * The file closes with the scope.
 */
export const open = (options: Options) =>
  Effect.gen(function* () {
    const { source, index, size, chunkSize, hash } = options
    const hasher = yield* Hasher
    const handle = yield* Effect.acquireRelease(
      // A symlink swapped in since the manifest was built is refused, not followed (O_NOFOLLOW), and a
      // FIFO cannot hang the open (O_NONBLOCK; it changes nothing for regular files).
      Effect.tryPromise({
        try: () =>
          fs.open(source.path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK),
        catch: cannotRead,
      }),
      // A file only read loses nothing if closing it fails, so nothing waits for it either (a small file
      // would otherwise cost the next one a round trip to the thread pool).
      (h) => Effect.sync(() => void h.close().catch(() => {})),
    )
    yield* Effect.tryPromise({
      try: () => absorbPrefix(hasher, hash, handle, options.from),
      catch: cannotRead,
    })
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
      const { bytesRead } = await handle.readv(payloads, start)
      if (bytesRead !== end - start) throw new Error(changed)
      return { frames, payloads, start, end }
    }
    // Reads are plain promises started the moment they are queued (a forked fiber waits for the
    // scheduler, which stalled the pump for seconds per GiB), and a few run ahead of the network.
    const reads: Array<Promise<Block>> = []
    /** The file's state once the last read is done, asked for then rather than when the sender gets there. */
    let statAfterLast: Promise<Stats> | undefined
    let queued = options.from
    const readAhead = () => {
      while (reads.length < ReadAhead && queued < size) {
        const end = Math.min(queued + chunkSize * ChunksPerRead, size)
        const read = readBlock(queued, end)
        // Awaited in order by `next`; this only keeps a failure behind an earlier one from going unhandled.
        read.catch(() => {})
        reads.push(read)
        queued = end
        if (end === size) {
          statAfterLast = read.then(() => handle.stat())
          statAfterLast.catch(() => {})
        }
      }
    }
    readAhead()
    const reader: BlockReader = {
      next: Effect.suspend(() => {
        const read = reads.shift()
        if (read === undefined) return Effect.succeed(undefined)
        return Effect.tryPromise({ try: () => read, catch: cannotRead }).pipe(
          Effect.map((block) => {
            readAhead()
            return block
          }),
        )
      }),
      unchanged: Effect.gen(function* () {
        // A shrunk file already failed its read.
        const now = yield* Effect.tryPromise({ try: () => statAfterLast ?? handle.stat(), catch: cannotRead })
        if (now.size !== size || now.mtimeMs !== source.mtimeMs)
          return yield* new Unreadable({ reason: changed })
      }),
    }
    return reader
  })
