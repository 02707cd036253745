import { it } from "@effect/vitest"
import { TestClock } from "effect"
import { layer } from "../src/MemoryRateLimiter.js"
import { rateLimiterContract } from "./RateLimiterContract.js"

rateLimiterContract("memory", layer, {
  windowMs: 60_000,
  elapse: (ms) => TestClock.adjust(ms),
  it: it.effect,
})
