import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import type { Progress } from "@p2pal/transfer/Progress"
import type { PeerOptions } from "@p2pal/transfer/Transfer"
import type { Sink, TransferEvent } from "@p2pal/transfer/TransferEvent"
import { Duration, Effect, Exit, Fiber, Mailbox, Scope, Stream } from "effect"
import * as Flags from "./Flags.js"
import * as Format from "./Format.js"
import type { Ui } from "./Ui.js"

/** How this side reaches the peer, from the flags send and recv share (parsed by @effect/cli). */
export const options = (flags: {
  readonly server: string
  readonly ice: Flags.IceFlags
  readonly reconnect: Flags.ReconnectFlags
}): PeerOptions => ({ server: flags.server, ...flags.ice, ...flags.reconnect })

/** What a command has learnt from a transfer's events so far. */
export interface Seen {
  /** The id the checkpoint is kept under, once there is one. */
  readonly checkpointId: string | undefined
  /** The counters on screen, once the transfer has begun. */
  readonly progress: Progress | undefined
}

/**
 * What send and recv both show of a transfer's events: an ICE server left out, and a dropped connection
 * (a line per attempt, and the progress bar says so too) until a new one is up.
 */
export const showLink = (ui: Ui["Type"], seen: Seen, event: TransferEvent) =>
  Effect.gen(function* () {
    switch (event._tag) {
      case "IceIgnored":
        yield* ui.notice(`not using an ICE server the signal app offered: ${escapeForDisplay(event.reason)}`)
        break
      case "Reconnecting": {
        const status = `reconnecting (attempt ${event.attempt}/${event.of})`
        if (seen.progress !== undefined) seen.progress.status = status
        yield* ui.info(
          `${event.attempt === 1 ? "Connection lost" : "Not back yet"} (${escapeForDisplay(event.why)}): ${status}...`,
        )
        break
      }
      case "SignalLost":
        yield* ui.notice(
          `the signal app went away (${escapeForDisplay(event.why)}); retrying for up to ${Format.seconds(Duration.toSeconds(event.retryFor))}...`,
        )
        break
      case "SignalBack":
        yield* ui.notice("the signal app is back")
        break
      case "Reconnected":
        if (seen.progress !== undefined) seen.progress.status = undefined
        yield* ui.info(
          `Reconnected${event.path === undefined ? "" : `. ${Format.connection(event.path)}`}; carrying on`,
        )
        break
    }
    return seen
  })

/**
 * Runs a transfer while a fiber of its own shows the transfer's events in order, `show` folding what the
 * command learns from them. When the transfer ends, every event has been shown and the display (the
 * progress bars) is closed before `ended` hears how it ended and what was learnt.
 */
export const watching = <A, E, R>(
  transfer: (events: Sink) => Effect.Effect<A, E, R>,
  show: (seen: Seen, event: TransferEvent) => Effect.Effect<Seen, never, Scope.Scope>,
  ended: (exit: Exit.Exit<A, E>, seen: Seen) => Effect.Effect<void>,
) =>
  Effect.gen(function* () {
    const events = yield* Mailbox.make<TransferEvent>()
    const display = yield* Scope.make()
    const shown = yield* Mailbox.toStream(events).pipe(
      Stream.runFoldEffect({ checkpointId: undefined, progress: undefined } as Seen, (seen, event) =>
        Scope.extend(show(seen, event), display),
      ),
      // Not a child of this fiber: Ctrl+C interrupts this one, and the events must still all be shown.
      Effect.forkIn(display),
    )
    // The display hears how the transfer ended: the bars stay on screen unless it succeeded.
    const finished = (exit: Exit.Exit<A, E>) =>
      Effect.zipRight(events.end, Fiber.join(shown)).pipe(Effect.ensuring(Scope.close(display, exit)))
    return yield* transfer(events).pipe(
      Effect.onExit((exit) => Effect.flatMap(finished(exit), (seen) => ended(exit, seen))),
    )
  })
