import { describe, expect, it } from "@effect/vitest"
import { Context, Duration, Effect, Fiber, Layer, Schedule, Stream } from "effect"
import { emptyRedis, requireRedis, startRedis, useRedisServer } from "../../../test/support/Redis.js"
import { type Client, layer as redisLayer } from "../src/Redis.js"
import { TransferStore } from "../src/TransferStore.js"
import { acrossInstances, contractTime, messages, store, TtlMs, twoInstancesOf } from "./RedisInstances.js"
import { transferStoreContract } from "./TransferStoreContract.js"

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

  transferStoreContract("redis", store.pipe(Layer.provide(emptyRedis(() => server().url))), contractTime)

  const twoInstances = twoInstancesOf(() => server().url, store)

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

  acrossInstances(() => server().url)

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
