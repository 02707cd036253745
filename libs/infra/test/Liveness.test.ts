import { describe, expect, it } from "@effect/vitest"
import * as Liveness from "@p2pal/infra/Liveness"
import { Duration, Effect, Fiber, Ref, TestClock } from "effect"

/** A lane as the watchdog sees it, moved by the test. */
const lane = (rttMs?: number) => {
  const seen = { heard: 0, buffered: 0, rttMs }
  return { seen, look: () => ({ ...seen }) }
}

/** The watchdog has not given up yet, and does after five more seconds of nothing, not sooner. */
const aliveThenLostAfterFive = (watchdog: Fiber.RuntimeFiber<Duration.Duration>) =>
  Effect.gen(function* () {
    expect(watchdog.unsafePoll()).toBeNull()
    yield* TestClock.adjust("4 seconds")
    expect(watchdog.unsafePoll()).toBeNull()
    yield* TestClock.adjust("1 second")
    yield* Fiber.join(watchdog)
  })

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
      const watchdog = yield* Effect.fork(Liveness.silence(lane().look))
      yield* TestClock.adjust("4 seconds")
      expect(watchdog.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(watchdog)).toEqual(Duration.seconds(5))
    }),
  )

  it.effect("waits while the peer keeps talking, and counts silence from its last word", () =>
    Effect.gen(function* () {
      const { seen, look } = lane()
      const watchdog = yield* Effect.fork(Liveness.silence(look))
      for (let i = 0; i < 10; i++) {
        seen.heard++
        yield* TestClock.adjust("1 second")
      }
      yield* aliveThenLostAfterFive(watchdog)
    }),
  )

  it.effect("counts the peer acknowledging what this side queued as progress, though it says nothing", () =>
    Effect.gen(function* () {
      const { seen, look } = lane()
      seen.buffered = 300_000
      const watchdog = yield* Effect.fork(Liveness.silence(look))
      // A slow link: the queue drains by 8 KB/s, and this side tops it up now and then.
      for (let i = 1; i <= 20; i++) {
        seen.buffered += i % 4 === 2 ? 24_000 : -8000
        yield* TestClock.adjust("1 second")
      }
      // Dead from here: the queue stays where it is.
      yield* aliveThenLostAfterFive(watchdog)
    }),
  )

  it.effect("allows a long path three round trips more", () =>
    Effect.gen(function* () {
      expect(Liveness.patience(undefined)).toEqual(Duration.seconds(5))
      const watchdog = yield* Effect.fork(Liveness.silence(lane(600).look))
      yield* TestClock.adjust("6 seconds")
      expect(watchdog.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(watchdog)).toEqual(Duration.seconds(7))
    }),
  )
})
