import { PeerFailed } from "@p2pal/domain/Errors"
import { Effect } from "effect"
import type { Progress } from "./Progress.js"

/** Bytes the sender may have in flight beyond what the receiver has acknowledged as written. */
export const AckWindowBytes = 16 * 1024 * 1024

/**
 * The sender's bound on bytes in flight: never more than `size` sent beyond what the receiver has
 * acknowledged as written, so a dropped connection loses at most that much. It counts in the sender's
 * Progress: `sent`, which the sender moves on, and `bytes`, the receiver's acknowledgements.
 */
export interface AckWindow {
  /** Waits until `bytes` more may be sent; fails once the receiver will acknowledge no more. */
  readonly room: (bytes: number) => Effect.Effect<void, PeerFailed>
  /** The receiver has written `bytes` of the transfer: wakes a sender waiting for room. */
  readonly ack: (bytes: number) => void
}

/**
 * A window for one connection, starting from the `held` bytes the receiver already has (both sides count
 * them as written and acknowledged). What an earlier connection sent past them goes again: `resent`.
 * `ended` completes when the receiver stops acknowledging (it finished, or failed).
 */
export const make = (
  progress: Progress,
  held: number,
  ended: Effect.Effect<void, PeerFailed>,
  size = AckWindowBytes,
): AckWindow => {
  progress.resent += Math.max(0, progress.sent - held)
  progress.bytes = held
  progress.sent = held
  const fits = (bytes: number) => progress.sent + bytes - progress.bytes <= size
  let wake: (() => void) | undefined
  // The receiver may stop acknowledging for good (it failed, or finished early): never wait past that.
  const stopped = Effect.zipRight(
    ended,
    Effect.fail(
      new PeerFailed({ message: "protocol error: the receiver finished before all data was sent" }),
    ),
  )
  const wait = (bytes: number) =>
    Effect.async<void>((resume) => {
      wake = () => {
        if (fits(bytes)) {
          wake = undefined
          resume(Effect.void)
        }
      }
      wake()
      return Effect.sync(() => void (wake = undefined))
    }).pipe(Effect.raceFirst(stopped))
  return {
    room: (bytes) => (fits(bytes) ? Effect.void : wait(bytes)),
    ack: (bytes) => {
      progress.bytes = bytes
      wake?.()
    },
  }
}
