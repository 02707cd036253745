import { createHash } from "node:crypto"
import { Ids, TransferState } from "@p2pal/domain"
import { Data, Effect, Schedule, Schema } from "effect"
import * as Store from "./TransferStore.js"

/**
 * How RedisTransferStore lays transfers out in Redis: its keys, what they hold, the scripts that change
 * them with compare-and-set, and how a lost compare-and-set is retried.
 */

/**
 * Every key of a transfer carries its nameplate as hash tag, so Redis Cluster keeps them in one slot and
 * the scripts below may touch them together; its id and tokens start with the nameplate, so each key is
 * found from whichever of them a request holds. Every key of a transfer expires with its record
 * (`retentionMs` after its deadline or its end). The deadline index and the instances' heartbeats are
 * keys of no transfer, each in a slot of its own. Tokens are keyed by their SHA-256 only.
 */
export const key = {
  transfer: (transferId: Ids.TransferId) => `p2pal:{${nameplateOf(transferId)}}:transfer:${transferId}`,
  nameplate: (nameplate: Ids.Nameplate) => `p2pal:{${nameplate}}:nameplate`,
  token: (nameplate: string, digest: string) => `p2pal:{${nameplate}}:token:${digest}`,
  mailbox: (transferId: Ids.TransferId, side: Ids.Side) =>
    `p2pal:{${nameplateOf(transferId)}}:mailbox:${transferId}:${side}`,
  doorbell: (transferId: Ids.TransferId, side: Ids.Side) => `p2pal:doorbell:${transferId}:${side}`,
  deadlines: "p2pal:deadlines",
  instance: (instanceId: string) => `p2pal:instance:${instanceId}`,
}

/** `<nameplate>_<128 random bits>`: a transfer id or a token of the transfer holding `nameplate`. */
export const idFor = (nameplate: Ids.Nameplate) => `${nameplate}_${Store.randomId()}`

/** The nameplate an id or a token starts with (a nameplate has digits only; the first `_` ends it). */
const nameplateOf = (id: string) => id.split("_", 1)[0]!

/** The key of `token`, found from the token alone. */
export const tokenKey = (token: Ids.Token) => key.token(nameplateOf(token), digest(token))

/** A transfer's record; `tokens` are the SHA-256 digests of its tokens, so its keys can be extended. */
export const TransferRecord = Schema.Struct({
  nameplate: Ids.Nameplate,
  tokens: Schema.Array(Schema.String),
  state: TransferState.TransferState,
})
export type TransferRecord = typeof TransferRecord.Type
export const RecordJson = Schema.parseJson(TransferRecord)

export const TokenJson = Schema.parseJson(Schema.Struct({ transferId: Ids.TransferId, side: Ids.Side }))

export const digest = (token: Ids.Token) => createHash("sha256").update(token).digest("base64url")

/**
 * Compare-and-set of a transfer's record: writes ARGV[2] only if the record KEYS[1] still reads ARGV[1]
 * ('' for none) and returns 0 otherwise. Creates the token keys KEYS[2..] with the values ARGV[4..] and
 * gives every key of the transfer (KEYS[2..]) the record's TTL ARGV[3].
 */
export const WriteLua = `
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
for i = 4, #ARGV do redis.call('SET', KEYS[i - 2], ARGV[i]) end
for i = 2, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
return 1
`

/** WriteLua's keys and arguments: store `record` with `newTokens` added, if the record still reads `expected`. */
export const writeCall = (
  transferId: Ids.TransferId,
  expected: string,
  record: TransferRecord,
  newTokens: ReadonlyArray<TokenKey>,
  ttl: number,
) => {
  const stored: TransferRecord = {
    ...record,
    tokens: [...record.tokens, ...newTokens.map((token) => token.digest)],
  }
  const tokenKey = (digest: string) => key.token(record.nameplate, digest)
  const keys = [
    key.transfer(transferId),
    ...newTokens.map((token) => tokenKey(token.digest)),
    key.nameplate(record.nameplate),
    ...record.tokens.map(tokenKey),
    key.mailbox(transferId, "sender"),
    key.mailbox(transferId, "receiver"),
  ]
  const raw = JSON.stringify(stored)
  return { keys, args: [expected, raw, ttl, ...newTokens.map((token) => token.value)], raw }
}

/** The lowest stream id after `id` ("ms-seq", or "ms" for "ms-0"): XTRIM MINID keeps ids from it on. */
export const nextId = (id: string) => {
  const [ms, seq = "0"] = id.split("-")
  return `${ms}-${BigInt(seq) + 1n}`
}

/**
 * Appends ARGV[2] to the mailbox stream KEYS[2] and rings the doorbell ARGV[4], only if the record KEYS[1]
 * still reads ARGV[1] ('conflict' otherwise) and the mailbox holds fewer than ARGV[3] messages ('full'
 * otherwise; the messages a reader has seen go when it resumes after them, in the store's `inbox`).
 * The mailbox expires with the record. Returns the message's id.
 */
export const PostLua = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'conflict' end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[3]) then return 'full' end
local id = redis.call('XADD', KEYS[2], '*', 'message', ARGV[2])
redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
redis.call('PUBLISH', ARGV[4], id)
return id
`

/** A token's key, to create along with a record: the token's digest and what it authenticates as. */
export interface TokenKey {
  readonly digest: string
  readonly value: string
}

/** A fresh token for one side of the transfer holding `nameplate`, and the key that will stand for it. */
export const issueToken = (nameplate: Ids.Nameplate, transferId: Ids.TransferId, side: Ids.Side) => {
  const token = Ids.Token.make(idFor(nameplate))
  const value = Schema.encodeSync(TokenJson)({ transferId, side })
  return { token, key: { digest: digest(token), value } satisfies TokenKey }
}

/** PostLua's keys and arguments: post `message` to `to`'s mailbox, if the record still reads `expected`. */
export const postCall = (transferId: Ids.TransferId, to: Ids.Side, expected: string, message: string) => ({
  keys: [key.transfer(transferId), key.mailbox(transferId, to)],
  args: [expected, message, Store.MailboxCapacity, key.doorbell(transferId, to)],
})

/**
 * Compare-and-set rounds lost to other writers before giving up. A transfer has two clients and a
 * handful of writes, so losing more than once or twice in a row means something else keeps writing.
 */
const CasRetries = 10

/** A compare-and-set found the record changed since it was read: read it again and retry. */
export class Conflict extends Data.TaggedError("Conflict")<{}> {}

/** Retries `attempt` while it loses to other writers, at most `CasRetries` times, then gives up. */
export const casRetry = <A, E, R>(attempt: Effect.Effect<A, E | Conflict, R>) =>
  attempt.pipe(
    Effect.retry({ schedule: Schedule.recurs(CasRetries), while: (e) => e instanceof Conflict }),
    Effect.catchIf(
      (e): e is Conflict => e instanceof Conflict,
      () =>
        new Store.StoreUnavailable({ cause: `the transfer's record kept changing (${CasRetries} retries)` }),
    ),
  )
