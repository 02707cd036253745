import type { Manifest } from "@p2pal/domain"
import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import type { ConnectedPath } from "@p2pal/infra/PeerLink"
import type * as Compression from "@p2pal/transfer/Compression"
import type { Progress } from "@p2pal/transfer/Progress"
const Units = ["B", "kB", "MB", "GB", "TB"]

/** Sizes as the product sheet prints them: decimal units, one decimal ("2.3 MB"). */
export const bytes = (n: number): string => {
  let value = n
  let unit = 0
  while (value >= 1000 && unit < Units.length - 1) {
    value /= 1000
    unit++
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${Units[unit]}`
}

export const count = (n: number, noun: string) =>
  `${n} ${n === 1 ? noun : noun.endsWith("y") ? `${noun.slice(0, -1)}ies` : `${noun}s`}`

export const seconds = (s: number): string => {
  if (!Number.isFinite(s)) return "--"
  const whole = Math.round(s)
  return whole < 60 ? `${whole}s` : `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, "0")}s`
}

/** How the peers reached each other, for the final summary. */
export const connection = (path: ConnectedPath): string =>
  `${path.relayed ? "Relayed through TURN" : "Connected directly"}: ${path.local} <-> ${path.remote}` +
  (path.rttMs === undefined ? "" : `, RTT ${path.rttMs} ms`) +
  (path.lanes > 1 ? `, over ${path.lanes} connections at most` : "")

/** Files named in a summary line before "and N more". */
const Named = 5

/**
 * What compression did, for the sender's final summary: the bytes the link carried for the file bytes,
 * and which files `--compress auto` sent as they are, and why.
 */
export const compression = (
  mode: Compression.Mode,
  encrypt: boolean,
  progress: Progress,
  manifest: Manifest.Manifest,
): ReadonlyArray<string> => {
  if (mode === "none") return []
  if (encrypt) return ["Compression: off with --encrypt (sealed chunks go as they are)"]
  if (!progress.compressing) return ["Compression: off (the receiver offered no codec this sender has)"]
  const ratio = progress.wire === 0 ? 1 : progress.original / progress.wire
  const raw = [...progress.raw].map(
    ([index, why]) => `${escapeForDisplay(manifest.entries[index]!.path)} (${why})`,
  )
  return [
    `Compression: zstd, ${bytes(progress.original)} of files as ${bytes(progress.wire)} on the wire (ratio ${ratio.toFixed(2)})`,
    ...(raw.length === 0
      ? []
      : [
          `Sent raw by --compress auto: ${raw.slice(0, Named).join(", ")}` +
            (raw.length > Named ? ` and ${raw.length - Named} more` : ""),
        ]),
  ]
}
