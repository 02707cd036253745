import { expect, it } from "@effect/vitest"
import { Chunk, Clock, Context, Deferred, Duration, Effect, Fiber, Layer, Metric, Stream } from "effect"
import { emptyRedis } from "../../../test/support/Redis.js"
import { Redis, layer as redisLayer } from "../src/Redis.js"
import { layer } from "../src/RedisTransferStore.js"
import { type Delivery, expiredTransfers, TransferStore } from "../src/TransferStore.js"
import type { ContractTime } from "./TransferStoreContract.js"

/** The Redis store's times and instances, for its tests on one Redis and on a cluster. */

/**
 * Real time, short yet not tight: a test that is not about expiry (hundreds of posts into one mailbox,
 * 200 creates) must finish well inside one TTL on a loaded machine.
 */
export const TtlMs = 2_000
export const RetentionMs = 1_000
/**
 * After a deadline, by when the store has forgotten the transfer (retention) and counted it: a sweep runs
 * each second, and may start late by its own run time, so two of them.
 */
export const SettledMs = RetentionMs + 2_000
/** An inbox notices its transfer is forgotten when it polls: quickly here, so the tests need not wait. */
export const store = layer({ retentionMs: RetentionMs, pollMs: 500 })

/** How the contract drives the Redis store's clock: real, short time. */
export const contractTime: ContractTime = {
  ttlMs: TtlMs,
  forgetMs: TtlMs + SettledMs,
  elapse: (ms) => Effect.sleep(ms),
  it: it.live,
  now: Clock.currentTimeMillis,
}

export const messages = (deliveries: Chunk.Chunk<Delivery>) => Chunk.toArray(deliveries).map((d) => d.message)

/**
 * An emptied Redis at `url()` and two instances of `storeLayer` on it (as two signal apps would have),
 * for the test's scope.
 */
export const twoInstancesOf = (url: () => string, storeLayer: typeof store) =>
  Effect.gen(function* () {
    const redis = Context.get(yield* Layer.build(emptyRedis(url)), Redis)
    const instance = Effect.suspend(() => Layer.build(storeLayer.pipe(Layer.provide(redisLayer(url())))))
    const [a, b] = yield* Effect.all([instance, instance])
    return { redis, a: Context.get(a, TransferStore), b: Context.get(b, TransferStore) }
  })

/** What two instances of the store on the Redis at `url()` must do together. */
export const acrossInstances = (url: () => string) => {
  const twoInstances = twoInstancesOf(url, store)

  it.scopedLive("a reader on another instance resumes after the last id it saw", () =>
    Effect.gen(function* () {
      const { a, b } = yield* twoInstances
      const { transferId } = yield* a.create(TtlMs)
      yield* Effect.forEach(["a", "b", "c"], (m) => a.post(transferId, "sender", m))
      const ids = Chunk.toArray(
        yield* Stream.runCollect(Stream.take(a.inbox(transferId, "sender", undefined), 3)),
      ).map((d) => d.id)
      yield* a.post(transferId, "sender", "d")
      const resumed = yield* Stream.runCollect(Stream.take(b.inbox(transferId, "sender", ids[1]), 2))
      expect(messages(resumed)).toEqual(["c", "d"])
    }),
  )

  it.scopedLive(
    "a message posted on one instance reaches a waiting reader on another at once (doorbell)",
    () =>
      Effect.gen(function* () {
        const { a, b } = yield* twoInstancesOf(url, layer({ retentionMs: RetentionMs }))
        const { transferId } = yield* a.create(TtlMs)
        yield* a.post(transferId, "receiver", "first")
        const waiting = yield* Deferred.make<void>()
        const reader = yield* Effect.fork(
          b.inbox(transferId, "receiver", undefined).pipe(
            Stream.tap(() => Deferred.succeed(waiting, undefined)),
            Stream.take(2),
            Stream.runCollect,
          ),
        )
        yield* Deferred.await(waiting)
        const [elapsed, received] = yield* Effect.timed(
          Effect.zipRight(a.post(transferId, "receiver", "second"), Fiber.join(reader)),
        )
        expect(messages(received)).toEqual(["first", "second"])
        // With the default 20-second poll: only the doorbell can have been this quick.
        expect(Duration.toMillis(elapsed)).toBeLessThan(5_000)
      }),
  )

  it.scopedLive("every instance sweeps, yet each expired transfer is counted once", () =>
    Effect.gen(function* () {
      const { a, b } = yield* twoInstances
      const before = (yield* Metric.value(expiredTransfers)).count
      yield* a.create(TtlMs)
      yield* b.join((yield* b.create(TtlMs)).nameplate)
      const completed = yield* a.create(TtlMs)
      yield* b.join(completed.nameplate)
      yield* a.transition(completed.transferId, { _tag: "Activate", leaseMs: 0 })
      yield* b.transition(completed.transferId, { _tag: "Complete" })
      // Both instances have swept since the deadlines: were each to count what it saw, this would be 4.
      yield* Effect.sleep(TtlMs + SettledMs)
      expect((yield* Metric.value(expiredTransfers)).count - before).toBe(2)
    }),
  )
}
