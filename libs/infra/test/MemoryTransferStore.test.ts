import { expect, it } from "@effect/vitest"
import { Clock, Effect, TestClock } from "effect"
import { layer } from "../src/MemoryTransferStore.js"
import { RetentionMs, TransferStore } from "../src/TransferStore.js"
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

it.effect("memory: moves on to 3 digits once half of the 2-digit nameplates are taken", () =>
  Effect.gen(function* () {
    const store = yield* TransferStore
    const created = yield* Effect.replicateEffect(store.create(TtlMs), 200)
    const twoDigits = created.filter((transfer) => transfer.nameplate.length === 2).length
    // Half of 90 is 45; each 2-digit pick is random, so a few may be found taken and skipped.
    expect(twoDigits).toBeGreaterThan(40)
    expect(twoDigits).toBeLessThanOrEqual(46)
    expect((yield* store.create(TtlMs)).nameplate.length).toBeGreaterThan(2)
  }).pipe(Effect.provide(layer)),
)
