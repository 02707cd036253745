import { createHash, randomInt } from "node:crypto"
import { Ids, SignalApi, TransferState } from "@p2pal/domain"
import { Clock, Data, Effect, Either, Layer, Metric, Option, Queue, Schedule, Schema, Stream } from "effect"
import { Redis } from "./Redis.js"
import * as Store from "./TransferStore.js"

/**
 * How often an inbox reads its mailbox with no doorbell. Doorbells lost while the subscriber reconnects
 * are rung again when it is back, so this is a last resort (and how a reader learns its transfer was
 * forgotten); every waiting socket costs two commands per poll, so it is slow.
 */
const PollMs = 20_000
/** How often each instance looks for transfers whose deadline passed, to count them. */
const SweepInterval = "1 second"
/**
 * The deadline index outlives its members' records by this much, so a sweep still finds a passed deadline
 * whose record is already gone (a retention shorter than the sweep interval, instances restarting).
 */
const DeadlinesSlackMs = 60_000
const HeartbeatInterval = "5 seconds"
const HeartbeatTtlMs = 15_000
/**
 * Compare-and-set rounds lost to other writers before giving up. A transfer has two clients and a
 * handful of writes, so losing more than once or twice in a row means something else keeps writing.
 */
const CasRetries = 10

/** A compare-and-set found the record changed since it was read: read it again and retry. */
class Conflict extends Data.TaggedError("Conflict")<{}> {}

/** Retries `attempt` while it loses to other writers, at most `CasRetries` times, then gives up. */
const casRetry = <A, E, R>(attempt: Effect.Effect<A, E | Conflict, R>) =>
  attempt.pipe(
    Effect.retry({ schedule: Schedule.recurs(CasRetries), while: (e) => e instanceof Conflict }),
    Effect.catchIf(
      (e): e is Conflict => e instanceof Conflict,
      () =>
        new Store.StoreUnavailable({ cause: `the transfer's record kept changing (${CasRetries} retries)` }),
    ),
  )

/**
 * Every key of a transfer expires with its record (`retentionMs` after its deadline or its end); the
 * deadline index a little after its longest-lived member. Tokens are keyed by their SHA-256 only.
 */
const key = {
  transfer: (transferId: string) => `p2pal:transfer:${transferId}`,
  nameplate: (nameplate: string) => `p2pal:nameplate:${nameplate}`,
  token: (digest: string) => `p2pal:token:${digest}`,
  mailbox: (transferId: string, side: Ids.Side) => `p2pal:mailbox:${transferId}:${side}`,
  doorbell: (transferId: string, side: Ids.Side) => `p2pal:doorbell:${transferId}:${side}`,
  deadlines: "p2pal:deadlines",
  instance: (instanceId: string) => `p2pal:instance:${instanceId}`,
}

/** A transfer's record; `tokens` are the SHA-256 digests of its tokens, so its keys can be extended. */
const TransferRecord = Schema.Struct({
  nameplate: Ids.Nameplate,
  tokens: Schema.Array(Schema.String),
  state: TransferState.TransferState,
})
type TransferRecord = typeof TransferRecord.Type
const RecordJson = Schema.parseJson(TransferRecord)

const TokenJson = Schema.parseJson(Schema.Struct({ transferId: Ids.TransferId, side: Ids.Side }))

const digest = (token: Ids.Token) => createHash("sha256").update(token).digest("base64url")

/**
 * Compare-and-set of a transfer's record: writes ARGV[2] only if the record KEYS[1] still reads ARGV[1]
 * ('' for none) and returns 0 otherwise. Creates the token keys KEYS[3..] with the values ARGV[7..], gives
 * every key of the transfer (KEYS[3..]) the record's TTL ARGV[3], and keeps the deadline index KEYS[2] in
 * step: member ARGV[5] is scored by its deadline ARGV[4] while live and removed once final (ARGV[4] ''),
 * and the index lives at least ARGV[6] more milliseconds.
 */
const WriteLua = `
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
for i = 7, #ARGV do redis.call('SET', KEYS[i - 4], ARGV[i]) end
for i = 3, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
if ARGV[4] == '' then
  redis.call('ZREM', KEYS[2], ARGV[5])
else
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
  local indexTtl = tonumber(ARGV[6])
  if redis.call('PTTL', KEYS[2]) < indexTtl then redis.call('PEXPIRE', KEYS[2], indexTtl) end
end
return 1
`

/** The lowest stream id after `id` ("ms-seq", or "ms" for "ms-0"): XTRIM MINID keeps ids from it on. */
const nextId = (id: string) => {
  const [ms, seq = "0"] = id.split("-")
  return `${ms}-${BigInt(seq) + 1n}`
}

/**
 * Appends ARGV[2] to the mailbox stream KEYS[2] and rings the doorbell ARGV[4], only if the record KEYS[1]
 * still reads ARGV[1] ('conflict' otherwise) and the mailbox holds fewer than ARGV[3] messages ('full'
 * otherwise; the ones its reader has seen are trimmed when it resumes after them, see `inbox`). The
 * mailbox expires with the record. Returns the message's id.
 */
const PostLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'conflict' end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[3]) then return 'full' end
local id = redis.call('XADD', KEYS[2], '*', 'message', ARGV[2])
redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
redis.call('PUBLISH', ARGV[4], id)
return id
`

/** A token's key, to create along with a record: the token's digest and what it authenticates as. */
interface TokenKey {
  readonly digest: string
  readonly value: string
}

/** A fresh token for one side of one transfer, and the key that will stand for it. */
const issueToken = (transferId: Ids.TransferId, side: Ids.Side) => {
  const token = Ids.Token.make(Store.randomId())
  const value = Schema.encodeSync(TokenJson)({ transferId, side })
  return { token, key: { digest: digest(token), value } satisfies TokenKey }
}

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

    const instance = key.instance(Store.randomId())
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

    // Every instance sweeps; ZREM counts each removed member for exactly one of them.
    const sweep = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      const due = yield* redis.use((client) => client.zrangebyscore(key.deadlines, "-inf", now))
      if (due.length === 0) return
      const removed = yield* redis.use((client) => client.zrem(key.deadlines, ...due))
      yield* Metric.incrementBy(Store.expiredTransfers, removed)
    })
    yield* Effect.forkScoped(Effect.repeat(Effect.ignore(sweep), Schedule.spaced(SweepInterval)))

    /** The record as stored (for compare-and-set) and decoded; None once forgotten. */
    const read = (transferId: Ids.TransferId) =>
      Effect.flatMap(
        redis.use((client) => client.get(key.transfer(transferId))),
        (raw) =>
          raw === null
            ? Effect.succeed(Option.none())
            : Effect.map(Effect.orDie(Schema.decode(RecordJson)(raw)), (record) =>
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

    /**
     * Stores `record` with `newTokens` added, if the stored one still reads `expected`; false when another
     * writer came first.
     */
    const write = (
      transferId: Ids.TransferId,
      expected: string,
      record: TransferRecord,
      newTokens: ReadonlyArray<TokenKey>,
      now: number,
    ) => {
      const stored: TransferRecord = {
        ...record,
        tokens: [...record.tokens, ...newTokens.map((token) => token.digest)],
      }
      const deadline = TransferState.isFinal(record.state.status) ? "" : String(record.state.expiresAt)
      const keys = [
        key.transfer(transferId),
        key.deadlines,
        ...newTokens.map((token) => key.token(token.digest)),
        key.nameplate(record.nameplate),
        ...record.tokens.map(key.token),
        key.mailbox(transferId, "sender"),
        key.mailbox(transferId, "receiver"),
      ]
      const ttl = ttlOf(record.state, now)
      const args = [
        expected,
        JSON.stringify(stored),
        ttl,
        deadline,
        transferId,
        ttl + DeadlinesSlackMs,
        ...newTokens.map((token) => token.value),
      ]
      return Effect.map(
        redis.use((client) => client.eval(WriteLua, keys.length, ...keys, ...args)),
        (written) => written === 1,
      )
    }

    /**
     * Applies `event` with `TransferState.step` (the one state machine) and writes the result with
     * compare-and-set, starting over from a fresh read when another writer came first.
     */
    const apply = (
      transferId: Ids.TransferId,
      event: TransferState.Event,
      newTokens: ReadonlyArray<TokenKey>,
    ) =>
      casRetry(
        Effect.gen(function* () {
          const { raw, record } = yield* lookup(transferId)
          const next = TransferState.step(record.state, event)
          if (Either.isLeft(next)) {
            const status = TransferState.observe(record.state, event.at).status
            return yield* Store.rejectionError(next.left, status, event._tag)
          }
          if (!(yield* write(transferId, raw, { ...record, state: next.right }, newTokens, event.at)))
            return yield* new Conflict()
          return next.right
        }),
      )

    /** Claims a free nameplate for `transferId`: a few random picks per length, shortest first. */
    const allocate = (transferId: Ids.TransferId, ttlMs: number) =>
      Effect.gen(function* () {
        for (const digits of Store.NameplateDigits) {
          for (let i = 0; i < Store.NameplateTries; i++) {
            const candidate = String(randomInt(10 ** (digits - 1), 10 ** digits))
            const claimed = yield* redis.use((client) =>
              client.set(key.nameplate(candidate), transferId, "PX", ttlMs, "NX"),
            )
            if (claimed === "OK") return Ids.Nameplate.make(candidate)
          }
        }
        return yield* new Store.NameplatesExhausted()
      })

    const create = Effect.fn("TransferStore.create")(function* (ttlMs: number) {
      const now = yield* Clock.currentTimeMillis
      const state = TransferState.initial(now, ttlMs)
      const transferId = Ids.TransferId.make(Store.randomId())
      const nameplate = yield* allocate(transferId, ttlOf(state, now))
      const sender = issueToken(transferId, "sender")
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
      const claimed = yield* redis.use((client) => client.get(key.nameplate(nameplate)))
      if (claimed === null) return yield* new Store.TransferNotFound()
      const transferId = Ids.TransferId.make(claimed)
      const receiver = issueToken(transferId, "receiver")
      const state = yield* apply(transferId, { _tag: "Join", at: now }, [receiver.key])
      return { transferId, receiverToken: receiver.token, expiresAt: state.expiresAt } satisfies Store.Joined
    })

    const authenticate = Effect.fn("TransferStore.authenticate")(function* (token: Ids.Token) {
      const now = yield* Clock.currentTimeMillis
      const raw = yield* redis.use((client) => client.get(key.token(digest(token))))
      if (raw === null) return yield* new Store.Unauthorized()
      const authenticated = yield* Effect.orDie(Schema.decode(TokenJson)(raw))
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
      yield* casRetry(
        Effect.gen(function* () {
          const { raw, record } = yield* lookup(transferId)
          yield* Store.ensureOpen(record.state, now)
          const keys = [key.transfer(transferId), key.mailbox(transferId, to)]
          const args = [raw, message, Store.MailboxCapacity, key.doorbell(transferId, to)]
          const posted = yield* redis.use((client) => client.eval(PostLua, keys.length, ...keys, ...args))
          if (posted === "full") return yield* new Store.MailboxFull()
          if (posted === "conflict") return yield* new Conflict()
        }),
      )
    })

    const inbox = (transferId: Ids.TransferId, side: Ids.Side, after: SignalApi.MessageId | undefined) =>
      Stream.unwrapScoped(
        Effect.gen(function* () {
          const rings = yield* Queue.sliding<void>(1)
          // Subscribed before the first read, so a message posted in between still rings.
          yield* redis.subscribe(key.doorbell(transferId, side), () => Queue.unsafeOffer(rings, undefined))
          let cursor = after
          // The side has seen everything up to `after`: those messages go, and their room with them.
          if (after !== undefined)
            yield* redis.use((client) => client.xtrim(key.mailbox(transferId, side), "MINID", nextId(after)))
          /** The messages after the cursor, moving it past them; None once the transfer is forgotten. */
          const next = Effect.gen(function* () {
            const [exists, entries] = yield* redis.use((client) =>
              Promise.all([
                client.exists(key.transfer(transferId)),
                client.xrange(key.mailbox(transferId, side), cursor === undefined ? "-" : `(${cursor}`, "+"),
              ]),
            )
            if (exists === 0) return Option.none()
            const deliveries = entries.map(([id, fields]): Store.Delivery => ({
              id: SignalApi.MessageId.make(id),
              message: fields[1]!,
            }))
            cursor = deliveries.at(-1)?.id ?? cursor
            return Option.some(deliveries)
          })
          const first = yield* next
          if (Option.isNone(first)) return yield* new Store.TransferNotFound()
          const wakeUps = Stream.merge(
            Stream.fromQueue(rings),
            Stream.fromSchedule(Schedule.spaced(options.pollMs ?? PollMs)),
          )
          const later = wakeUps.pipe(
            Stream.mapEffect(() => next),
            Stream.takeWhile(Option.isSome),
            Stream.mapConcat(Option.getOrElse(() => [])),
          )
          return Stream.concat(Stream.fromIterable(first.value), later)
        }),
      )

    return Store.TransferStore.of({ create, join, authenticate, transition, post, inbox, ping: redis.ping })
  })

/** Transfers shared by every instance on one Redis; each instance also keeps a heartbeat key. */
export const layer = (options: Options = {}): Layer.Layer<Store.TransferStore, never, Redis> =>
  Layer.scoped(Store.TransferStore, make(options))
