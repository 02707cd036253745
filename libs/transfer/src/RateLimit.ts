import { Clock, Duration, Effect } from "effect"

/** `--limit-rate`: a cap on bytes per second, shared by every connection of one transfer. */
export interface RateLimit {
  readonly bytesPerSecond: number
  /** Waits until `bytes` more may go: at once while the bucket holds them, else until it has refilled. */
  readonly take: (bytes: number) => Effect.Effect<void>
}

/**
 * A token bucket that holds at most one second's worth, so after an idle spell (a reconnect, a slow
 * disk) no more than `bytesPerSecond` go at once. It starts empty: a transfer's time at the cap is its
 * bytes over the rate. A take larger than the bucket goes into debt and waits it off, so a block of any
 * size passes.
 */
export const make = (bytesPerSecond: number): Effect.Effect<RateLimit> =>
  Effect.gen(function* () {
    let tokens = 0
    let at = yield* Clock.currentTimeMillis
    const take = (bytes: number) =>
      Effect.gen(function* () {
        const now = yield* Clock.currentTimeMillis
        tokens = Math.min(bytesPerSecond, tokens + ((now - at) * bytesPerSecond) / 1000)
        at = now
        tokens -= bytes
        // Whole milliseconds, as the clock counts them.
        if (tokens < 0) yield* Effect.sleep(Duration.millis(Math.ceil((-tokens * 1000) / bytesPerSecond)))
      })
    return { bytesPerSecond, take }
  })
