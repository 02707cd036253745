import { PeerFailed } from "@p2pal/domain/Errors"
import { Effect } from "effect"
import type * as ndc from "node-datachannel"

/** Sends suspend above this many buffered bytes... */
export const HighWaterMark = 8 * 1024 * 1024
/** ...and go on once the buffer drained to this. */
export const LowWaterMark = 4 * 1024 * 1024

/** The part of an open DataChannel the pump drives. */
export type Outlet = Pick<
  ndc.DataChannel,
  "isOpen" | "sendMessageBinary" | "bufferedAmount" | "setBufferedAmountLowThreshold" | "onBufferedAmountLow"
>

/**
 * A send for `dc`: binary messages in order, in one synchronous burst for as long as the send buffer stays
 * under its high-water mark, suspending only while it is above. `lost` fails once the connection is gone.
 * `sendMessageBinary` returning false only means "queued", which is normal here.
 */
export const make = (dc: Outlet, lost: Effect.Effect<never, PeerFailed>) => {
  let lowWater: (() => void) | undefined
  dc.setBufferedAmountLowThreshold(LowWaterMark)
  dc.onBufferedAmountLow(() => {
    const wake = lowWater
    lowWater = undefined
    wake?.()
  })

  const waitForRoom = Effect.async<void>((resume) => {
    lowWater = () => resume(Effect.void)
    // The event only fires after the amount rose above the threshold; re-check in case it already drained.
    if (dc.bufferedAmount() <= LowWaterMark) {
      lowWater = undefined
      resume(Effect.void)
    }
    return Effect.sync(() => {
      lowWater = undefined
    })
  })

  return (...messages: ReadonlyArray<Uint8Array>): Effect.Effect<void, PeerFailed> => {
    let next = 0
    const pump: Effect.Effect<void, PeerFailed> = Effect.suspend(() => {
      if (!dc.isOpen()) return lost
      try {
        while (next < messages.length) {
          dc.sendMessageBinary(messages[next++]!)
          if (dc.bufferedAmount() > HighWaterMark)
            return waitForRoom.pipe(Effect.raceFirst(lost), Effect.zipRight(pump))
        }
      } catch (e) {
        // The channel closes on libdatachannel's thread, so it can close in the middle of a burst.
        return Effect.fail(
          new PeerFailed({
            message: `the connection to the peer was lost (${e instanceof Error ? e.message : String(e)})`,
            lost: true,
          }),
        )
      }
      return Effect.void
    })
    return pump
  }
}
