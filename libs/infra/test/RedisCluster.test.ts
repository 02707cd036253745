import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option } from "effect"
import { emptyRedis } from "../../../test/support/Redis.js"
import { requireRedisCluster, useRedisCluster } from "../../../test/support/RedisCluster.js"
import { clusterSeeds } from "../src/Redis.js"
import { layer as rateLimiter } from "../src/RedisRateLimiter.js"
import { rateLimiterContract } from "./RateLimiterContract.js"
import { acrossInstances, contractTime, store } from "./RedisInstances.js"
import { transferStoreContract } from "./TransferStoreContract.js"

// One cluster for the whole file, started once.
describe.runIf(requireRedisCluster())("Redis Cluster (three masters)", () => {
  const cluster = useRedisCluster()
  const redis = emptyRedis(() => cluster().url)

  transferStoreContract("redis cluster", store.pipe(Layer.provide(redis)), contractTime)

  acrossInstances(() => cluster().url)

  rateLimiterContract("redis cluster", (limits) => rateLimiter(limits).pipe(Layer.provide(redis)), {
    windowMs: 1_000,
    elapse: (ms) => Effect.sleep(ms),
    it: it.live,
  })
})

describe("redis+cluster:// URLs", () => {
  it("name the seed nodes (6379 unless given) and the credentials", () => {
    expect(clusterSeeds("redis+cluster://:p%40ss@10.0.0.5:7000,[::1]:7001,redis.internal")).toEqual(
      Either.right(
        Option.some({
          nodes: [
            { host: "10.0.0.5", port: 7000 },
            { host: "::1", port: 7001 },
            { host: "redis.internal", port: 6379 },
          ],
          username: "",
          password: "p@ss",
        }),
      ),
    )
  })

  it("leave one Redis's URL to ioredis, and refuse malformed cluster URLs", () => {
    expect(clusterSeeds("redis://10.0.0.5:6379")).toEqual(Either.right(Option.none()))
    for (const url of ["redis+cluster://", "redis+cluster://a b:7000", "redis+cluster://h:7000,:7001"])
      expect(Either.isLeft(clusterSeeds(url)), url).toBe(true)
  })
})
