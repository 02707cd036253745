import type { PeerFailed } from "@p2pal/domain/Errors"
import type { Channel } from "@p2pal/infra/PeerLink"
import { RunBytes } from "@p2pal/infra/Stripes"
import { Effect } from "effect"

/**
 * Frames of small files, gathered until they fill a run (Stripes.RunBytes) and then sent together: the
 * lanes carry a run as one message, so a tree of small files costs one message per run rather than two
 * per file. Frames are copied in, so the caller may reuse their memory at once (the hasher recycles it).
 * Whatever goes to the channel by another way must wait for `flush`, or it would overtake these.
 */
export interface Outbox {
  /** Adds the frames after those waiting, sending those first if these would not fit in their run. */
  readonly post: (frames: ReadonlyArray<Uint8Array>) => Effect.Effect<void, PeerFailed>
  /** Sends what waits, if anything. */
  readonly flush: Effect.Effect<void, PeerFailed>
}

export const make = (channel: Channel): Outbox => {
  const buffer = Buffer.allocUnsafe(RunBytes)
  let used = 0
  let waiting: Array<Uint8Array> = []
  // The channel copies what it is given before `send` returns, so the buffer is free again after it.
  const flush = Effect.suspend(() => {
    if (waiting.length === 0) return Effect.void
    const run = waiting
    waiting = []
    return Effect.ensuring(
      channel.send(...run),
      Effect.sync(() => void (used = 0)),
    )
  })
  const post = (frames: ReadonlyArray<Uint8Array>) =>
    Effect.suspend(() => {
      const bytes = frames.reduce((sum, f) => sum + f.length, 0)
      if (bytes > RunBytes) return Effect.zipRight(flush, channel.send(...frames))
      const room = used + bytes <= RunBytes ? Effect.void : flush
      return Effect.zipRight(
        room,
        Effect.sync(() => {
          for (const f of frames) {
            buffer.set(f, used)
            waiting.push(buffer.subarray(used, used + f.length))
            used += f.length
          }
        }),
      )
    })
  return { post, flush }
}
