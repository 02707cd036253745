import { Ids } from "@p2pal/domain"
import { describe, expect, it } from "@effect/vitest"
import { SignalApi } from "@p2pal/domain"
import { Chunk, Effect, Either, Exit, Layer, Metric, Option, Schema, Stream } from "effect"
import { type Delivery, expiredTransfers, MailboxCapacity, TransferStore } from "../src/TransferStore.js"

const failureTag = <A, E extends { readonly _tag: string }, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.flip(effect), (error) => error._tag)

const messages = (deliveries: Chunk.Chunk<Delivery>) => Chunk.toArray(deliveries).map((d) => d.message)

/** How a store's clock is driven: the TestClock for memory, real (short) time for Redis. */
export interface ContractTime {
  /** The TTL transfers are created with; time-based tests pass multiples of it. */
  readonly ttlMs: number
  /** After a transfer's deadline, by when the store has forgotten it. */
  readonly forgetMs: number
  readonly elapse: (ms: number) => Effect.Effect<void>
  /** Runs one test: `it.effect` (TestClock) or `it.live`. */
  readonly it: typeof it.effect | typeof it.live
  /** The store's clock reads the current time plus this at the start of a test. */
  readonly now: Effect.Effect<number>
}

/** The behaviour every TransferStore must have; each test gets a fresh store from `layer`. */
export const transferStoreContract = (
  name: string,
  layer: Layer.Layer<TransferStore, unknown>,
  time: ContractTime,
) =>
  describe(`TransferStore contract: ${name}`, () => {
    const TtlMs = time.ttlMs
    const ForgetMs = time.forgetMs
    const test = (title: string, body: Effect.Effect<void, unknown, TransferStore>) =>
      time.it(title, () => Effect.provide(body, layer))
    const createAndJoin = Effect.gen(function* () {
      const store = yield* TransferStore
      const created = yield* store.create(TtlMs)
      const joined = yield* store.join(created.nameplate)
      return { store, created, joined }
    })

    test(
      "create issues a 2-digit nameplate, random ids and a deadline from the clock",
      Effect.gen(function* () {
        const store = yield* TransferStore
        const now = yield* time.now
        const created = yield* store.create(TtlMs)
        expect(created.nameplate).toMatch(/^[1-9][0-9]$/)
        // 128 random bits; in Redis after the nameplate, so every key of the transfer is found in its slot.
        const random = new RegExp(`^(${created.nameplate}_)?[A-Za-z0-9_-]{22}$`)
        expect(created.transferId).toMatch(random)
        expect(created.senderToken).toMatch(random)
        expect(created.senderToken).not.toBe(created.transferId)
        expect(created.expiresAt - now).toBeGreaterThanOrEqual(TtlMs)
        expect(created.expiresAt - now).toBeLessThan(TtlMs + 1_000)
      }),
    )

    test(
      "held counts the transfers created (the signal app's --max-transfers cap), and drops them once forgotten",
      Effect.gen(function* () {
        const store = yield* TransferStore
        const before = yield* store.held
        yield* Effect.replicateEffect(store.create(TtlMs), 3)
        expect(yield* store.held).toBe(before + 3)
        yield* time.elapse(TtlMs + ForgetMs)
        expect(yield* store.held).toBe(before)
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
      "of 50 concurrent joins of one nameplate exactly one succeeds; the others find it already claimed",
      Effect.gen(function* () {
        const store = yield* TransferStore
        const created = yield* store.create(TtlMs)
        const joins = yield* Effect.all(
          Array.from({ length: 50 }, () => Effect.either(store.join(created.nameplate))),
          {
            concurrency: "unbounded",
          },
        )
        const [winner, ...others] = joins.filter(Either.isRight)
        expect(others).toHaveLength(0)
        expect(joins.filter(Either.isLeft).map((lost) => lost.left._tag)).toEqual(
          Array(49).fill("AlreadyClaimed"),
        )
        expect(yield* store.authenticate(winner!.right.receiverToken)).toEqual({
          transferId: created.transferId,
          side: "receiver",
        })
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
        yield* time.elapse(TtlMs)
        expect(yield* failureTag(store.join(created.nameplate))).toBe("TransferExpired")
        expect(yield* failureTag(store.authenticate(created.senderToken))).toBe("TransferExpired")
        expect(yield* failureTag(store.post(created.transferId, "receiver", "late"))).toBe("TransferExpired")
        yield* time.elapse(ForgetMs)
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
        // 200 distinct nameplates cannot all have 2 digits. How full 2 digits get before longer ones appear
        // is the store's policy (memory: half; Redis: what a few random picks find free).
        expect(nameplates.filter((nameplate) => nameplate.length === 2).length).toBeGreaterThan(40)
        yield* time.elapse(ForgetMs)
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
        const now = yield* time.now
        const active = yield* store.transition(created.transferId, { _tag: "Activate", leaseMs: 10 * TtlMs })
        expect(active.status).toBe("active")
        expect(active.expiresAt - now).toBeGreaterThanOrEqual(10 * TtlMs)
        yield* time.elapse(2 * TtlMs)
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
      "a transfer that expires before completing or being aborted is counted once",
      Effect.gen(function* () {
        const store = yield* TransferStore
        const before = (yield* Metric.value(expiredTransfers)).count
        yield* store.create(TtlMs)
        yield* createAndJoin
        const aborted = yield* store.create(TtlMs)
        yield* store.transition(aborted.transferId, { _tag: "Abort" })
        yield* time.elapse(ForgetMs)
        expect((yield* Metric.value(expiredTransfers)).count - before).toBe(2)
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
        const toReceiver = yield* Stream.runCollect(Stream.take(store.inbox(id, "receiver", undefined), 3))
        expect(messages(toReceiver)).toEqual(["offer", "ice-1", "ice-2"])
        const toSender = yield* Stream.runCollect(Stream.take(store.inbox(id, "sender", undefined), 1))
        expect(messages(toSender)).toEqual(["answer"])
      }),
    )

    test(
      "a reader that comes back with the last id it saw gets only what came after; what it saw is gone",
      Effect.gen(function* () {
        const { store, created } = yield* createAndJoin
        const id = created.transferId
        yield* Effect.forEach(["a", "b", "c"], (m) => store.post(id, "sender", m))
        const first = Chunk.toArray(
          yield* Stream.runCollect(Stream.take(store.inbox(id, "sender", undefined), 3)),
        )
        const ids = first.map((d) => d.id)
        expect(new Set(ids).size).toBe(3)
        expect(ids.every((x) => Option.isSome(Schema.decodeUnknownOption(SignalApi.MessageId)(x)))).toBe(true)
        yield* store.post(id, "sender", "d")
        const resumed = yield* Stream.runCollect(Stream.take(store.inbox(id, "sender", ids[1]), 2))
        expect(messages(resumed)).toEqual(["c", "d"])
        expect(Chunk.toArray(resumed)[0]!.id).toBe(ids[2])
        // Every other reader still sees all that the side has not shown it has seen.
        const again = yield* Stream.runCollect(Stream.take(store.inbox(id, "sender", undefined), 2))
        expect(messages(again)).toEqual(["c", "d"])
      }),
    )

    test(
      "a subscriber waiting on an empty mailbox gets later messages",
      Effect.gen(function* () {
        const { store, created } = yield* createAndJoin
        const fiber = yield* Effect.fork(
          Stream.runCollect(Stream.take(store.inbox(created.transferId, "sender", undefined), 2)),
        )
        yield* store.post(created.transferId, "sender", "a")
        yield* store.post(created.transferId, "sender", "b")
        expect(messages(yield* fiber.await.pipe(Effect.flatten))).toEqual(["a", "b"])
      }),
    )

    test(
      `a mailbox holds at most ${MailboxCapacity} messages the side has not shown it has seen`,
      Effect.gen(function* () {
        const { store, created } = yield* createAndJoin
        const id = created.transferId
        yield* Effect.forEach(
          Array.from({ length: MailboxCapacity }, (_, i) => String(i)),
          (m) => store.post(id, "receiver", m),
        )
        expect(yield* failureTag(store.post(id, "receiver", "one too many"))).toBe("MailboxFull")
        yield* store.post(id, "sender", "the other direction is independent")
        const first = Chunk.toArray(
          yield* Stream.runCollect(Stream.take(store.inbox(id, "receiver", undefined), 100)),
        )
        expect(first[0]!.message).toBe("0")
        // The side comes back after the 100th message: room for 100 more, and not one more.
        const resumed = yield* Stream.runCollect(Stream.take(store.inbox(id, "receiver", first[99]!.id), 1))
        expect(messages(resumed)).toEqual(["100"])
        yield* Effect.forEach(
          Array.from({ length: 100 }, (_, i) => `again ${i}`),
          (m) => store.post(id, "receiver", m),
        )
        expect(yield* failureTag(store.post(id, "receiver", "one too many"))).toBe("MailboxFull")
      }),
    )

    test(
      "an inbox ends when its transfer is forgotten",
      Effect.gen(function* () {
        const { store, created } = yield* createAndJoin
        const fiber = yield* Effect.fork(
          Stream.runCollect(store.inbox(created.transferId, "receiver", undefined)),
        )
        yield* time.elapse(ForgetMs)
        expect(Exit.isSuccess(yield* fiber.await)).toBe(true)
        expect(
          yield* failureTag(Stream.runDrain(store.inbox(created.transferId, "receiver", undefined))),
        ).toBe("TransferNotFound")
      }),
    )

    test(
      "ping answers",
      Effect.gen(function* () {
        yield* (yield* TransferStore).ping
      }),
    )
  })
