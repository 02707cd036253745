import { Ids, SignalApi } from "@p2pal/domain"
import { CodeRejected } from "@p2pal/domain/Errors"
import { type Session, SignalClient } from "@p2pal/infra/SignalClient"
import { Effect, Layer, Queue, Schema } from "effect"

interface Relay {
  readonly transferId: Ids.TransferId
  readonly nameplate: Ids.Nameplate
  /** What the signal app holds for each side, in order, until that side takes it. */
  readonly inbox: Record<Ids.Side, Queue.Queue<SignalApi.ServerMessage>>
}

const asToken = Schema.decodeSync(Ids.Token)
const peerOf = (side: Ids.Side): Ids.Side => (side === "sender" ? "receiver" : "sender")

/**
 * The signal app in memory, as apps/signal's Api.ts and Relay.ts behave towards their clients: `peer-claimed`
 * to the sender when the receiver joins, `peer-joined` once the receiver's socket is open, signals passed on, an abort told to the other side as
 * `peer-left` with its reason, and a socket that closes told as `peer-left` "peer disconnected".
 */
export const make = Effect.gen(function* () {
  const relays: Array<Relay> = []
  const byToken = new Map<string, { readonly relay: Relay; readonly side: Ids.Side }>()

  const create = () =>
    Effect.gen(function* () {
      const n = relays.length
      const relay: Relay = {
        transferId: Schema.decodeSync(Ids.TransferId)(`tr_testtransfer${String(n).padStart(4, "0")}`),
        nameplate: Schema.decodeSync(Ids.Nameplate)(String(10 + n)),
        inbox: {
          sender: yield* Queue.unbounded<SignalApi.ServerMessage>(),
          receiver: yield* Queue.unbounded<SignalApi.ServerMessage>(),
        },
      }
      relays.push(relay)
      const token = asToken(`sender_token_${n}_xxxxxxxxxxxxxxx`)
      byToken.set(token, { relay, side: "sender" })
      return { nameplate: relay.nameplate, transferId: relay.transferId, token, expiresAt: 0, iceServers: [] }
    })

  const join = (_server: string, request: SignalApi.JoinRequest) =>
    Effect.gen(function* () {
      const relay = relays.find((r) => r.nameplate === request.nameplate)
      if (relay === undefined) return yield* new CodeRejected({ reason: "not_found" })
      const token = asToken(`receiver_token_${relay.nameplate}_xxxxxxxxxxx`)
      byToken.set(token, { relay, side: "receiver" })
      yield* Queue.offer(relay.inbox.sender, { _tag: "peer-claimed" })
      return { transferId: relay.transferId, token, expiresAt: 0, iceServers: [] }
    })

  const open = (_server: string, token: Ids.Token) =>
    Effect.gen(function* () {
      const { relay, side } = byToken.get(token)!
      const tell = (message: SignalApi.ServerMessage) =>
        Effect.asVoid(Queue.offer(relay.inbox[peerOf(side)], message))
      if (side === "receiver") yield* tell({ _tag: "peer-joined" })
      yield* Effect.addFinalizer(() => tell({ _tag: "peer-left", reason: "disconnected" }))
      const session: Session = {
        send: (message) => {
          switch (message._tag) {
            case "signal":
              return tell(message)
            case "abort":
              return tell({ _tag: "peer-left", reason: message.reason })
            case "complete":
              return Effect.void
          }
        },
        next: Effect.asSome(Queue.take(relay.inbox[side])),
        refresh: Effect.void,
      }
      return session
    })

  return Layer.succeed(SignalClient, SignalClient.make({ create, join, open }))
})
