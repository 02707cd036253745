import { describe, expect, it } from "@effect/vitest"
import * as Liveness from "@p2pal/infra/Liveness"
import { Effect, Fiber, Ref, TestClock } from "effect"

describe("Liveness", () => {
  it.effect("beats once per second", () =>
    Effect.gen(function* () {
      const beats = yield* Ref.make(0)
      yield* Effect.fork(Liveness.heartbeat(Ref.update(beats, (n) => n + 1)))
      yield* TestClock.adjust("3500 millis")
      expect(yield* Ref.get(beats)).toBe(3)
    }),
  )

  it.effect("notices a peer silent for five seconds, and not sooner", () =>
    Effect.gen(function* () {
      const watchdog = yield* Effect.fork(Liveness.silence(() => 0))
      yield* TestClock.adjust("4 seconds")
      expect(watchdog.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(watchdog)
    }),
  )

  it.effect("waits while the peer keeps talking, and counts silence from its last word", () =>
    Effect.gen(function* () {
      let heard = 0
      const watchdog = yield* Effect.fork(Liveness.silence(() => heard))
      for (let i = 0; i < 10; i++) {
        heard++
        yield* TestClock.adjust("1 second")
      }
      expect(watchdog.unsafePoll()).toBeNull()
      yield* TestClock.adjust("4 seconds")
      expect(watchdog.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(watchdog)
    }),
  )
})
