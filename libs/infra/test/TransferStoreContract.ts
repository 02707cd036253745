import { Ids } from "@p2pal/domain"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Layer, Stream, TestClock } from "effect"
import { MailboxCapacity, RetentionMs, TransferStore } from "../src/TransferStore.js"

const TtlMs = 60_000
/** Long enough for any store to notice that a transfer is past its retention. */
const ForgetMs = TtlMs + RetentionMs + 60_000

const failureTag = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.flip(effect), (error) => error._tag)

const createAndJoin = Effect.gen(function* () {
  const store = yield* TransferStore
  const created = yield* store.create(TtlMs)
  const joined = yield* store.join(created.nameplate)
  return { store, created, joined }
})

/** The behaviour every TransferStore must have; each test gets a fresh store from `layer`. */
export const transferStoreContract = (name: string, layer: Layer.Layer<TransferStore, unknown>) =>
  describe(`TransferStore contract: ${name}`, () => {
    const test = (title: string, body: Effect.Effect<void, unknown, TransferStore>) =>
      it.effect(title, () => Effect.provide(body, layer))

    test(
      "create issues a 2-digit nameplate, random ids and a deadline from the clock",
      Effect.gen(function* () {
        const store = yield* TransferStore
        yield* TestClock.setTime(1_000)
        const created = yield* store.create(TtlMs)
        expect(created.nameplate).toMatch(/^[1-9][0-9]$/)
        expect(created.transferId).toMatch(/^[A-Za-z0-9_-]{22}$/)
        expect(created.senderToken).toMatch(/^[A-Za-z0-9_-]{22}$/)
        expect(created.senderToken).not.toBe(created.transferId)
        expect(created.expiresAt).toBe(1_000 + TtlMs)
      }),
    )

    test(
      "join claims the nameplate for the same transfer",
      Effect.gen(function* () {
        const { created, joined } = yield* createAndJoin
        expect(joined.transferId).toBe(created.transferId)
        expect(joined.expiresAt).toBe(created.expiresAt)
      }),
    )

    test(
      "a nameplate is claimed at most once",
      Effect.gen(function* () {
        const { store, created } = yield* createAndJoin
        expect(yield* failureTag(store.join(created.nameplate))).toBe("AlreadyClaimed")
      }),
    )

    test(
      "an unknown nameplate is not found",
      Effect.gen(function* () {
        const store = yield* TransferStore
        expect(yield* failureTag(store.join(Ids.Nameplate.make("4242")))).toBe("TransferNotFound")
      }),
    )

    test(
      "each token authenticates to its own side only; others are unauthorized",
      Effect.gen(function* () {
        const { store, created, joined } = yield* createAndJoin
        expect(joined.receiverToken).not.toBe(created.senderToken)
        expect(yield* store.authenticate(created.senderToken)).toEqual({
          transferId: created.transferId,
          side: "sender",
        })
        expect(yield* store.authenticate(joined.receiverToken)).toEqual({
          transferId: created.transferId,
          side: "receiver",
        })
        const stranger = Ids.Token.make("A".repeat(22))
        expect(yield* failureTag(store.authenticate(stranger))).toBe("Unauthorized")
      }),
    )

    test(
      "after its TTL a transfer is expired, then forgotten",
      Effect.gen(function* () {
        const store = yield* TransferStore
        const created = yield* store.create(TtlMs)
        yield* TestClock.adjust(TtlMs)
        expect(yield* failureTag(store.join(created.nameplate))).toBe("TransferExpired")
        expect(yield* failureTag(store.authenticate(created.senderToken))).toBe("TransferExpired")
        expect(yield* failureTag(store.post(created.transferId, "receiver", "late"))).toBe("TransferExpired")
        yield* TestClock.adjust(ForgetMs)
        expect(yield* failureTag(store.join(created.nameplate))).toBe("TransferNotFound")
        expect(yield* failureTag(store.authenticate(created.senderToken))).toBe("Unauthorized")
      }),
    )

    test(
      "nameplates grow past 2 digits under load and are freed once their transfers are forgotten",
      Effect.gen(function* () {
        const store = yield* TransferStore
        const created = yield* Effect.replicateEffect(store.create(TtlMs), 200)
        const nameplates = created.map((transfer) => transfer.nameplate)
        expect(new Set(nameplates).size).toBe(nameplates.length)
        const twoDigits = nameplates.filter((nameplate) => nameplate.length === 2).length
        expect(twoDigits).toBeGreaterThan(40)
        expect(twoDigits).toBeLessThanOrEqual(46)
        expect((yield* store.create(TtlMs)).nameplate.length).toBeGreaterThan(2)
        yield* TestClock.adjust(ForgetMs)
        expect((yield* store.create(TtlMs)).nameplate).toHaveLength(2)
      }),
    )

    test(
      "Activate extends the deadline by the lease; Complete ends the transfer",
      Effect.gen(function* () {
        const { store, created, joined } = yield* createAndJoin
        expect(yield* failureTag(store.transition(created.transferId, { _tag: "Complete" }))).toBe(
          "TransitionNotAllowed",
        )
        const active = yield* store.transition(created.transferId, { _tag: "Activate", leaseMs: 10 * TtlMs })
        expect(active).toEqual({ status: "active", expiresAt: 10 * TtlMs })
        yield* TestClock.adjust(2 * TtlMs)
        expect((yield* store.authenticate(joined.receiverToken)).side).toBe("receiver")
        expect((yield* store.transition(created.transferId, { _tag: "Complete" })).status).toBe("completed")
        expect(yield* failureTag(store.post(created.transferId, "sender", "after"))).toBe("TransferEnded")
        expect(yield* failureTag(store.authenticate(created.senderToken))).toBe("TransferEnded")
        expect(yield* failureTag(store.transition(created.transferId, { _tag: "Abort" }))).toBe(
          "TransferEnded",
        )
      }),
    )

    test(
      "Abort works from any live state",
      Effect.gen(function* () {
        const store = yield* TransferStore
        const created = yield* store.create(TtlMs)
        expect((yield* store.transition(created.transferId, { _tag: "Abort" })).status).toBe("aborted")
        expect(yield* failureTag(store.join(created.nameplate))).toBe("TransferEnded")
      }),
    )

    test(
      "mailboxes keep messages posted before the subscriber, in order, one per direction",
      Effect.gen(function* () {
        const { store, created } = yield* createAndJoin
        const id = created.transferId
        yield* Effect.forEach(["offer", "ice-1", "ice-2"], (m) => store.post(id, "receiver", m))
        yield* store.post(id, "sender", "answer")
        const toReceiver = yield* Stream.runCollect(Stream.take(store.inbox(id, "receiver"), 3))
        expect(Chunk.toArray(toReceiver)).toEqual(["offer", "ice-1", "ice-2"])
        const toSender = yield* Stream.runCollect(Stream.take(store.inbox(id, "sender"), 1))
        expect(Chunk.toArray(toSender)).toEqual(["answer"])
      }),
    )

    test(
      "a subscriber waiting on an empty mailbox gets later messages",
      Effect.gen(function* () {
        const { store, created } = yield* createAndJoin
        const fiber = yield* Effect.fork(
          Stream.runCollect(Stream.take(store.inbox(created.transferId, "sender"), 2)),
        )
        yield* store.post(created.transferId, "sender", "a")
        yield* store.post(created.transferId, "sender", "b")
        expect(Chunk.toArray(yield* fiber.await.pipe(Effect.flatten))).toEqual(["a", "b"])
      }),
    )

    test(
      `a mailbox holds at most ${MailboxCapacity} undelivered messages`,
      Effect.gen(function* () {
        const { store, created } = yield* createAndJoin
        const id = created.transferId
        yield* Effect.forEach(
          Array.from({ length: MailboxCapacity }, (_, i) => String(i)),
          (m) => store.post(id, "receiver", m),
        )
        expect(yield* failureTag(store.post(id, "receiver", "one too many"))).toBe("MailboxFull")
        yield* store.post(id, "sender", "the other direction is independent")
        const first = yield* Stream.runCollect(Stream.take(store.inbox(id, "receiver"), 1))
        expect(Chunk.toArray(first)).toEqual(["0"])
        yield* store.post(id, "receiver", "room again")
      }),
    )

    test(
      "an inbox ends when its transfer is forgotten",
      Effect.gen(function* () {
        const { store, created } = yield* createAndJoin
        const fiber = yield* Effect.fork(Stream.runCollect(store.inbox(created.transferId, "receiver")))
        yield* TestClock.adjust(ForgetMs)
        expect(Exit.isSuccess(yield* fiber.await)).toBe(true)
        expect(yield* failureTag(Stream.runDrain(store.inbox(created.transferId, "receiver")))).toBe(
          "TransferNotFound",
        )
      }),
    )

    test(
      "ping answers",
      Effect.gen(function* () {
        yield* (yield* TransferStore).ping
      }),
    )
  })
