import { expect, it } from "@effect/vitest"
import { Clock, Effect, TestClock } from "effect"
import type { Ids } from "@p2pal/domain"
import { layer, MailboxesMaxChars } from "../src/MemoryTransferStore.js"
import { MailboxCapacity, RetentionMs, TransferStore } from "../src/TransferStore.js"
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

it.effect(
  "memory: all mailboxes together hold at most MailboxesMaxChars, and a forgotten transfer frees its share",
  () =>
    Effect.gen(function* () {
      const store = yield* TransferStore
      const message = "x".repeat(MailboxesMaxChars / 1024)
      const posts = (transferId: Ids.TransferId) =>
        Effect.forEach(Array.from({ length: MailboxCapacity }), () =>
          store.post(transferId, "receiver", message),
        )
      // Four transfers' mailboxes fill the instance's share exactly; a fifth cannot post a byte more.
      const full = yield* Effect.replicateEffect(store.create(TtlMs), 4)
      yield* Effect.forEach(full, ({ transferId }) => posts(transferId))
      const fifth = yield* store.create(TtlMs)
      const refused = yield* Effect.flip(store.post(fifth.transferId, "receiver", "x"))
      expect(refused._tag).toBe("MailboxFull")
      yield* TestClock.adjust(TtlMs + RetentionMs + 60_000)
      const later = yield* store.create(TtlMs)
      yield* posts(later.transferId)
    }).pipe(Effect.provide(layer)),
)
