import { Effect } from "effect"
import * as BlockReader from "./BlockReader.js"
import { Hasher } from "./Hasher.js"

/** Files prepared ahead of the one being sent, at most. */
const MaxFiles = 16
/** First blocks held by files prepared ahead: past this many bytes no more files are prepared. */
const MaxBytes = 4 * 1024 * 1024

export interface Lookahead {
  /**
   * The file at `position` in the list, if it was prepared ahead (undefined if not: the caller prepares
   * it); the files after it start being prepared. The caller closes what it takes.
   */
  readonly take: (position: number) => BlockReader.Prepared | undefined
}

/**
 * Opens the files to send a few ahead of the one being sent, and starts reading each one's first block:
 * per small file the open, the read and the stat each wait for the thread pool, and done one file
 * after another they leave the receiver idle. A file that fails ahead fails when its turn comes, as
 * its open or read. Files still prepared when the scope ends are closed.
 */
export const make = (files: ReadonlyArray<BlockReader.Options>) =>
  Effect.gen(function* () {
    const { allocate } = yield* Hasher
    /** By position in `files`, with the bytes of their first block. */
    const ahead = new Map<number, { readonly file: BlockReader.Prepared; readonly bytes: number }>()
    let next = 0
    let bytes = 0
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const { file } of ahead.values()) file.close()
        ahead.clear()
      }),
    )
    const lookahead: Lookahead = {
      take: (position) => {
        const taken = ahead.get(position)
        ahead.delete(position)
        bytes -= taken?.bytes ?? 0
        next = Math.max(next, position + 1)
        for (; next < files.length && ahead.size < MaxFiles && bytes < MaxBytes; next++) {
          const options = files[next]!
          const first = Math.min(options.size - options.from, BlockReader.blockBytes(options.chunkSize))
          ahead.set(next, { file: BlockReader.prepare(options, allocate, 1), bytes: first })
          bytes += first
        }
        return taken?.file
      },
    }
    return lookahead
  })
