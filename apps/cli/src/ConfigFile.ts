import { UsageError } from "@p2pal/domain/Errors"
import { Effect, Either, ParseResult, Schema } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { parse, TomlError } from "smol-toml"
import { nearest, type OptionInfo } from "./CommandLine.js"

/** The commands a config file can set flags for: each has a table of its own. */
export const Commands = ["send", "recv"] as const
export type CommandName = (typeof Commands)[number]

export type Value = string | number | boolean | ReadonlyArray<string>

export interface Loaded {
  readonly path: string
  readonly found: boolean
  /** Per command, its flags by long name: the file's top level, with the command's table over it. */
  readonly values: Readonly<Record<CommandName, Readonly<Record<string, Value>>>>
}

/** Where the config file is: `--config FILE`, else $P2PAL_CONFIG, else `$P2PAL_HOME/config.toml`. */
export const locate = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv) => {
  const words = args.slice(0, args.includes("--") ? args.indexOf("--") : args.length)
  const at = words.findIndex((word) => word === "--config" || word.startsWith("--config="))
  const flag = at < 0 ? undefined : words[at]!.includes("=") ? words[at]!.slice(9) : words[at + 1]
  const given = flag ?? (env.P2PAL_CONFIG || undefined)
  const home = env.P2PAL_HOME || path.join(os.homedir(), ".p2pal")
  return {
    path: path.resolve(given ?? path.join(home, "config.toml")),
    explicit: given !== undefined,
    /** The command line without `--config FILE`, which @effect/cli does not know. */
    args: at < 0 ? args : [...args.slice(0, at), ...args.slice(at + (words[at]!.includes("=") ? 1 : 2))],
  }
}

const valueSchema = (option: OptionInfo) =>
  option.repeated
    ? Schema.Array(Schema.String)
    : option.takesValue
      ? Schema.Union(Schema.String, Schema.Number)
      : Schema.Boolean

const kind = (option: OptionInfo) =>
  option.repeated ? "an array of strings" : option.takesValue ? "a string or a number" : "true or false"

const table = (options: ReadonlyArray<OptionInfo>) =>
  Schema.Struct(Object.fromEntries(options.map((o) => [o.long, Schema.optional(valueSchema(o))])))

const didYouMean = (key: string, options: ReadonlyArray<OptionInfo>) => {
  const meant = nearest(
    key,
    options.map((o) => o.long),
  )
  return meant !== undefined
    ? `did you mean '${meant}'?`
    : "keys are the long flag names (see p2pal send --help, p2pal recv --help)"
}

/** The line of `key` in `table` (the top level when undefined), for messages; 0 if it cannot be told. */
const lineOf = (text: string, key: string, inTable: string | undefined) => {
  let current: string | undefined
  const lines = text.split("\n")
  for (const [i, line] of lines.entries()) {
    const header = /^\s*\[\s*"?([\w-]+)"?\s*\]/.exec(line)
    if (header !== null) current = header[1]
    else if (current === inTable && new RegExp(`^\\s*"?${key.replace(/-/g, "\\-")}"?\\s*=`).test(line))
      return i + 1
    if (header !== null && header[1] === key && inTable === undefined) return i + 1
  }
  return 0
}

/**
 * Reads and checks the config file. A missing file is no config, unless it was named; a syntax error,
 * an unknown key or a value of the wrong type is a usage error naming the file, the line and the key.
 */
export const load = (
  where: { readonly path: string; readonly explicit: boolean },
  options: Readonly<Record<CommandName, ReadonlyArray<OptionInfo>>>,
  warn: (line: string) => Effect.Effect<void>,
): Effect.Effect<Loaded, UsageError> =>
  Effect.gen(function* () {
    const file = where.path
    const none: Loaded = { path: file, found: false, values: { send: {}, recv: {} } }
    const text = yield* Effect.tryPromise({
      try: () => fs.readFile(file, "utf8"),
      catch: (e) => e as NodeJS.ErrnoException,
    }).pipe(
      Effect.map((text): string | undefined => text),
      Effect.catchAll((e) =>
        e.code === "ENOENT" && !where.explicit
          ? Effect.succeed(undefined)
          : new UsageError({
              message: `cannot read the config file ${file} (${e.code ?? e.message}); check --config`,
            }),
      ),
    )
    if (text === undefined) return none
    const fail = (line: number, what: string) =>
      new UsageError({ message: `${file}${line > 0 ? `:${line}` : ""}: ${what}` })
    const parsed = yield* Effect.try({
      try: () => parse(text),
      catch: (e) =>
        e instanceof TomlError
          ? fail(
              e.line,
              `not valid TOML (${e.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "")})`,
            )
          : fail(0, `not valid TOML (${String(e)})`),
    })
    const shared = [...new Map(Commands.flatMap((c) => options[c]).map((o) => [o.long, o])).values()]
    const File = Schema.Struct({
      ...table(shared).fields,
      send: Schema.optional(table(options.send)),
      recv: Schema.optional(table(options.recv)),
    })
    const decoded = Schema.decodeUnknownEither(File, { onExcessProperty: "error", errors: "first" })(parsed)
    if (Either.isLeft(decoded)) {
      const [issue] = ParseResult.ArrayFormatter.formatErrorSync(decoded.left)
      const keys = (issue?.path ?? []).map(String)
      const [inTable, key] = keys.length > 1 ? [keys[0], keys[1]!] : [undefined, keys[0] ?? ""]
      const where = inTable === undefined ? "" : ` in [${inTable}]`
      const option = (inTable === undefined ? shared : options[inTable as CommandName])?.find(
        (o) => o.long === key,
      )
      return yield* fail(
        lineOf(text, key, inTable),
        option === undefined
          ? `unknown key '${key}'${where}; ${didYouMean(key, inTable === undefined ? shared : (options[inTable as CommandName] ?? []))}`
          : `'${key}'${where} must be ${kind(option)}`,
      )
    }
    const {
      send = {},
      recv = {},
      ...top
    } = decoded.right as Record<string, unknown> & {
      readonly send?: Record<string, Value>
      readonly recv?: Record<string, Value>
    }
    const only = (command: CommandName, values: Record<string, unknown>) =>
      Object.fromEntries(
        Object.entries(values).filter(([key]) => options[command].some((o) => o.long === key)),
      )
    const values = {
      send: { ...only("send", top), ...send },
      recv: { ...only("recv", top), ...recv },
    } as Loaded["values"]
    if (Commands.some((c) => "turn-pass" in values[c])) {
      const mode = (yield* Effect.promise(() => fs.stat(file))).mode
      if ((mode & 0o044) !== 0)
        yield* warn(
          `p2pal: warning: ${file} holds turn-pass and other users can read it; run chmod 600 ${file}`,
        )
    }
    return { path: file, found: true, values }
  })
