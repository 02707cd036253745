import type { Manifest } from "@p2pal/domain"
import { escapeForDisplay } from "@p2pal/domain/ManifestPolicy"
import * as Rate from "@p2pal/domain/Rate"
import type { Progress } from "@p2pal/transfer/Progress"
import { Clock, Context, Effect, Exit, Layer, Option, Schedule, type Scope } from "effect"
import * as Format from "./Format.js"
import * as StdinLine from "./StdinLine.js"

const BarWidth = 20

/** The longest line read from stdin: a join code or an answer is a few dozen bytes. */
export const MaxLineBytes = 256

/**
 * One line of stdin ("" at end of input, None past MaxLineBytes); the prompt, if any, goes to stderr.
 * Interrupted (Ctrl+C), it ends the prompt's line, or the shell's prompt would follow it on the same line.
 */
const readLine = (prompt: string | undefined) =>
  Effect.zipRight(
    Effect.sync(() => prompt === undefined || process.stderr.write(prompt)),
    StdinLine.read(MaxLineBytes),
  ).pipe(Effect.onInterrupt(() => Effect.sync(() => prompt !== undefined && process.stderr.write("\n"))))

const bar = (done: number, total: number) => {
  const ratio = total === 0 ? 1 : Math.min(1, done / total)
  const filled = Math.round(ratio * BarWidth)
  return `[${"=".repeat(filled)}${" ".repeat(BarWidth - filled)}] ${String(Math.floor(ratio * 100)).padStart(3)}%`
}

/**
 * For each manifest index, how many files come before it, and the file count at the end. Entries are
 * moved in manifest order, so while entry i is moving the files before it are done (verified, in an
 * earlier session too, or skipped): the total bar reads this instead of the transfer counting them.
 */
const filesBefore = (entries: ReadonlyArray<Manifest.Entry>): Uint32Array => {
  const before = new Uint32Array(entries.length + 1)
  for (const [i, entry] of entries.entries()) before[i + 1] = before[i]! + (entry._tag === "file" ? 1 : 0)
  return before
}

/** `head`, then as much of the end of `name` as fits in `width` columns, "..." marking a cut. */
const keepEnd = (head: string, name: string, width: number) => {
  const points = Array.from(name)
  const room = width - head.length
  return points.length <= room
    ? head + name
    : `${head}...${points.slice(points.length - Math.max(0, room - 3)).join("")}`
}

/**
 * The per-file and total bars as drawn, each within `columns` (0: unknown), since a line that wraps
 * breaks the redraw in place. On a narrow terminal the file count moves to the file's line, whose name
 * gives way (its start, so the file's own name stays).
 */
export const barLines = (
  bars: {
    readonly file: string
    readonly name: string
    readonly total: string
    readonly count: string
    readonly pace: string
  },
  columns: number,
): readonly [string, string] => {
  const width = columns > 0 ? columns - 1 : Infinity
  const { file, name, total, count, pace } = bars
  const countOnTotal = `${total}${count}  ${pace}`.length <= width
  return [
    keepEnd(`${file}${countOnTotal ? "" : count}  `, name, width),
    `${total}${countOnTotal ? count : ""}  ${pace}`.slice(0, width),
  ]
}

/**
 * Everything the CLI shows a person. Human text goes to stderr so stdout carries only what a script
 * consumes; quiet mode keeps only that and errors.
 */
export class Ui extends Context.Tag("@p2pal/cli/Ui")<
  Ui,
  {
    readonly quiet: boolean
    readonly info: (line: string) => Effect.Effect<void>
    /** For scripts: printed on stdout even in quiet mode. */
    readonly result: (line: string) => Effect.Effect<void>
    /** Shown even in quiet mode: a line the user asked for (--verify) or must not miss (a skipped file). */
    readonly notice: (line: string) => Effect.Effect<void>
    /** Reads one line from stdin, prompting on stderr when a person is there to see it; None past MaxLineBytes. */
    readonly ask: (prompt: string) => Effect.Effect<Option.Option<string>>
    /** Shows `context` and asks; both are shown even in quiet mode, since nobody can answer blind. */
    readonly confirm: (context: ReadonlyArray<string>, question: string) => Effect.Effect<boolean>
    /** Redraws per-file and total bars while the scope is open (TTY only); prints the verified line after. */
    readonly showProgress: (
      progress: Progress,
      manifest: Manifest.Manifest,
    ) => Effect.Effect<void, never, Scope.Scope>
    readonly verified: () => Effect.Effect<void>
  }
>() {
  static readonly layer = (quiet: boolean) => {
    /** Whether progress bars are on screen (the last two lines of stderr). */
    let barsDrawn = false
    const eraseBars = () => {
      if (barsDrawn) process.stderr.write("\x1b[2A\x1b[2K\n\x1b[2K\x1b[1A")
      barsDrawn = false
    }
    // A line written while the bars are up takes their place; the next redraw puts them below it.
    const say = (line: string) =>
      Effect.sync(() => {
        eraseBars()
        process.stderr.write(`${line}\n`)
      })
    return Layer.succeed(Ui, {
      quiet,
      info: (line) => (quiet ? Effect.void : say(line)),
      result: (line) => Effect.sync(() => process.stdout.write(`${line}\n`)),
      notice: say,
      ask: (prompt) => readLine(process.stdin.isTTY ? prompt : undefined),
      confirm: (context, question) =>
        Effect.suspend(() => {
          process.stderr.write(context.map((line) => `${line}\n`).join(""))
          // End of input counts as "no": a closed stdin must never accept a transfer.
          return Effect.map(readLine(`${question} [y/N] `), (answer) =>
            Option.exists(answer, (line) => /^y(es)?$/i.test(line.trim())),
          )
        }),
      showProgress: (progress, manifest) => {
        if (quiet || !process.stderr.isTTY) return Effect.void
        return Effect.gen(function* () {
          const started = yield* Clock.currentTimeMillis
          const before = filesBefore(manifest.entries)
          const files = before[manifest.entries.length]!
          const draw = Effect.gen(function* () {
            // Nothing to show before the first file starts (a per-file bar would read 100% of nothing).
            if (progress.file < 0) return
            const elapsed = ((yield* Clock.currentTimeMillis) - started) / 1000
            const rate = elapsed > 0 ? progress.bytes / elapsed : 0
            const eta = rate > 0 ? (progress.totalBytes - progress.bytes) / rate : Infinity
            const entry = manifest.entries[progress.file]
            const size = entry?._tag === "file" ? entry.size : 0
            const name = entry === undefined ? "" : escapeForDisplay(entry.path)
            const wire =
              progress.compressing && progress.wire > 0
                ? `  wire ${Format.bytes(progress.wire / elapsed)}/s, ratio ${(progress.original / progress.wire).toFixed(1)}`
                : ""
            const limited = progress.limit === undefined ? "" : ` (limited to ${Rate.format(progress.limit)})`
            // A pipe's size is known only at its end: no bar, no ETA, only how far it got.
            const pipe = manifest.stream === "pipe"
            const pace =
              progress.status ??
              `${Format.bytes(rate)}/s${limited}${wire}${pipe ? "" : `  ETA ${Format.seconds(eta)}`}`
            // A single file's count would say nothing its own bar does not.
            const count = files > 1 ? `  ${before[progress.file]}/${files} files` : ""
            const lines = barLines(
              {
                file: pipe ? `${Format.bytes(progress.fileBytes)} so far` : bar(progress.fileBytes, size),
                name,
                total: pipe
                  ? `${Format.bytes(progress.bytes)} of a pipe (size unknown)`
                  : `${bar(progress.bytes, progress.totalBytes)}  ${Format.bytes(progress.bytes)} / ${Format.bytes(progress.totalBytes)}`,
                count,
                pace,
              },
              process.stderr.columns,
            )
            process.stderr.write(`${barsDrawn ? "\x1b[2A" : ""}${lines.map((l) => `\x1b[2K${l}\n`).join("")}`)
            barsDrawn = true
          })
          // The verified line takes the bars' place; after Ctrl+C or a failure they stay to show how far it got.
          yield* Effect.addFinalizer((exit) =>
            Effect.sync(() => (Exit.isSuccess(exit) ? eraseBars() : (barsDrawn = false))),
          )
          yield* draw.pipe(Effect.repeat(Schedule.spaced("200 millis")), Effect.forkScoped)
        })
      },
      verified: () =>
        quiet
          ? Effect.void
          : Effect.sync(() => process.stderr.write(`[${"=".repeat(BarWidth)}] 100% — SHA-256 verified\n`)),
    })
  }
}
