import { Command, CommandDescriptor, type Usage } from "@effect/cli"
import { HashMap, Option } from "effect"

/** A flag as the command line spells it, and whether the next word is its value. */
interface Flag {
  readonly name: string
  readonly takesValue: boolean
}

/** One option of a command: its long name (without dashes), every spelling, and the values it takes. */
export interface OptionInfo {
  readonly long: string
  readonly names: ReadonlyArray<string>
  readonly takesValue: boolean
  readonly repeated: boolean
}

/** The ones @effect/cli adds to every command. */
const BuiltIn: ReadonlyArray<Flag> = [
  { name: "--help", takesValue: false },
  { name: "-h", takesValue: false },
  { name: "--version", takesValue: false },
  { name: "--wizard", takesValue: false },
  { name: "--completions", takesValue: true },
  { name: "--log-level", takesValue: true },
]

const optionsIn = (usage: Usage.Usage, repeated = false): Array<OptionInfo> => {
  switch (usage._tag) {
    case "Named": {
      const long = usage.names.find((name) => name.startsWith("--"))
      return long === undefined
        ? []
        : [
            {
              long: long.slice(2),
              names: usage.names,
              takesValue: Option.isSome(usage.acceptedValues),
              repeated,
            },
          ]
    }
    case "Optional":
      return optionsIn(usage.usage, repeated)
    case "Repeated":
      return optionsIn(usage.usage, true)
    case "Alternation":
    case "Concat":
      return [...optionsIn(usage.left, repeated), ...optionsIn(usage.right, repeated)]
    default:
      return []
  }
}

/** The options of `command` (not its arguments), as its usage line lists them. */
export const optionsOf = (command: CommandDescriptor.Command<unknown>): ReadonlyArray<OptionInfo> =>
  optionsIn(CommandDescriptor.getUsage(command))

/** The subcommand `args` name, if any (before `--`), with its descriptor. */
export const subcommandIn = <Name extends string, R, E, A>(
  root: Command.Command<Name, R, E, A>,
  args: ReadonlyArray<string>,
) => {
  const subcommands = Command.getSubcommands(root)
  const words = args.slice(0, args.includes("--") ? args.indexOf("--") : args.length)
  const index = words.findIndex((word) => HashMap.has(subcommands, word))
  return index < 0
    ? undefined
    : { name: words[index]!, index, descriptor: HashMap.unsafeGet(subcommands, words[index]!) }
}

/** Edit distance, for suggesting the flag a typo was meant to be. */
const distance = (a: string, b: string) => {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++)
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    row = next
  }
  return row[b.length]!
}

/** The one of `candidates` nearest to `word`, if it is near enough to be what was meant. */
export const nearest = (word: string, candidates: ReadonlyArray<string>): string | undefined => {
  const best = candidates
    .map((candidate) => ({ candidate, far: distance(word, candidate) }))
    .sort((a, b) => a.far - b.far)[0]
  return best !== undefined && best.far <= Math.max(2, Math.floor(word.length / 3))
    ? best.candidate
    : undefined
}

const suggestion = (word: string, flags: ReadonlyArray<Flag>, command: string) => {
  // `-server` is the Go spelling of `--server`: the same word with one dash less.
  const meant = nearest(
    word.replace(/^-+/, ""),
    flags.filter((flag) => flag.name.startsWith("--")).map((flag) => flag.name.slice(2)),
  )
  return meant !== undefined ? `did you mean --${meant}?` : `\`${command} --help\` lists the options`
}

/**
 * Why `args` (the words after the program's name) cannot be what the user meant, if a word that looks
 * like a flag is none of the command's: @effect/cli would take it for a file name or the code. Words
 * after `--` are never flags, so a file whose name starts with `-` goes there.
 */
export const unknownOption = <Name extends string, R, E, A>(
  root: Command.Command<Name, R, E, A>,
  args: ReadonlyArray<string>,
): Option.Option<string> => {
  const words = args.slice(0, args.includes("--") ? args.indexOf("--") : args.length)
  const sub = subcommandIn(root, args)
  const named = sub?.name
  const flags = [
    ...BuiltIn,
    ...optionsOf(sub?.descriptor ?? root.descriptor).flatMap((option) =>
      option.names.map((name) => ({ name, takesValue: option.takesValue })),
    ),
  ]
  const known = new Map(flags.map((flag) => [flag.name, flag]))
  const commandName = named === undefined ? "p2pal" : `p2pal ${named}`
  for (let i = 0; i < words.length; i++) {
    const word = words[i]!
    // "-" alone is a word (standard input), and so is a negative number.
    if (!word.startsWith("-") || word === "-" || /^-\d/.test(word)) continue
    const flag = known.get(word.split("=")[0]!)
    if (flag !== undefined) {
      if (flag.takesValue && !word.includes("=")) i++
      continue
    }
    // @effect/cli does not take a cluster of short flags (`-yq`) reliably: ask for them apart.
    const cluster = /^-[a-zA-Z]{2,}$/.test(word) ? [...word.slice(1)].map((c) => `-${c}`) : []
    if (cluster.length > 0 && cluster.every((f) => known.has(f)))
      return Option.some(`unknown option ${word}; write short flags apart: ${cluster.join(" ")}`)
    const literal =
      named === "send" ? ` (a file whose name starts with - goes after --: p2pal send -- ${word})` : ""
    return Option.some(`unknown option ${word}; ${suggestion(word, flags, commandName)}${literal}`)
  }
  return Option.none()
}
