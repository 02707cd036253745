import { randomInt } from "node:crypto"
import { Ids, SignalApi, TransferState } from "@p2pal/domain"
import { Chunk, Clock, Effect, Either, Layer, Option, Queue, Schedule, Schema, Stream } from "effect"
import { Redis } from "./Redis.js"
import * as Deadlines from "./RedisDeadlines.js"
import * as Layout from "./RedisLayout.js"
import * as Store from "./TransferStore.js"

/**
 * How often the inboxes read their mailboxes with no doorbell. Doorbells lost while the subscriber
 * reconnects are rung again when it is back, so this is a last resort (and how a reader learns its
 * transfer was forgotten); every waiting socket costs two commands per poll, so it is slow. One timer
 * rings every inbox of the instance, rather than one timer each.
 */
const PollMs = 20_000
const HeartbeatInterval = "5 seconds"
const HeartbeatTtlMs = 15_000
export interface Options {
  /** How long a transfer is remembered after its deadline or its end; `RetentionMs` unless given. */
  readonly retentionMs?: number
  /** How often a waiting inbox reads its mailbox without a doorbell; `PollMs` unless given. */
  readonly pollMs?: number
}

const make = (options: Options) =>
  Effect.gen(function* () {
    const redis = yield* Redis
    const retentionMs = options.retentionMs ?? Store.RetentionMs

    const instance = Layout.key.instance(Store.randomId())
    const startedAt = yield* Clock.currentTimeMillis
    const heartbeat = redis.use((client) =>
      client.set(instance, JSON.stringify({ startedAt }), "PX", HeartbeatTtlMs),
    )
    // Registered first so it runs last, once the heartbeat has stopped.
    yield* Effect.addFinalizer(() => Effect.ignore(redis.use((client) => client.del(instance))))
    yield* Effect.forkScoped(Effect.repeat(Effect.ignore(heartbeat), Schedule.spaced(HeartbeatInterval)))

    /** How long every key of a transfer in `state` (as of `now`) lives. */
    const ttlOf = (state: TransferState.TransferState, now: number) =>
      Math.ceil(Store.forgetAt(state, now, retentionMs) - now)

    /** Each open inbox's doorbell, rung by the poll. */
    const inboxes = new Set<() => void>()
    const poll = Effect.sync(() => inboxes.forEach((ring) => ring()))
    yield* Effect.forkScoped(Effect.repeat(poll, Schedule.spaced(options.pollMs ?? PollMs)))

    /** The record as stored (for compare-and-set) and decoded; None once forgotten. */
    const read = (transferId: Ids.TransferId) =>
      Effect.flatMap(
        redis.use((client) => client.get(Layout.key.transfer(transferId))),
        (raw) =>
          raw === null
            ? Effect.succeed(Option.none())
            : Effect.map(Effect.orDie(Schema.decode(Layout.RecordJson)(raw)), (record) =>
                Option.some({ raw, record }),
              ),
      )

    const lookup = (transferId: Ids.TransferId) =>
      Effect.flatMap(
        read(transferId),
        Option.match({
          onNone: () => Effect.fail(new Store.TransferNotFound()),
          onSome: Effect.succeed,
        }),
      )

    const deadlines = yield* Deadlines.make(redis, read, ttlOf)

    /**
     * Stores `record` with `newTokens` added, if the stored one still reads `expected`, then brings the
     * deadline index in step; false when another writer came first.
     */
    const write = (
      transferId: Ids.TransferId,
      expected: string,
      record: Layout.TransferRecord,
      newTokens: ReadonlyArray<Layout.TokenKey>,
      now: number,
    ) =>
      Effect.gen(function* () {
        const { keys, args, raw } = Layout.writeCall(
          transferId,
          expected,
          record,
          newTokens,
          ttlOf(record.state, now),
        )
        const written = yield* redis.use((client) =>
          client.eval(Layout.WriteLua, keys.length, ...keys, ...args),
        )
        if (written !== 1) return false
        yield* deadlines.follow(transferId, { raw, record })
        return true
      })

    /**
     * Applies `event` with `TransferState.step` (the one state machine) and writes the result with
     * compare-and-set, starting over from a fresh read when another writer came first.
     */
    const apply = (
      transferId: Ids.TransferId,
      event: TransferState.Event,
      newTokens: ReadonlyArray<Layout.TokenKey>,
    ) =>
      Layout.casRetry(
        Effect.gen(function* () {
          const { raw, record } = yield* lookup(transferId)
          const next = TransferState.step(record.state, event)
          if (Either.isLeft(next)) {
            const status = TransferState.observe(record.state, event.at).status
            return yield* Store.rejectionError(next.left, status, event._tag)
          }
          if (!(yield* write(transferId, raw, { ...record, state: next.right }, newTokens, event.at)))
            return yield* new Layout.Conflict()
          return next.right
        }),
      )

    /** Claims a free nameplate for a new transfer: a few random picks per length, shortest first. */
    const allocate = (ttlMs: number) =>
      Effect.gen(function* () {
        for (const digits of Store.NameplateDigits) {
          for (let i = 0; i < Store.NameplateTries; i++) {
            const nameplate = Ids.Nameplate.make(String(randomInt(10 ** (digits - 1), 10 ** digits)))
            const transferId = Ids.TransferId.make(Layout.idFor(nameplate))
            const claimed = yield* redis.use((client) =>
              client.set(Layout.key.nameplate(nameplate), transferId, "PX", ttlMs, "NX"),
            )
            if (claimed === "OK") return { nameplate, transferId }
          }
        }
        return yield* new Store.NameplatesExhausted()
      })

    const create = Effect.fn("TransferStore.create")(function* (ttlMs: number) {
      const now = yield* Clock.currentTimeMillis
      const state = TransferState.initial(now, ttlMs)
      const { nameplate, transferId } = yield* allocate(ttlOf(state, now))
      const sender = Layout.issueToken(nameplate, transferId, "sender")
      yield* write(transferId, "", { nameplate, tokens: [], state }, [sender.key], now)
      return {
        nameplate,
        transferId,
        senderToken: sender.token,
        expiresAt: state.expiresAt,
      } satisfies Store.Created
    })

    const join = Effect.fn("TransferStore.join")(function* (nameplate: Ids.Nameplate) {
      const now = yield* Clock.currentTimeMillis
      const claimed = yield* redis.use((client) => client.get(Layout.key.nameplate(nameplate)))
      if (claimed === null) return yield* new Store.TransferNotFound()
      const transferId = Ids.TransferId.make(claimed)
      const receiver = Layout.issueToken(nameplate, transferId, "receiver")
      const state = yield* apply(transferId, { _tag: "Join", at: now }, [receiver.key])
      return { transferId, receiverToken: receiver.token, expiresAt: state.expiresAt } satisfies Store.Joined
    })

    const authenticate = Effect.fn("TransferStore.authenticate")(function* (token: Ids.Token) {
      const now = yield* Clock.currentTimeMillis
      const raw = yield* redis.use((client) => client.get(Layout.tokenKey(token)))
      if (raw === null) return yield* new Store.Unauthorized()
      const authenticated = yield* Effect.orDie(Schema.decode(Layout.TokenJson)(raw))
      const found = yield* read(authenticated.transferId)
      if (Option.isNone(found)) return yield* new Store.Unauthorized()
      yield* Store.ensureOpen(found.value.record.state, now)
      return authenticated satisfies Store.Authenticated
    })

    const transition = Effect.fn("TransferStore.transition")(function* (
      transferId: Ids.TransferId,
      transition: Store.Transition,
    ) {
      const at = yield* Clock.currentTimeMillis
      return yield* apply(transferId, { ...transition, at }, [])
    })

    const post = Effect.fn("TransferStore.post")(function* (
      transferId: Ids.TransferId,
      to: Ids.Side,
      message: string,
    ) {
      const now = yield* Clock.currentTimeMillis
      yield* Layout.casRetry(
        Effect.gen(function* () {
          const { raw, record } = yield* lookup(transferId)
          yield* Store.ensureOpen(record.state, now)
          const { keys, args } = Layout.postCall(transferId, to, raw, message)
          const posted = yield* redis.use((client) =>
            client.eval(Layout.PostLua, keys.length, ...keys, ...args),
          )
          if (posted === "full") return yield* new Store.MailboxFull()
          if (posted === "conflict") return yield* new Layout.Conflict()
        }),
      )
    })

    const inbox = (transferId: Ids.TransferId, side: Ids.Side, after: SignalApi.MessageId | undefined) =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const rings = yield* Queue.sliding<void>(1)
          const ring = () => Queue.unsafeOffer(rings, undefined)
          // Subscribed before the first read, so a message posted in between still rings.
          yield* redis.subscribe(Layout.key.doorbell(transferId, side), ring)
          yield* Effect.acquireRelease(
            Effect.sync(() => inboxes.add(ring)),
            () => Effect.sync(() => inboxes.delete(ring)),
          )
          let cursor = after
          // The side has seen everything up to `after`: those messages go, and their room with them.
          if (after !== undefined)
            yield* redis.use((client) =>
              client.xtrim(Layout.key.mailbox(transferId, side), "MINID", Layout.nextId(after)),
            )
          /** The messages after the cursor, moving it past them; None once the transfer is forgotten. */
          const next = Effect.gen(function* () {
            const [exists, entries] = yield* redis.use((client) =>
              Promise.all([
                client.exists(Layout.key.transfer(transferId)),
                client.xrange(
                  Layout.key.mailbox(transferId, side),
                  cursor === undefined ? "-" : `(${cursor}`,
                  "+",
                ),
              ]),
            )
            if (exists === 0) return Option.none()
            const deliveries = entries.map(([id, fields]): Store.Delivery => ({
              id: SignalApi.MessageId.make(id),
              message: fields[1]!,
            }))
            cursor = deliveries.at(-1)?.id ?? cursor
            return Option.some(Chunk.unsafeFromArray(deliveries))
          })
          const first = yield* next
          if (Option.isNone(first)) return yield* new Store.TransferNotFound()
          // One pull loop, no fiber of its own: a waiting reader holds only its queue of one ring.
          const later = Stream.repeatEffectChunkOption(
            Effect.zipRight(Queue.take(rings), next).pipe(
              Effect.mapError(Option.some),
              Effect.flatMap(
                Option.match({ onNone: () => Effect.fail(Option.none()), onSome: Effect.succeed }),
              ),
            ),
          )
          return Stream.concat(Stream.fromChunk(first.value), later)
        }),
      )

    return Store.TransferStore.of({
      create,
      join,
      authenticate,
      transition,
      post,
      inbox,
      ping: redis.ping,
      held: deadlines.held,
    })
  })

/** Transfers shared by every instance on one Redis; each instance also keeps a heartbeat Layout.key. */
export const layer = (options: Options = {}): Layer.Layer<Store.TransferStore, never, Redis> =>
  Layer.scoped(Store.TransferStore, make(options))
