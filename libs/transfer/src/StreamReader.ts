import { Frames } from "@p2pal/domain"
import { Effect } from "effect"
import { blockBytes, type Block, type BlockReader, Unreadable } from "./BlockReader.js"
import { Hasher } from "./Hasher.js"
import { readFailure } from "./Io.js"

/** A source read once, front to back, of a size known only at its end: stdin (`send -`), a text. */
export interface StreamSource {
  readonly read: () => AsyncIterable<Uint8Array>
  /** The most it may hold: past it the sender stops it, as the receiver would. */
  readonly max: number
}

/** What StreamReader adds to a BlockReader: how long the source was, once `next` has said it ended. */
export interface StreamReader extends BlockReader {
  readonly size: () => number
}

/**
 * Reads a stream as blocks of chunk frames, as BlockReader reads a file. It asks its source for more only
 * when the sender asks for the next block, which waits for the ack window: a slow receiver slows the
 * reading, and memory holds one block and one piece of the source.
 */
export const open = (source: StreamSource, index: number, chunkSize: number) =>
  Effect.gen(function* () {
    const { allocate } = yield* Hasher
    const pieces = source.read()[Symbol.asyncIterator]()
    const waiting: Array<Uint8Array> = []
    let waitingBytes = 0
    let ended = false
    let at = 0
    const fill = async (want: number) => {
      while (!ended && waitingBytes < want) {
        const piece = await pieces.next()
        if (piece.done) ended = true
        else if (piece.value.length > 0) {
          waiting.push(piece.value)
          waitingBytes += piece.value.length
        }
      }
    }
    /** The next `length` bytes waiting, copied into the payloads of frames built in one buffer. */
    const block = (length: number): Block => {
      const count = Math.ceil(length / chunkSize)
      const buffer = allocate(length + count * Frames.HeaderBytes)
      const frames: Array<Uint8Array> = []
      for (let offset = 0, base = 0; offset < length; offset += chunkSize) {
        const size = Math.min(chunkSize, length - offset)
        frames.push(
          Frames.chunkInto(buffer.subarray(base, base + Frames.HeaderBytes + size), index, at + offset),
        )
        base += Frames.HeaderBytes + size
      }
      const payloads = frames.map((f) => f.subarray(Frames.HeaderBytes))
      let frame = 0
      let into = 0
      let left = length
      while (left > 0) {
        const piece = waiting[0]!
        const target = payloads[frame]!
        const n = Math.min(piece.length, target.length - into, left)
        target.set(piece.subarray(0, n), into)
        into += n
        left -= n
        if (into === target.length) [frame, into] = [frame + 1, 0]
        if (n === piece.length) waiting.shift()
        else waiting[0] = piece.subarray(n)
      }
      waitingBytes -= length
      const start = at
      at += length
      return { frames, payloads, start, end: at }
    }
    const reader: StreamReader = {
      next: Effect.tryPromise({
        try: async () => {
          const want = blockBytes(chunkSize)
          await fill(want)
          const length = Math.min(want, waitingBytes)
          if (length === 0) return undefined
          if (at + length > source.max)
            throw new Error(`it is longer than ${source.max} bytes, the most a pipe may carry`)
          return block(length)
        },
        catch: (e) => new Unreadable({ reason: readFailure(e) }),
      }),
      unchanged: Effect.void,
      size: () => at,
    }
    // Not awaited: an iterator still waiting for its next piece would finish its return only after it.
    yield* Effect.addFinalizer(() => Effect.sync(() => void pieces.return?.().catch(() => undefined)))
    return reader
  })
