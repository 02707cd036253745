import { Clock, Effect, Layer, Schedule } from "effect"
import { type Kind, type Limits, RateLimited, RateLimiter } from "./RateLimiter.js"

const SweepInterval = "1 minute"

interface Window {
  count: number
  readonly endsAt: number
}

const make = (limits: Limits) =>
  Effect.gen(function* () {
    const windows = new Map<string, Window>()

    // Without the sweep, every client address ever seen would keep an entry.
    const sweep = Effect.map(Clock.currentTimeMillis, (now) => {
      for (const [key, window] of windows) if (window.endsAt <= now) windows.delete(key)
    })
    yield* Effect.forkScoped(Effect.repeat(sweep, Schedule.spaced(SweepInterval)))

    /** The client's window as of now: a fresh one once the last has ended. */
    const current = (kind: Kind, client: string) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const key = `${kind}:${client}`
        let window = windows.get(key)
        if (window === undefined || window.endsAt <= now) {
          window = { count: 0, endsAt: now + limits[kind].windowMs }
          windows.set(key, window)
        }
        return { window, now }
      })

    const refuseIfUsedUp = (kind: Kind, window: Window, now: number) =>
      window.count >= limits[kind].max
        ? Effect.fail(new RateLimited({ kind, retryAfterMs: window.endsAt - now }))
        : Effect.void

    const hit = Effect.fn("RateLimiter.hit")(function* (kind: Kind, client: string) {
      const { window, now } = yield* current(kind, client)
      yield* refuseIfUsedUp(kind, window, now)
      window.count++
    })

    const check = Effect.fn("RateLimiter.check")(function* (kind: Kind, client: string) {
      const { window, now } = yield* current(kind, client)
      yield* refuseIfUsedUp(kind, window, now)
    })

    return RateLimiter.of({ hit, check })
  })

/** Fixed windows per kind and client, in this process only (the embedded default). */
export const layer = (limits: Limits): Layer.Layer<RateLimiter> => Layer.scoped(RateLimiter, make(limits))
