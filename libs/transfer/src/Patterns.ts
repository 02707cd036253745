import { LocalIoFailed, UsageError } from "@p2pal/domain/Errors"
import { Effect } from "effect"
import * as path from "node:path"
import picomatch from "picomatch"
import { glob } from "tinyglobby"
import { errnoText } from "./Io.js"

/** Whether a command-line word has wildcards (`*`, `?`, `[...]`, `{a,b}`, `**`) for p2pal to expand. */
export const isPattern = (word: string): boolean => picomatch.scan(word).isGlob

/** What a pattern matched: paths relative to its static base (the part before the first wildcard). */
export interface Expanded {
  readonly base: string
  readonly matches: ReadonlyArray<string>
}

/**
 * Expands `pattern` with shell rules, except that symlinks neither match nor are followed (nothing outside
 * what was named can leave); a leading dot matches only where the pattern has one. Only files match,
 * unless `directories` (`-r`): then a matched directory comes whole, and what it holds is not listed again.
 * Nothing matching is a usage error, before any code is handed out.
 */
export const expand = (
  pattern: string,
  directories: boolean,
): Effect.Effect<Expanded, UsageError | LocalIoFailed> =>
  Effect.gen(function* () {
    const scanned = picomatch.scan(pattern)
    const base = path.resolve(scanned.base === "" ? "." : scanned.base)
    const found = yield* Effect.tryPromise({
      try: () =>
        glob(scanned.glob, {
          cwd: base,
          dot: false,
          followSymbolicLinks: false,
          onlyFiles: !directories,
          expandDirectories: false,
        }),
      catch: (e) => new LocalIoFailed({ path: base, message: errnoText(e) }),
    })
    const sorted = found.map((match) => match.replace(/\/$/, "")).sort()
    const matches: Array<string> = []
    for (const match of sorted)
      if (!matches.some((taken) => match.startsWith(`${taken}/`))) matches.push(match)
    if (matches.length === 0) return yield* new UsageError({ message: `no file matches '${pattern}'` })
    return { base, matches }
  })

/**
 * Whether `--exclude` leaves out an entry, by its path relative to what was named: a glob matches that
 * path, its base name, or a folder on the way to it (`--exclude node_modules` leaves out all it holds).
 */
export const excluder = (globs: ReadonlyArray<string>): ((relative: string) => boolean) => {
  if (globs.length === 0) return () => false
  const matches = picomatch([...globs], { dot: true })
  return (relative) => {
    const parts = relative.split("/")
    return parts.some((part, i) => matches(part) || matches(parts.slice(0, i + 1).join("/")))
  }
}
