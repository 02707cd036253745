import { randomInt } from "node:crypto"
import { Ids, SignalApi, TransferState } from "@p2pal/domain"
import { Chunk, Clock, Effect, Either, Layer, Metric, Option, Schedule, Stream } from "effect"
import * as Store from "./TransferStore.js"

const SweepInterval = "30 seconds"

/**
 * What all mailboxes of this instance may hold in all, in UTF-16 code units (about bytes for the ASCII
 * that clients send): each transfer's own cap times --max-transfers would be far more than any machine
 * has. Past it a post fails as a full mailbox would.
 */
export const MailboxesMaxChars = 64 * 1024 * 1024

interface Transfer {
  readonly transferId: Ids.TransferId
  readonly nameplate: Ids.Nameplate
  readonly senderToken: Ids.Token
  receiverToken: Ids.Token | undefined
  state: TransferState.TransferState
  /** When the sweep drops the record. */
  forgetAt: number
  /** Set when the sweep drops the record: its readers' streams end. */
  forgotten: boolean
  /** Made at a side's first message or reader: a transfer waiting for its receiver holds none. */
  readonly mailboxes: Partial<Record<Ids.Side, Mailbox>>
}

/** A side's messages not yet known to be seen; `messages[i]` has id `dropped + i + 1`. */
interface Mailbox {
  readonly messages: Array<string>
  /** How many messages before them the side has seen (it resumed after them), and are gone. */
  dropped: number
  /** Readers waiting for a message or for the transfer to be forgotten; each is woken once, then removed. */
  readonly waiting: Set<() => void>
}

const mailboxOf = (transfer: Transfer, side: Ids.Side): Mailbox =>
  (transfer.mailboxes[side] ??= { messages: [], dropped: 0, waiting: new Set() })

const wake = (mailbox: Mailbox) => {
  const waiting = [...mailbox.waiting]
  mailbox.waiting.clear()
  waiting.forEach((resume) => resume())
}

/**
 * Until `ready()` holds. Checked as the wait begins, not before: a fiber may yield between its own check
 * and the wait, and a message posted then would ring no one.
 */
const until = (mailbox: Mailbox, ready: () => boolean) =>
  Effect.async<void>((resume) => {
    if (ready()) return resume(Effect.void)
    const resumeOnce = () => resume(Effect.void)
    mailbox.waiting.add(resumeOnce)
    return Effect.sync(() => mailbox.waiting.delete(resumeOnce))
  })

/** Every operation checks and updates the maps with no yield in between, so concurrent fibers cannot interleave. */
const make = Effect.gen(function* () {
  const transfers = new Map<Ids.TransferId, Transfer>()
  const byNameplate = new Map<string, Transfer>()
  const byToken = new Map<Ids.Token, Store.Authenticated>()
  const inUseByDigits = new Map<number, number>()

  const countNameplate = (nameplate: string, delta: number) =>
    inUseByDigits.set(nameplate.length, (inUseByDigits.get(nameplate.length) ?? 0) + delta)

  const pickNameplate = (): Ids.Nameplate | undefined => {
    for (const digits of Store.NameplateDigits) {
      const low = 10 ** (digits - 1)
      const high = 10 ** digits
      if ((inUseByDigits.get(digits) ?? 0) * 2 > high - low) continue
      for (let i = 0; i < Store.NameplateTries; i++) {
        const candidate = String(randomInt(low, high))
        if (!byNameplate.has(candidate)) return Ids.Nameplate.make(candidate)
      }
    }
    return undefined
  }

  /** The characters all mailboxes hold now (see MailboxesMaxChars). */
  let mailboxChars = 0
  const sizeOf = (messages: ReadonlyArray<string>) =>
    messages.reduce((sum, message) => sum + message.length, 0)

  const forget = (transfer: Transfer) => {
    transfer.forgotten = true
    transfers.delete(transfer.transferId)
    byNameplate.delete(transfer.nameplate)
    countNameplate(transfer.nameplate, -1)
    byToken.delete(transfer.senderToken)
    if (transfer.receiverToken !== undefined) byToken.delete(transfer.receiverToken)
    for (const mailbox of Object.values(transfer.mailboxes)) {
      mailboxChars -= sizeOf(mailbox.messages)
      wake(mailbox)
    }
  }

  const sweep = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const due = [...transfers.values()].filter((transfer) => transfer.forgetAt <= now)
    // Counted when forgotten rather than at the deadline: the same transfers, once each, a retention later.
    const expired = due.filter((transfer) => TransferState.observe(transfer.state, now).status === "expired")
    yield* Metric.incrementBy(Store.expiredTransfers, expired.length)
    due.forEach(forget)
  })
  yield* Effect.forkScoped(Effect.repeat(sweep, Schedule.spaced(SweepInterval)))

  const lookup = (transferId: Ids.TransferId) =>
    Effect.suspend(() => {
      const transfer = transfers.get(transferId)
      return transfer === undefined ? Effect.fail(new Store.TransferNotFound()) : Effect.succeed(transfer)
    })

  const apply = (transfer: Transfer, event: TransferState.Event) =>
    Effect.suspend(() => {
      const next = TransferState.step(transfer.state, event)
      if (Either.isLeft(next)) {
        const status = TransferState.observe(transfer.state, event.at).status
        return Effect.fail(Store.rejectionError(next.left, status, event._tag))
      }
      transfer.state = next.right
      transfer.forgetAt = Store.forgetAt(next.right, event.at, Store.RetentionMs)
      return Effect.succeed(next.right)
    })

  const create = Effect.fn("TransferStore.create")(function* (ttlMs: number) {
    const now = yield* Clock.currentTimeMillis
    const nameplate = pickNameplate()
    if (nameplate === undefined) return yield* new Store.NameplatesExhausted()
    const state = TransferState.initial(now, ttlMs)
    const transfer: Transfer = {
      transferId: Ids.TransferId.make(Store.randomId()),
      nameplate,
      senderToken: Ids.Token.make(Store.randomId()),
      receiverToken: undefined,
      state,
      forgetAt: Store.forgetAt(state, now, Store.RetentionMs),
      forgotten: false,
      mailboxes: {},
    }
    transfers.set(transfer.transferId, transfer)
    byNameplate.set(nameplate, transfer)
    countNameplate(nameplate, 1)
    byToken.set(transfer.senderToken, { transferId: transfer.transferId, side: "sender" })
    return {
      nameplate,
      transferId: transfer.transferId,
      senderToken: transfer.senderToken,
      expiresAt: state.expiresAt,
    } satisfies Store.Created
  })

  const join = Effect.fn("TransferStore.join")(function* (nameplate: Ids.Nameplate) {
    const now = yield* Clock.currentTimeMillis
    const transfer = byNameplate.get(nameplate)
    if (transfer === undefined) return yield* new Store.TransferNotFound()
    const state = yield* apply(transfer, { _tag: "Join", at: now })
    const receiverToken = Ids.Token.make(Store.randomId())
    transfer.receiverToken = receiverToken
    byToken.set(receiverToken, { transferId: transfer.transferId, side: "receiver" })
    return {
      transferId: transfer.transferId,
      receiverToken,
      expiresAt: state.expiresAt,
    } satisfies Store.Joined
  })

  const authenticate = Effect.fn("TransferStore.authenticate")(function* (token: Ids.Token) {
    const now = yield* Clock.currentTimeMillis
    const authenticated = byToken.get(token)
    const transfer = authenticated && transfers.get(authenticated.transferId)
    if (authenticated === undefined || transfer === undefined) return yield* new Store.Unauthorized()
    yield* Store.ensureOpen(transfer.state, now)
    return authenticated
  })

  const transition = Effect.fn("TransferStore.transition")(function* (
    transferId: Ids.TransferId,
    transition: Store.Transition,
  ) {
    const at = yield* Clock.currentTimeMillis
    const transfer = yield* lookup(transferId)
    return yield* apply(transfer, { ...transition, at })
  })

  const post = Effect.fn("TransferStore.post")(function* (
    transferId: Ids.TransferId,
    to: Ids.Side,
    message: string,
  ) {
    const now = yield* Clock.currentTimeMillis
    const transfer = yield* lookup(transferId)
    yield* Store.ensureOpen(transfer.state, now)
    const mailbox = mailboxOf(transfer, to)
    if (mailbox.messages.length >= Store.MailboxCapacity || mailboxChars + message.length > MailboxesMaxChars)
      return yield* new Store.MailboxFull()
    mailbox.messages.push(message)
    mailboxChars += message.length
    wake(mailbox)
  })

  const inbox = (transferId: Ids.TransferId, side: Ids.Side, after: SignalApi.MessageId | undefined) =>
    Stream.unwrap(
      Effect.map(lookup(transferId), (transfer) => {
        const mailbox = mailboxOf(transfer, side)
        const { messages } = mailbox
        let delivered = after === undefined ? 0 : Number.parseInt(after, 10)
        const seen = Math.min(delivered - mailbox.dropped, messages.length)
        if (seen > 0) {
          mailboxChars -= sizeOf(messages.splice(0, seen))
          mailbox.dropped += seen
        }
        // One pull loop, no fiber or queue of its own: a reader waiting on an empty mailbox holds only
        // its place in `waiting`.
        const unread = () => messages.length - Math.max(delivered - mailbox.dropped, 0)
        const pull = Effect.suspend(() => {
          if (transfer.forgotten) return Effect.fail(Option.none())
          const from = Math.max(delivered, mailbox.dropped)
          const fresh = messages.slice(from - mailbox.dropped).map((message, i) => ({
            id: SignalApi.MessageId.make(String(from + i + 1)),
            message,
          }))
          delivered = mailbox.dropped + messages.length
          return Effect.succeed(Chunk.unsafeFromArray(fresh))
        })
        return Stream.repeatEffectChunkOption(
          Effect.zipRight(
            until(mailbox, () => transfer.forgotten || unread() > 0),
            pull,
          ),
        )
      }),
    )

  return Store.TransferStore.of({
    create,
    join,
    authenticate,
    transition,
    post,
    inbox,
    ping: Effect.void,
    held: Effect.sync(() => transfers.size),
  })
})

/** The embedded default: one process, state in memory, swept every 30 seconds. */
export const layer: Layer.Layer<Store.TransferStore> = Layer.scoped(Store.TransferStore, make)
