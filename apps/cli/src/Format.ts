import type { ConnectedPath } from "@p2pal/infra/PeerLink"
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
