import { Frames } from "@p2pal/domain"
import { PeerFailed } from "@p2pal/domain/Errors"
import type { Channel } from "@p2pal/infra/PeerLink"
import { Effect, Either, Queue } from "effect"

/** The next frame from the peer; a malformed one ends the transfer. */
export const nextFrame = (channel: Channel) =>
  Queue.take(channel.incoming).pipe(
    Effect.raceFirst(channel.closed),
    Effect.flatMap((message) =>
      Either.match(Frames.decode(message), {
        onLeft: (e) =>
          Effect.fail(new PeerFailed({ message: `the peer sent a malformed frame: ${e.reason}` })),
        onRight: Effect.succeed,
      }),
    ),
  )

export const sendFrame = (channel: Channel, frame: Frames.Frame) => channel.send(Frames.encode(frame))

export const unexpected = (frame: Frames.Frame, expecting: string) =>
  new PeerFailed({ message: `protocol error: got ${frame._tag} while expecting ${expecting}` })

/** Bytes the sender may have in flight beyond what the receiver has acknowledged as written. */
export const AckWindowBytes = 16 * 1024 * 1024
/** The receiver writes (and acknowledges) in batches of about this size. */
export const WriteBatchBytes = 1024 * 1024
