import { Frames } from "@p2pal/domain"
import { Effect } from "effect"
import * as BlockReader from "./BlockReader.js"
import { Hasher } from "./Hasher.js"
import * as SmallReads from "./SmallReads.js"

/** Files prepared ahead of the one being sent, at most; refilled once half of them are taken. */
export const MaxFiles = 64
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
 * after another they leave the receiver idle. Small files (BlockReader.isSmall) go to the reading
 * thread instead, a refill's worth in one trip. A file that fails ahead fails when its turn comes, as
 * its open or read. Files still prepared when the scope ends are closed.
 */
export const make = (files: ReadonlyArray<BlockReader.Options>) =>
  Effect.gen(function* () {
    const hasher = yield* Hasher
    const reads = yield* SmallReads.make
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
    const refill = () => {
      const small: Array<number> = []
      for (; next < files.length && ahead.size + small.length < MaxFiles && bytes < MaxBytes; next++) {
        const options = files[next]!
        const first = Math.min(options.size - options.from, BlockReader.blockBytes(options.chunkSize))
        bytes += first
        if (BlockReader.isSmall(options)) small.push(next)
        else ahead.set(next, { file: BlockReader.prepare(options, hasher, 1), bytes: first })
      }
      if (small.length === 0) return
      const read = reads.read(
        small.map((i) => ({ path: files[i]!.source.path, size: files[i]!.size, offset: Frames.HeaderBytes })),
      )
      small.forEach((position, i) =>
        ahead.set(position, {
          file: BlockReader.prepareRead(files[position]!, read[i]!),
          bytes: files[position]!.size,
        }),
      )
    }
    const lookahead: Lookahead = {
      take: (position) => {
        const taken = ahead.get(position)
        ahead.delete(position)
        bytes -= taken?.bytes ?? 0
        next = Math.max(next, position + 1)
        if (ahead.size < MaxFiles / 2) refill()
        return taken?.file
      },
    }
    return lookahead
  })
