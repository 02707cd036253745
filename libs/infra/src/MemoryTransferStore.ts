import { randomBytes, randomInt } from "node:crypto"
import { Ids, TransferState } from "@p2pal/domain"
import { Clock, Effect, Either, Layer, Queue, Schedule, Stream } from "effect"
import * as Store from "./TransferStore.js"

const SweepInterval = "30 seconds"
const NameplateDigits = [2, 3, 4, 5, 6]
/** Random picks at one nameplate length before moving on to a longer one. */
const NameplateTries = 4

interface Transfer {
  readonly transferId: Ids.TransferId
  readonly nameplate: Ids.Nameplate
  readonly senderToken: Ids.Token
  receiverToken: Ids.Token | undefined
  state: TransferState.TransferState
  /** When the sweep drops the record. */
  forgetAt: number
  readonly inboxes: Record<Ids.Side, Queue.Queue<string>>
}

/** 128 random bits, base64url. */
const randomId = () => randomBytes(16).toString("base64url")

const forgetAt = (state: TransferState.TransferState, now: number) =>
  (TransferState.isFinal(state.status) ? Math.min(now, state.expiresAt) : state.expiresAt) + Store.RetentionMs

/** Every operation checks and updates the maps with no yield in between, so concurrent fibers cannot interleave. */
const make = Effect.gen(function* () {
  const transfers = new Map<Ids.TransferId, Transfer>()
  const byNameplate = new Map<string, Transfer>()
  const byToken = new Map<Ids.Token, Store.Authenticated>()
  const inUseByDigits = new Map<number, number>()

  const countNameplate = (nameplate: string, delta: number) =>
    inUseByDigits.set(nameplate.length, (inUseByDigits.get(nameplate.length) ?? 0) + delta)

  const pickNameplate = (): Ids.Nameplate | undefined => {
    for (const digits of NameplateDigits) {
      const low = 10 ** (digits - 1)
      const high = 10 ** digits
      if ((inUseByDigits.get(digits) ?? 0) * 2 > high - low) continue
      for (let i = 0; i < NameplateTries; i++) {
        const candidate = String(randomInt(low, high))
        if (!byNameplate.has(candidate)) return Ids.Nameplate.make(candidate)
      }
    }
    return undefined
  }

  const forget = (transfer: Transfer) => {
    transfers.delete(transfer.transferId)
    byNameplate.delete(transfer.nameplate)
    countNameplate(transfer.nameplate, -1)
    byToken.delete(transfer.senderToken)
    if (transfer.receiverToken !== undefined) byToken.delete(transfer.receiverToken)
    return Effect.all([Queue.shutdown(transfer.inboxes.sender), Queue.shutdown(transfer.inboxes.receiver)])
  }

  const sweep = Effect.gen(function* () {
    const now = yield* Clock.currentTimeMillis
    const due = [...transfers.values()].filter((transfer) => transfer.forgetAt <= now)
    yield* Effect.forEach(due, forget, { discard: true })
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
      transfer.forgetAt = forgetAt(next.right, event.at)
      return Effect.succeed(next.right)
    })

  /** Fails unless the transfer can still carry messages. */
  const ensureOpen = (
    transfer: Transfer,
    now: number,
  ): Effect.Effect<void, Store.TransferExpired | Store.TransferEnded> => {
    const { status } = TransferState.observe(transfer.state, now)
    if (status === "expired") return Effect.fail(new Store.TransferExpired())
    if (TransferState.isFinal(status)) return Effect.fail(new Store.TransferEnded({ status }))
    return Effect.void
  }

  const create = Effect.fn("TransferStore.create")(function* (ttlMs: number) {
    const now = yield* Clock.currentTimeMillis
    const inboxes = {
      sender: yield* Queue.dropping<string>(Store.MailboxCapacity),
      receiver: yield* Queue.dropping<string>(Store.MailboxCapacity),
    }
    const nameplate = pickNameplate()
    if (nameplate === undefined) return yield* new Store.NameplatesExhausted()
    const state = TransferState.initial(now, ttlMs)
    const transfer: Transfer = {
      transferId: Ids.TransferId.make(randomId()),
      nameplate,
      senderToken: Ids.Token.make(randomId()),
      receiverToken: undefined,
      state,
      forgetAt: forgetAt(state, now),
      inboxes,
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
    const receiverToken = Ids.Token.make(randomId())
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
    yield* ensureOpen(transfer, now)
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
    yield* ensureOpen(transfer, now)
    if (!transfer.inboxes[to].unsafeOffer(message)) return yield* new Store.MailboxFull()
  })

  const inbox = (transferId: Ids.TransferId, side: Ids.Side) =>
    Stream.unwrap(
      Effect.map(lookup(transferId), (transfer) =>
        Stream.fromQueue(transfer.inboxes[side], { maxChunkSize: 1 }),
      ),
    )

  return Store.TransferStore.of({ create, join, authenticate, transition, post, inbox, ping: Effect.void })
})

/** The embedded default: one process, state in memory, swept every 30 seconds. */
export const layer: Layer.Layer<Store.TransferStore> = Layer.scoped(Store.TransferStore, make)
