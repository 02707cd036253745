import { randomBytes } from "node:crypto"
import { TransferState } from "@p2pal/domain"
import type { Ids, SignalApi } from "@p2pal/domain"
import { Context, Data, Effect, Metric } from "effect"
import type { Stream } from "effect"

/**
 * At most this many messages are kept in one direction (signaling needs a few dozen, each reconnect
 * attempt a dozen more); a client that floods its peer cannot grow it. Kept, not consumed, so a socket
 * that reconnects (to any instance) catches up from the last id it saw; the ones before that id go then.
 */
export const MailboxCapacity = 256

/**
 * How long a transfer is remembered after it expired or ended, so a late client hears "expired" rather
 * than "not found". After that the record, its tokens, its mailboxes and its nameplate are gone.
 */
export const RetentionMs = 5 * 60 * 1000

/**
 * Transfers whose deadline passed before they completed or were aborted. Each store counts each such
 * transfer once, however many instances share it.
 */
export const expiredTransfers = Metric.counter("p2pal_transfers_expired_total", {
  description: "Transfers that expired before completing or being aborted.",
  incremental: true,
})

/** Once both sides are connected the transfer may run this long, whatever the code's TTL was. */
export const ActiveLeaseMs = 24 * 60 * 60 * 1000

export class TransferNotFound extends Data.TaggedError("TransferNotFound")<{}> {}
export class TransferExpired extends Data.TaggedError("TransferExpired")<{}> {}
export class TransferEnded extends Data.TaggedError("TransferEnded")<{
  readonly status: TransferState.Status
}> {}
export class AlreadyClaimed extends Data.TaggedError("AlreadyClaimed")<{}> {}
export class Unauthorized extends Data.TaggedError("Unauthorized")<{}> {}
export class TransitionNotAllowed extends Data.TaggedError("TransitionNotAllowed")<{
  readonly status: TransferState.Status
  readonly event: TransferState.Event["_tag"]
}> {}
export class MailboxFull extends Data.TaggedError("MailboxFull")<{}> {}
export class NameplatesExhausted extends Data.TaggedError("NameplatesExhausted")<{}> {}
/** The backing store did not answer (Redis down or restarting); the memory store never fails with it. */
export class StoreUnavailable extends Data.TaggedError("StoreUnavailable")<{ readonly cause: unknown }> {}

/** A refusal from `TransferState.step`. */
export type Rejected = TransferExpired | AlreadyClaimed | TransferEnded | TransitionNotAllowed

/** Why `TransferState.step` refused `event`, as the store's error; `status` is the state as of the event. */
export const rejectionError = (
  rejection: TransferState.Rejection,
  status: TransferState.Status,
  event: TransferState.Event["_tag"],
): Rejected => {
  switch (rejection) {
    case "expired":
      return new TransferExpired()
    case "already_claimed":
      return new AlreadyClaimed()
    case "final":
      return new TransferEnded({ status })
    case "not_allowed":
      return new TransitionNotAllowed({ status, event })
  }
}

/** Nameplate lengths, shortest first: a store moves to a longer one only when the shorter is crowded. */
export const NameplateDigits: ReadonlyArray<number> = [2, 3, 4, 5, 6]
/** Random picks at one nameplate length before moving on to a longer one. */
export const NameplateTries = 4

/** Transfer ids and tokens: 128 random bits, base64url (22 characters). */
export const randomId = (): string => randomBytes(16).toString("base64url")

/** When a transfer in `state` (as of `now`) is forgotten: `retentionMs` after its deadline or its end. */
export const forgetAt = (state: TransferState.TransferState, now: number, retentionMs: number): number =>
  (TransferState.isFinal(state.status) ? Math.min(now, state.expiresAt) : state.expiresAt) + retentionMs

/** Fails unless a transfer in `state` can still carry messages at `now`. */
export const ensureOpen = (
  state: TransferState.TransferState,
  now: number,
): Effect.Effect<void, TransferExpired | TransferEnded> => {
  const { status } = TransferState.observe(state, now)
  if (status === "expired") return Effect.fail(new TransferExpired())
  if (TransferState.isFinal(status)) return Effect.fail(new TransferEnded({ status }))
  return Effect.void
}

export interface Created {
  readonly nameplate: Ids.Nameplate
  readonly transferId: Ids.TransferId
  readonly senderToken: Ids.Token
  readonly expiresAt: number
}

export interface Joined {
  readonly transferId: Ids.TransferId
  readonly receiverToken: Ids.Token
  readonly expiresAt: number
}

/** A message in a side's mailbox; `id` grows with every message, so a reader can resume after it. */
export interface Delivery {
  readonly id: SignalApi.MessageId
  readonly message: string
}

export interface Authenticated {
  readonly transferId: Ids.TransferId
  readonly side: Ids.Side
}

/** The events a client may cause; the store stamps them with its Clock. */
export type Transition =
  | { readonly _tag: "Activate"; readonly leaseMs: number }
  | { readonly _tag: "Complete" }
  | { readonly _tag: "Abort" }

export interface Service {
  /** Issues a fresh nameplate (2 digits while they are plentiful, then 3, 4, ...) and the sender's token. */
  readonly create: (ttlMs: number) => Effect.Effect<Created, NameplatesExhausted | StoreUnavailable>
  /** Claims a nameplate for the receiver; succeeds at most once per transfer. */
  readonly join: (
    nameplate: Ids.Nameplate,
  ) => Effect.Effect<Joined, TransferNotFound | Rejected | StoreUnavailable>
  readonly authenticate: (
    token: Ids.Token,
  ) => Effect.Effect<Authenticated, Unauthorized | TransferExpired | TransferEnded | StoreUnavailable>
  readonly transition: (
    transferId: Ids.TransferId,
    transition: Transition,
  ) => Effect.Effect<TransferState.TransferState, TransferNotFound | Rejected | StoreUnavailable>
  /** Queues a message for `to`; only while the transfer is neither expired nor ended. */
  readonly post: (
    transferId: Ids.TransferId,
    to: Ids.Side,
    message: string,
  ) => Effect.Effect<
    void,
    TransferNotFound | TransferExpired | TransferEnded | MailboxFull | StoreUnavailable
  >
  /**
   * The messages for `side` after `after` (all of them when undefined), oldest first, then each new one
   * as it is posted. Every reader sees every message, except that a side resuming after `after` has seen
   * those before it: they are dropped, and their room in the mailbox is free again. The stream ends when
   * the transfer is forgotten.
   */
  readonly inbox: (
    transferId: Ids.TransferId,
    side: Ids.Side,
    after: SignalApi.MessageId | undefined,
  ) => Stream.Stream<Delivery, TransferNotFound | StoreUnavailable>
  /** Succeeds when the store can serve requests (readiness). */
  readonly ping: Effect.Effect<void, StoreUnavailable>
  /**
   * How many transfers count against the signal app's cap: in memory, every record held (until it is
   * forgotten, which bounds the memory); in Redis, every transfer not yet ended, of all instances.
   */
  readonly held: Effect.Effect<number, StoreUnavailable>
}

export class TransferStore extends Context.Tag("@p2pal/infra/TransferStore")<TransferStore, Service>() {}
