import { PeerFailed } from "@p2pal/domain/Errors"
import { type Channel, type ConnectOptions, PeerLink } from "@p2pal/infra/PeerLink"
import { Deferred, Effect, Exit, Layer, Mailbox, Option, Stream } from "effect"

export type Role = ConnectOptions<unknown>["role"]

/** A message as one end of a link handed it over, copied: the sender moves its buffers on after sending. */
export interface Sent {
  /** Which connection, counted from 0 in the order the offerer opened them. */
  readonly link: number
  readonly from: Role
  readonly message: Uint8Array
}

/** What a failed connection attempt says (Connection.ts makes it a loss after the peers met). */
export const UnreachableMessage = "could not reach the peer (test link)"

interface End {
  readonly lost: Deferred.Deferred<never, PeerFailed>
  readonly incoming: Mailbox.Mailbox<Uint8Array, PeerFailed>
  /** Why this end knows the link is gone, once it does. */
  gone: PeerFailed | undefined
}

interface Link {
  readonly id: number
  readonly answered: Deferred.Deferred<void>
  readonly ends: Record<Role, End>
  /** The path is gone: nothing crosses it any more, a close included. */
  dead: boolean
}

interface Drop {
  readonly when: (sent: Sent) => boolean
  readonly why: string
  readonly noticedBy: ReadonlyArray<Role>
}

const peerOf = (role: Role): Role => (role === "offerer" ? "answerer" : "offerer")

const lose = (end: End, error: PeerFailed) => {
  end.gone ??= error
  Deferred.unsafeDone(end.lost, Exit.fail(error))
  end.incoming.unsafeDone(Exit.fail(error))
}

/**
 * PeerLink in memory, for both sides of a transfer in one process. The offerer of a round announces its
 * link through the signal port (a description whose sdp is the link's number) and waits for the answerer
 * of the same round to pick it up; each then holds its end of an in-memory channel. The test can lose a
 * link when a given message is about to cross it, as the liveness watchdog notices a dead path, and make
 * the offerer's next attempts fail.
 */
export const make = Effect.gen(function* () {
  const links = new Map<number, Link>()
  const attempts: Record<Role, number> = { offerer: 0, answerer: 0 }
  const sent: Array<Sent> = []
  let drop: Drop | undefined
  let failing = 0

  const channel = (link: Link, role: Role): Channel => {
    const end = link.ends[role]
    const peer = link.ends[peerOf(role)]
    return {
      send: (...messages) =>
        Effect.suspend(() => {
          if (end.gone !== undefined) return Effect.fail(end.gone)
          if (link.dead) return Effect.void
          const copies = messages.map((m): Sent => ({
            link: link.id,
            from: role,
            message: new Uint8Array(m),
          }))
          // All of a send or none of it, so what crossed is exactly what the sender counted as sent.
          const trigger = drop
          if (trigger !== undefined && copies.some(trigger.when)) {
            drop = undefined
            link.dead = true
            const error = new PeerFailed({ message: trigger.why, lost: true })
            for (const r of trigger.noticedBy) lose(link.ends[r], error)
            return trigger.noticedBy.includes(role) ? Effect.fail(error) : Effect.void
          }
          for (const copy of copies) {
            sent.push(copy)
            peer.incoming.unsafeOffer(copy.message)
          }
          return Effect.void
        }),
      incoming: end.incoming,
      closed: Deferred.await(end.lost),
      path: () => ({
        local: `test ${role} ${link.id}`,
        remote: `test ${peerOf(role)} ${link.id}`,
        relayed: false,
        rttMs: 0,
        lanes: 1,
      }),
    }
  }

  /** This end closes: the other hears of it, unless the path between them is gone. */
  const closeEnd = (link: Link, role: Role) =>
    Effect.sync(() => {
      lose(link.ends[role], new PeerFailed({ message: "this side closed the connection", lost: true }))
      if (!link.dead)
        lose(
          link.ends[peerOf(role)],
          new PeerFailed({ message: "the peer closed the connection", lost: true }),
        )
      link.dead = true
    })

  const makeEnd = Effect.map(
    Effect.all({
      lost: Deferred.make<never, PeerFailed>(),
      incoming: Mailbox.make<Uint8Array, PeerFailed>(),
    }),
    (end): End => ({ ...end, gone: undefined }),
  )

  const offer = <E>(options: ConnectOptions<E>) =>
    Effect.gen(function* () {
      if (failing > 0) {
        failing--
        return yield* new PeerFailed({ message: UnreachableMessage })
      }
      const link: Link = {
        id: links.size,
        answered: yield* Deferred.make<void>(),
        ends: { offerer: yield* makeEnd, answerer: yield* makeEnd },
        dead: false,
      }
      links.set(link.id, link)
      yield* options.signal.send({ _tag: "description", type: "offer", sdp: String(link.id) })
      // The relay ending (the peer left) fails the attempt, as it does the real one.
      yield* Deferred.await(link.answered).pipe(
        Effect.raceFirst(Effect.zipRight(Stream.runDrain(options.signal.incoming), Effect.never)),
      )
      return link
    })

  const answer = <E>(options: ConnectOptions<E>) =>
    Effect.gen(function* () {
      const offered = yield* options.signal.incoming.pipe(
        Stream.filterMap((signal) =>
          signal._tag === "description" && signal.type === "offer"
            ? Option.some(Number(signal.sdp))
            : Option.none(),
        ),
        Stream.runHead,
      )
      const link = Option.isSome(offered) ? links.get(offered.value) : undefined
      if (link === undefined) return yield* new PeerFailed({ message: "the test link's signal port ended" })
      yield* Deferred.succeed(link.answered, undefined)
      return link
    })

  const connect = <E>(options: ConnectOptions<E>) =>
    Effect.gen(function* () {
      attempts[options.role]++
      const link = yield* (options.role === "offerer" ? offer(options) : answer(options)).pipe(
        Effect.timeoutFail({
          duration: options.openTimeout,
          onTimeout: () => new PeerFailed({ message: UnreachableMessage }),
        }),
      )
      yield* Effect.addFinalizer(() => closeEnd(link, options.role))
      return channel(link, options.role)
    })

  return {
    layer: Layer.succeed(PeerLink, PeerLink.make({ connect })),
    /** Connection attempts begun so far by `role`. */
    attempts: (role: Role) => attempts[role],
    /** Every message that crossed a link, in order. */
    sent: sent as ReadonlyArray<Sent>,
    /**
     * Loses the open link when a message matching `when` is about to cross it (it does not), with `why`;
     * only the ends in `noticedBy` learn of it, the others hear nothing more. Once.
     */
    dropWhen: (
      when: (sent: Sent) => boolean,
      why: string,
      noticedBy: ReadonlyArray<Role> = ["offerer", "answerer"],
    ) => Effect.sync(() => void (drop = { when, why, noticedBy })),
    /** The offerer's next `n` attempts fail at once, before signaling anything. */
    failNext: (n: number) => Effect.sync(() => void (failing = n)),
  }
})
