import { describe, expect, it } from "@effect/vitest"
import { PeerFailed } from "@p2pal/domain/Errors"
import * as AckWindow from "@p2pal/transfer/AckWindow"
import { Progress } from "@p2pal/transfer/Progress"
import { Cause, Deferred, Effect, Exit, Fiber, Option, Random } from "effect"

/** A window of `size` bytes over a fresh transfer, and what ends its acknowledgements. */
const fresh = (size: number, held = 0) =>
  Effect.gen(function* () {
    const progress = new Progress(1_000_000)
    const ended = yield* Deferred.make<void, PeerFailed>()
    const window = AckWindow.make(progress, held, Deferred.await(ended), size)
    return { progress, ended, window }
  })

/** Whether `fiber` is still waiting once everything else runnable has run. */
const waiting = (fiber: Fiber.Fiber<unknown, unknown>) =>
  Effect.zipRight(Effect.yieldNow(), Effect.map(Fiber.poll(fiber), Option.isNone))

describe("AckWindow", () => {
  it.effect(
    "lets a run through at once while it fits, and holds one that would overflow until acks make room",
    () =>
      Effect.gen(function* () {
        const { progress, window } = yield* fresh(100)
        yield* window.room(60)
        progress.sent += 60
        const second = yield* Effect.fork(window.room(60))
        expect(yield* waiting(second)).toBe(true)
        // 60 + 60 - 10 = 110 unacknowledged would still be too many.
        window.ack(10)
        expect(yield* waiting(second)).toBe(true)
        window.ack(20)
        yield* Fiber.join(second)
        expect(progress.bytes).toBe(20)
      }),
  )

  it.effect("never lets more than the window go unacknowledged, whatever the runs and the acks", () =>
    Effect.gen(function* () {
      const size = 1000
      const { progress, window } = yield* fresh(size)
      let most = 0
      const sender = yield* Effect.fork(
        Effect.forEach(
          Array.from({ length: 300 }),
          () =>
            Effect.gen(function* () {
              const run = yield* Random.nextIntBetween(1, size + 1)
              yield* window.room(run)
              progress.sent += run
              most = Math.max(most, progress.sent - progress.bytes)
            }),
          { discard: true },
        ),
      )
      // The receiver acknowledges some of what was sent, a random part at a time, until the sender is done.
      while (yield* waiting(sender)) {
        const step = yield* Random.nextIntBetween(0, size)
        window.ack(Math.min(progress.sent, progress.bytes + step))
      }
      yield* Fiber.join(sender)
      expect(most).toBeLessThanOrEqual(size)
      expect(most).toBeGreaterThan(size / 2)
    }),
  )

  it.effect(
    "a window for a new connection starts from what the receiver holds; what was in flight past it counts as sent again",
    () =>
      Effect.gen(function* () {
        const { progress, window } = yield* fresh(100)
        yield* window.room(80)
        progress.sent += 80
        window.ack(30)
        // The connection drops; the receiver says it kept 40 bytes (more than it had acknowledged).
        const resumed = AckWindow.make(progress, 40, Effect.never, 100)
        expect({ sent: progress.sent, bytes: progress.bytes, resent: progress.resent }).toEqual({
          sent: 40,
          bytes: 40,
          resent: 40,
        })
        // The new window is empty: a full window's worth goes through at once, no more.
        yield* resumed.room(100)
        progress.sent += 100
        const next = yield* Effect.fork(resumed.room(1))
        expect(yield* waiting(next)).toBe(true)
        resumed.ack(41)
        yield* Fiber.join(next)
      }),
  )

  it.effect(
    "a sender waiting for room fails once the receiver stops acknowledging: finished early, or failed",
    () =>
      Effect.gen(function* () {
        const finished = yield* fresh(100)
        finished.progress.sent = 100
        const early = yield* Effect.fork(finished.window.room(1))
        yield* Deferred.succeed(finished.ended, undefined)
        const earlyExit = yield* Fiber.await(early)
        expect(Exit.isFailure(earlyExit) && Cause.squash(earlyExit.cause)).toEqual(
          new PeerFailed({ message: "protocol error: the receiver finished before all data was sent" }),
        )

        const failing = yield* fresh(100)
        failing.progress.sent = 100
        const stopped = yield* Effect.fork(failing.window.room(1))
        const why = new PeerFailed({ message: "the receiver stopped: disk full" })
        yield* Deferred.fail(failing.ended, why)
        const stoppedExit = yield* Fiber.await(stopped)
        expect(Exit.isFailure(stoppedExit) && Cause.squash(stoppedExit.cause)).toBe(why)
      }),
  )
})
