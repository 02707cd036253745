import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { type Kind, type Limits, RateLimited, RateLimiter } from "../src/RateLimiter.js"

/** How a limiter's clock is driven: the TestClock for memory, real (short) time for Redis. */
export interface ContractTime {
  /** Every kind's window. */
  readonly windowMs: number
  readonly elapse: (ms: number) => Effect.Effect<void>
  /** Runs one test: `it.effect` (TestClock) or `it.live`. */
  readonly it: typeof it.effect | typeof it.live
}

/** The behaviour every RateLimiter must have; each test gets a fresh limiter from `layer(limits)`. */
export const rateLimiterContract = (
  name: string,
  layer: (limits: Limits) => Layer.Layer<RateLimiter, unknown>,
  time: ContractTime,
) =>
  describe(`RateLimiter contract: ${name}`, () => {
    const WindowMs = time.windowMs
    const limits: Limits = {
      create: { max: 3, windowMs: WindowMs },
      join: { max: 5, windowMs: WindowMs },
      "failed-join": { max: 2, windowMs: WindowMs },
    }
    const test = (title: string, body: Effect.Effect<void, unknown, RateLimiter>) =>
      time.it(title, () => Effect.provide(body, layer(limits)))
    const hits = (kind: Kind, client: string, n: number) =>
      Effect.flatMap(RateLimiter, (limiter) => Effect.repeatN(limiter.hit(kind, client), n - 1))
    const refusal = (effect: Effect.Effect<void, unknown, RateLimiter>) =>
      Effect.map(Effect.flip(effect), (error) => {
        expect(error).toBeInstanceOf(RateLimited)
        return error as RateLimited
      })

    test(
      "the hit after the window's allowance is refused, with a retry delay within the window",
      Effect.gen(function* () {
        const limiter = yield* RateLimiter
        yield* hits("create", "10.0.0.1", 3)
        const refused = yield* refusal(limiter.hit("create", "10.0.0.1"))
        expect(refused.kind).toBe("create")
        expect(refused.retryAfterMs).toBeGreaterThan(0)
        expect(refused.retryAfterMs).toBeLessThanOrEqual(WindowMs)
        yield* refusal(limiter.check("create", "10.0.0.1"))
      }),
    )

    test(
      "after the window, hits pass again",
      Effect.gen(function* () {
        const limiter = yield* RateLimiter
        yield* hits("failed-join", "10.0.0.1", 2)
        yield* refusal(limiter.hit("failed-join", "10.0.0.1"))
        yield* time.elapse(WindowMs)
        yield* limiter.check("failed-join", "10.0.0.1")
        yield* hits("failed-join", "10.0.0.1", 2)
        yield* refusal(limiter.hit("failed-join", "10.0.0.1"))
      }),
    )

    test(
      "kinds and clients are counted apart",
      Effect.gen(function* () {
        const limiter = yield* RateLimiter
        yield* hits("create", "10.0.0.1", 3)
        yield* refusal(limiter.hit("create", "10.0.0.1"))
        yield* hits("create", "10.0.0.2", 3)
        yield* hits("join", "10.0.0.1", 5)
        yield* refusal(limiter.hit("join", "10.0.0.1"))
        yield* limiter.check("failed-join", "10.0.0.1")
      }),
    )

    test(
      "check does not count",
      Effect.gen(function* () {
        const limiter = yield* RateLimiter
        yield* Effect.repeatN(limiter.check("create", "10.0.0.1"), 9)
        yield* hits("create", "10.0.0.1", 3)
        yield* refusal(limiter.check("create", "10.0.0.1"))
      }),
    )
  })
