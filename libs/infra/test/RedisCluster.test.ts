import { describe, it } from "@effect/vitest"
import { Clock, Effect, Layer } from "effect"
import { emptyRedis } from "../../../test/support/Redis.js"
import { requireRedisCluster, useRedisCluster } from "../../../test/support/RedisCluster.js"
import { layer as rateLimiter } from "../src/RedisRateLimiter.js"
import { layer as transferStore } from "../src/RedisTransferStore.js"
import { rateLimiterContract } from "./RateLimiterContract.js"
import { transferStoreContract } from "./TransferStoreContract.js"

/** The same real, short times as RedisTransferStore.test.ts, whose store runs the contract on one node. */
const TtlMs = 2_000
const RetentionMs = 1_000
const SettledMs = RetentionMs + 2_000

// One cluster for both contracts: starting it is most of this file's time.
describe.runIf(requireRedisCluster())("Redis Cluster (three masters)", () => {
  const cluster = useRedisCluster()
  const redis = emptyRedis(() => cluster().url)

  transferStoreContract(
    "redis cluster",
    transferStore({ retentionMs: RetentionMs, pollMs: 500 }).pipe(Layer.provide(redis)),
    {
      ttlMs: TtlMs,
      forgetMs: TtlMs + SettledMs,
      elapse: (ms) => Effect.sleep(ms),
      it: it.live,
      now: Clock.currentTimeMillis,
    },
  )

  rateLimiterContract("redis cluster", (limits) => rateLimiter(limits).pipe(Layer.provide(redis)), {
    windowMs: 1_000,
    elapse: (ms) => Effect.sleep(ms),
    it: it.live,
  })
})
