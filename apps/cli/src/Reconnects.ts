import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import type { ConnectedPath } from "@p2pal/infra/PeerLink"
import type { Progress } from "@p2pal/transfer/Progress"
import { Effect } from "effect"
import * as Format from "./Format.js"
import type { Ui } from "./Ui.js"

/** What the user sees of a dropped connection: a line per attempt, and the progress bar says so too. */
export const reporter = (ui: Ui["Type"]) => {
  let progress: Progress | undefined
  return {
    /** The counters on screen, once the transfer has begun. */
    track: (shown: Progress) => Effect.sync(() => void (progress = shown)),
    onReconnecting: (attempt: number, of: number, why: string) =>
      Effect.suspend(() => {
        const status = `reconnecting (attempt ${attempt}/${of})`
        if (progress !== undefined) progress.status = status
        return ui.info(
          `${attempt === 1 ? "Connection lost" : "Not back yet"} (${escapeForDisplay(why)}): ${status}...`,
        )
      }),
    onReconnected: (path: ConnectedPath | undefined) =>
      Effect.suspend(() => {
        if (progress !== undefined) progress.status = undefined
        return ui.info(`Reconnected${path === undefined ? "" : `. ${Format.connection(path)}`}; carrying on`)
      }),
  }
}
