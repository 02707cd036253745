import { it } from "@effect/vitest"
import { Clock, TestClock } from "effect"
import { layer } from "../src/MemoryTransferStore.js"
import { RetentionMs } from "../src/TransferStore.js"
import { transferStoreContract } from "./TransferStoreContract.js"

const TtlMs = 60_000

transferStoreContract("memory", layer, {
  ttlMs: TtlMs,
  // The sweep runs every 30 seconds: a minute past the retention, every store has forgotten.
  forgetMs: TtlMs + RetentionMs + 60_000,
  elapse: (ms) => TestClock.adjust(ms),
  it: it.effect,
  now: Clock.currentTimeMillis,
})
