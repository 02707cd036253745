import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import type { Progress } from "@p2pal/transfer/Progress"
import type { PeerOptions } from "@p2pal/transfer/Session"
import { Effect } from "effect"
import * as Flags from "./Flags.js"
import * as Format from "./Format.js"
import { Ui } from "./Ui.js"

/**
 * How this side reaches the peer, from the flags send and recv share, and what the user sees of a dropped
 * connection: a line per attempt, and the progress bar says so too. `track` hands it the counters on screen
 * once the transfer has begun; `shown` gives them back.
 */
export const options = (flags: {
  readonly server: string
  readonly ice: Flags.IceFlags
  readonly reconnect: Flags.ReconnectFlags
}) =>
  Effect.gen(function* () {
    const ui = yield* Ui
    let progress: Progress | undefined
    const peer: PeerOptions = {
      server: flags.server,
      ...flags.ice,
      onIceIgnored: (reason) =>
        ui.notice(`not using an ICE server the signal app offered: ${escapeForDisplay(reason)}`),
      ...flags.reconnect,
      onReconnecting: (attempt, of, why) =>
        Effect.suspend(() => {
          const status = `reconnecting (attempt ${attempt}/${of})`
          if (progress !== undefined) progress.status = status
          return ui.info(
            `${attempt === 1 ? "Connection lost" : "Not back yet"} (${escapeForDisplay(why)}): ${status}...`,
          )
        }),
      onReconnected: (path) =>
        Effect.suspend(() => {
          if (progress !== undefined) progress.status = undefined
          return ui.info(
            `Reconnected${path === undefined ? "" : `. ${Format.connection(path)}`}; carrying on`,
          )
        }),
    }
    return {
      peer,
      track: (shown: Progress) => Effect.sync(() => void (progress = shown)),
      shown: () => progress,
    }
  })
