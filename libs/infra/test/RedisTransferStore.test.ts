import { describe, expect, it } from "@effect/vitest"
import {
  Chunk,
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Fiber,
  Layer,
  Metric,
  Schedule,
  Stream,
} from "effect"
import { emptyRedis, requireRedis, startRedis, useRedisServer } from "../../../test/support/Redis.js"
import { type Client, Redis, layer as redisLayer } from "../src/Redis.js"
import { layer } from "../src/RedisTransferStore.js"
import { type Delivery, expiredTransfers, TransferStore } from "../src/TransferStore.js"
import { transferStoreContract } from "./TransferStoreContract.js"

/**
 * Real time, short yet not tight: a test that is not about expiry (hundreds of posts into one mailbox,
 * 200 creates) must finish well inside one TTL on a loaded machine.
 */
const TtlMs = 2_000
const RetentionMs = 1_000
/**
 * After a deadline, by when the store has forgotten the transfer (retention) and counted it: a sweep runs
 * each second, and may start late by its own run time, so two of them.
 */
const SettledMs = RetentionMs + 2_000
/** An inbox notices its transfer is forgotten when it polls: quickly here, so the tests need not wait. */
const store = layer({ retentionMs: RetentionMs, pollMs: 500 })

const messages = (deliveries: Chunk.Chunk<Delivery>) => Chunk.toArray(deliveries).map((d) => d.message)

/** What a key holds, as text, whatever its type. */
const contentOf = async (client: Client, key: string): Promise<string> => {
  const type = await client.type(key)
  if (type === "string") return (await client.get(key)) ?? ""
  if (type === "stream") return JSON.stringify(await client.xrange(key, "-", "+"))
  if (type === "zset") return JSON.stringify(await client.zrange(key, 0, -1, "WITHSCORES"))
  throw new Error(`unexpected ${type} key ${key}`)
}

describe.runIf(requireRedis())("RedisTransferStore", () => {
  const server = useRedisServer()

  transferStoreContract("redis", store.pipe(Layer.provide(emptyRedis(() => server().url))), {
    ttlMs: TtlMs,
    forgetMs: TtlMs + SettledMs,
    elapse: (ms) => Effect.sleep(ms),
    it: it.live,
    now: Clock.currentTimeMillis,
  })

  /** An emptied Redis and two instances of the store on it (as two signal apps would have), for the test's scope. */
  const twoInstancesOf = (storeLayer: typeof store) =>
    Effect.gen(function* () {
      const redis = Context.get(yield* Layer.build(emptyRedis(() => server().url)), Redis)
      const instance = Effect.suspend(() =>
        Layer.build(storeLayer.pipe(Layer.provide(redisLayer(server().url)))),
      )
      const [a, b] = yield* Effect.all([instance, instance])
      return { redis, a: Context.get(a, TransferStore), b: Context.get(b, TransferStore) }
    })
  const twoInstances = twoInstancesOf(store)

  it.scopedLive(
    "tokens are kept only as digests, every key expires, after Activate with the new deadline, and a transfer's keys share its hash tag",
    () =>
      Effect.gen(function* () {
        const { redis, a } = yield* twoInstances
        // Below the 15 s of an instance's own heartbeat key, which is also there.
        const Lease = 5 * TtlMs
        const created = yield* a.create(TtlMs)
        const joined = yield* a.join(created.nameplate)
        yield* a.post(created.transferId, "receiver", "offer")
        yield* a.post(created.transferId, "sender", "answer")
        yield* a.transition(created.transferId, { _tag: "Activate", leaseMs: Lease })
        const keys = yield* redis.use(async (client) => {
          const names = await client.keys("*")
          return Promise.all(
            names.map(async (key) => ({
              key,
              pttl: await client.pttl(key),
              content: await contentOf(client, key),
            })),
          )
        })
        const tag = `p2pal:{${created.nameplate}}:`
        expect(keys.filter(({ key }) => key.startsWith(`${tag}token:`))).toHaveLength(2)
        // Redis Cluster runs a script only on keys of one slot: the transfer's all carry its nameplate as tag.
        const ownKeys = keys.filter(
          ({ key }) => key !== "p2pal:deadlines" && !key.startsWith("p2pal:instance:"),
        )
        const kinds = ownKeys.map(({ key }) =>
          key.startsWith(tag) ? key.slice(tag.length).split(":")[0] : key,
        )
        expect(kinds.sort()).toEqual(["mailbox", "mailbox", "nameplate", "token", "token", "transfer"])
        for (const { key, pttl, content } of keys) {
          expect(key).toMatch(/^p2pal:/)
          expect(pttl, key).toBeGreaterThan(Lease)
          for (const token of [created.senderToken, joined.receiverToken]) {
            expect(key).not.toContain(token)
            expect(content, key).not.toContain(token)
          }
        }
      }),
  )

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
        const { a, b } = yield* twoInstancesOf(layer({ retentionMs: RetentionMs }))
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

  it.scopedLive(
    "Redis down: operations fail fast with StoreUnavailable and an instance still starts; back empty, all work",
    () =>
      Effect.gen(function* () {
        const own = yield* Effect.acquireRelease(Effect.promise(startRedis), (redis) =>
          Effect.promise(redis.stop),
        )
        const instance = Effect.suspend(() =>
          Effect.map(Layer.build(store.pipe(Layer.provide(redisLayer(own.url)))), Context.get(TransferStore)),
        )
        const s = yield* instance
        const created = yield* s.create(TtlMs)
        const joined = yield* s.join(created.nameplate)

        yield* Effect.promise(own.kill)
        const started = yield* instance
        const operations: ReadonlyArray<Effect.Effect<unknown, { readonly _tag: string }>> = [
          s.ping,
          started.ping,
          s.create(TtlMs),
          s.join(created.nameplate),
          s.authenticate(joined.receiverToken),
          s.transition(created.transferId, { _tag: "Activate", leaseMs: TtlMs }),
          s.post(created.transferId, "sender", "lost"),
          Stream.runDrain(s.inbox(created.transferId, "sender", undefined)),
        ]
        for (const operation of operations) {
          const [elapsed, error] = yield* Effect.timed(Effect.flip(operation))
          expect(error._tag).toBe("StoreUnavailable")
          expect(Duration.toMillis(elapsed)).toBeLessThan(2_000)
        }

        yield* Effect.promise(own.restart)
        const reconnected = Schedule.spaced("100 millis").pipe(Schedule.upTo("5 seconds"))
        yield* Effect.retry(Effect.zipRight(s.ping, started.ping), reconnected)
        expect((yield* Effect.flip(s.join(created.nameplate)))._tag).toBe("TransferNotFound")
        yield* started.create(TtlMs)
        const again = yield* s.create(TtlMs)
        yield* s.join(again.nameplate)
        const reader = yield* Effect.fork(
          Stream.runCollect(Stream.take(s.inbox(again.transferId, "sender", undefined), 1)),
        )
        yield* s.post(again.transferId, "sender", "after the outage")
        expect(messages(yield* Fiber.join(reader))).toEqual(["after the outage"])
      }),
  )
})
