import { describe, expect, it } from "@effect/vitest"
import * as RateLimit from "@p2pal/transfer/RateLimit"
import { Clock, Effect, Fiber, TestClock } from "effect"

/** How long, on the test clock, taking `sizes` one after another lasts. */
const timeToTake = (limit: RateLimit.RateLimit, sizes: ReadonlyArray<number>) =>
  Effect.gen(function* () {
    const start = yield* Clock.currentTimeMillis
    const fiber = yield* Effect.fork(Effect.forEach(sizes, limit.take, { discard: true }))
    // The fiber runs until it sleeps; the clock moves only while it waits.
    yield* Effect.yieldNow()
    while (fiber.unsafePoll() === null) yield* TestClock.adjust("10 millis")
    yield* Fiber.join(fiber)
    return (yield* Clock.currentTimeMillis) - start
  })

describe("RateLimit", () => {
  it.effect("starts empty: N bytes at R bytes per second take N/R seconds", () =>
    Effect.gen(function* () {
      const limit = yield* RateLimit.make(1000)
      expect(yield* timeToTake(limit, Array(10).fill(500))).toBe(5000)
    }),
  )

  it.effect("a take larger than a second's worth passes, and waits it off", () =>
    Effect.gen(function* () {
      const limit = yield* RateLimit.make(1000)
      expect(yield* timeToTake(limit, [3000])).toBe(3000)
      expect(yield* timeToTake(limit, [100])).toBe(100)
    }),
  )

  it.effect("after an idle spell it lets at most one second's worth through at once", () =>
    Effect.gen(function* () {
      const limit = yield* RateLimit.make(1000)
      yield* TestClock.adjust("1 minute")
      expect(yield* timeToTake(limit, [1000])).toBe(0)
      expect(yield* timeToTake(limit, [1000])).toBe(1000)
    }),
  )
})
