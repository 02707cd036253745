import { Duration, Option } from "effect"

const Units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const Whole = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/
const Part = /(\d+(?:\.\d+)?)(ms|s|m|h)/g

/** Parses durations written as on the product sheet: "5m", "1h30m", "168h", "1.5s", "250ms". */
export const parse = (text: string): Option.Option<Duration.Duration> => {
  const trimmed = text.trim()
  if (!Whole.test(trimmed)) return Option.none()
  let millis = 0
  for (const [, amount, unit] of trimmed.matchAll(Part)) millis += Number(amount) * Units[unit!]!
  return Number.isFinite(millis) && millis > 0 ? Option.some(Duration.millis(millis)) : Option.none()
}

/** The compact form users typed, for messages: 300000 ms -> "5m". */
export const format = (duration: Duration.Duration): string => {
  let ms = Math.round(Duration.toMillis(duration))
  const parts: Array<string> = []
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    if (ms >= size) {
      parts.push(`${Math.floor(ms / size)}${unit}`)
      ms %= size
    }
  }
  if (ms > 0 || parts.length === 0) parts.push(`${ms}ms`)
  return parts.join("")
}
