import { Frames } from "@p2pal/domain"
import { PeerFailed } from "@p2pal/domain/Errors"
import type { Channel } from "@p2pal/infra/PeerLink"
import { Chunk, Effect, Either } from "effect"

/**
 * Reads the peer's frames in order. It takes everything that has arrived in one go, so a frame costs a
 * decode rather than a wait; a malformed frame ends the transfer.
 */
export const frameReader = (channel: Channel): Effect.Effect<Frames.Frame, PeerFailed> => {
  let batch: ReadonlyArray<Uint8Array> = []
  let next = 0
  const decodeNext = Effect.suspend(() =>
    Either.match(Frames.decode(batch[next++]!), {
      onLeft: (e) => Effect.fail(new PeerFailed({ message: `the peer sent a malformed frame: ${e.reason}` })),
      onRight: Effect.succeed,
    }),
  )
  const refill = Effect.flatMap(channel.incoming.takeAll, ([messages]) => {
    batch = Chunk.toReadonlyArray(messages)
    next = 0
    return batch.length > 0
      ? decodeNext
      : Effect.fail(new PeerFailed({ message: "the peer closed the connection", lost: true }))
  })
  return Effect.suspend(() => (next < batch.length ? decodeNext : refill))
}

export const sendFrame = (channel: Channel, frame: Frames.Frame) => channel.send(Frames.encode(frame))

export const unexpected = (frame: Frames.Frame, expecting: string) =>
  new PeerFailed({ message: `protocol error: got ${frame._tag} while expecting ${expecting}` })

/** The receiver writes (and acknowledges) in batches of about this size. */
export const WriteBatchBytes = 1024 * 1024
