import { Command, type CommandDescriptor } from "@effect/cli"
import { Console, Context, Effect, Option } from "effect"
import type { OptionInfo } from "./CommandLine.js"
import { optionsOf } from "./CommandLine.js"
import { Commands, type CommandName, type Loaded, type Value } from "./ConfigFile.js"
import { EnvFallback } from "./Flags.js"

/** The config file as main.ts loaded it, for `p2pal config`. */
export class LoadedConfig extends Context.Tag("@p2pal/cli/LoadedConfig")<
  LoadedConfig,
  { readonly loaded: Loaded; readonly env: NodeJS.ProcessEnv }
>() {}

const given = (option: OptionInfo, words: ReadonlyArray<string>) =>
  words.some((word) => option.names.some((name) => word === name || word.startsWith(`${name}=`)))

const fromEnv = (option: OptionInfo, env: NodeJS.ProcessEnv) => {
  const name = EnvFallback[option.long]
  return name !== undefined && (env[name] ?? "") !== "" ? name : undefined
}

/** A value from the file as the command line carries it. */
const asWords = (long: string, value: Value): Array<string> =>
  typeof value === "object"
    ? value.flatMap((v) => [`--${long}`, v])
    : typeof value === "boolean"
      ? value
        ? [`--${long}`]
        : [`--${long}`, "false"]
      : [`--${long}`, String(value)]

/**
 * The command line with the file's settings for `command` put in as flags, after the command's name,
 * for every option neither the command line nor its environment variable sets: flag > env > file >
 * default, with @effect/cli checking each value as it checks a flag.
 */
export const withFileSettings = (
  args: ReadonlyArray<string>,
  command: { readonly name: string; readonly index: number; readonly options: ReadonlyArray<OptionInfo> },
  loaded: Loaded,
  env: NodeJS.ProcessEnv,
): ReadonlyArray<string> => {
  if (!(Commands as ReadonlyArray<string>).includes(command.name)) return args
  const words = args.slice(0, args.includes("--") ? args.indexOf("--") : args.length)
  const added = Object.entries(loaded.values[command.name as CommandName]).flatMap(([long, value]) => {
    const option = command.options.find((o) => o.long === long)
    return option === undefined || given(option, words) || fromEnv(option, env) !== undefined
      ? []
      : asWords(long, value)
  })
  return [...args.slice(0, command.index + 1), ...added, ...args.slice(command.index + 1)]
}

type Node = { readonly [key: string]: unknown }

/** The long name of the option under `node`. */
const nameOf = (node: unknown): string | undefined => {
  if (typeof node !== "object" || node === null) return undefined
  const n = node as Node
  return n["_tag"] === "Single" ? (n["name"] as string) : nameOf(n["options"] ?? n["argumentOption"])
}

/**
 * Each option's built-in default. @effect/cli (pinned) keeps them only in its option tree, and its help
 * shows none for a plain value, so they are read from there: every option's, whoever adds it.
 */
const defaultsOf = (descriptor: CommandDescriptor.Command<unknown>) => {
  const defaults = new Map<string, unknown>()
  const visit = (node: unknown): void => {
    if (typeof node !== "object" || node === null) return
    const n = node as Node
    const name = n["_tag"] === "WithDefault" ? nameOf(n["options"]) : undefined
    if (name !== undefined && !defaults.has(name) && !Option.isOption(n["fallback"]))
      defaults.set(name, n["fallback"])
    for (const key of ["command", "options", "left", "right"]) visit(n[key])
  }
  visit(descriptor)
  return defaults
}

const Secret = /pass|secret|token/

/** `p2pal config`: each command's settings, where each came from, secrets masked. */
const show = (
  commands: ReadonlyArray<{
    readonly name: CommandName
    readonly descriptor: CommandDescriptor.Command<unknown>
  }>,
) =>
  Effect.gen(function* () {
    const { loaded, env } = yield* LoadedConfig
    const lines = [`# ${loaded.path}${loaded.found ? "" : " (not found: built-in defaults)"}`]
    for (const { name, descriptor } of commands) {
      const defaults = defaultsOf(descriptor)
      lines.push("", `[${name}]`)
      for (const option of optionsOf(descriptor)) {
        const envName = fromEnv(option, env)
        const fromFile = loaded.values[name][option.long]
        const [value, source] =
          envName !== undefined
            ? [env[envName]!, `env ${envName}`]
            : fromFile !== undefined
              ? [fromFile, "file"]
              : [
                  defaults.get(option.long) ?? (option.repeated ? [] : option.takesValue ? "" : false),
                  "default",
                ]
        const shown = Secret.test(option.long) ? '"********"' : JSON.stringify(value)
        lines.push(value === "" ? `# ${option.long} is not set` : `${option.long} = ${shown}  # ${source}`)
      }
    }
    yield* Console.log(lines.join("\n"))
  })

export const configCommand = (
  commands: ReadonlyArray<{
    readonly name: CommandName
    readonly descriptor: CommandDescriptor.Command<unknown>
  }>,
) =>
  Command.make("config", {}, () => show(commands)).pipe(
    Command.withDescription(
      "print the effective settings of send and recv and where each came from (env, file, default), secrets masked; flags on a command line beat them all",
    ),
    Command.withSubcommands([
      Command.make("path", {}, () =>
        Effect.flatMap(LoadedConfig, ({ loaded }) => Console.log(loaded.path)),
      ).pipe(Command.withDescription("print the config file's path (whether or not it exists)")),
    ]),
  )
