import { Either } from "effect"

/** A suffix's factor, as curl's --limit-rate counts them: powers of 1024. */
const factors: Readonly<Record<string, number>> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }

/** The smallest cap: below it a single frame would take longer than a heartbeat's silence allows. */
export const MinBytesPerSecond = 1024

/**
 * `--limit-rate` as curl reads it: bytes per second, or with a suffix K, M or G (powers of 1024, either
 * case); a fraction is allowed ("1.5M"). The result is whole bytes per second.
 */
export const parse = (text: string): Either.Either<number, string> => {
  const match = /^(\d+(?:\.\d+)?)([kmg]?)$/i.exec(text.trim())
  if (match === null) return Either.left(`--limit-rate ${text} is not a rate like 500K, 10M or 1G`)
  const rate = Math.floor(Number(match[1]) * factors[match[2]!.toLowerCase()]!)
  return rate >= MinBytesPerSecond && Number.isSafeInteger(rate)
    ? Either.right(rate)
    : Either.left(`--limit-rate must be at least 1K (got ${text})`)
}

const units = ["B", "KiB", "MiB", "GiB"]

/** A rate in the units --limit-rate takes: "10 MiB/s", "1.5 MiB/s", "512 KiB/s". */
export const format = (bytesPerSecond: number): string => {
  let value = bytesPerSecond
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${Number(value.toFixed(1))} ${units[unit]}/s`
}
