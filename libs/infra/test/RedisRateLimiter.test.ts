import { describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { emptyRedis, requireRedis, useRedisServer } from "../../../test/support/Redis.js"
import { layer } from "../src/RedisRateLimiter.js"
import { rateLimiterContract } from "./RateLimiterContract.js"

describe.runIf(requireRedis())("RedisRateLimiter", () => {
  const server = useRedisServer()
  const redis = emptyRedis(() => server().url)
  rateLimiterContract("redis", (limits) => layer(limits).pipe(Layer.provide(redis)), {
    windowMs: 1_000,
    elapse: (ms) => Effect.sleep(ms),
    it: it.live,
  })
})
