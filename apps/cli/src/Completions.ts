import { type Command, CommandDescriptor, type Usage } from "@effect/cli"
import { type OptionInfo, optionsOf } from "./CommandLine.js"

/**
 * Shell completion scripts, written here rather than taken from @effect/cli, whose scripts complete no
 * file names, none after a switch (`send -r <TAB>`), and no flags of nested commands (`checkpoint clean-all`).
 */

/** What a value or an argument completes to. */
type Values =
  | { readonly kind: "none" }
  | { readonly kind: "files" | "dirs" }
  | { readonly kind: "words"; readonly words: ReadonlyArray<string> }

interface Flag {
  readonly names: ReadonlyArray<string>
  readonly value: Values | undefined
}

interface Node {
  /** The words from the program's name to this command, e.g. ["checkpoint", "delete"]. */
  readonly path: ReadonlyArray<string>
  readonly flags: ReadonlyArray<Flag>
  readonly subcommands: ReadonlyArray<string>
  readonly args: Values
}

/** What a value placeholder asks for: a listed choice, a path, or free text. */
const valuesOf = (accepted: string): Values =>
  accepted.includes(" | ")
    ? { kind: "words", words: accepted.split(" | ") }
    : accepted === "DIR"
      ? { kind: "dirs" }
      : accepted === "FILE"
        ? { kind: "files" }
        : { kind: "none" }

const flagOf = (option: OptionInfo & { readonly accepted?: string }): Flag => ({
  names: option.names,
  value: option.takesValue ? valuesOf(option.accepted ?? "") : undefined,
})

/** The placeholders of the options and arguments in `usage`, by name. */
const placeholders = (usage: Usage.Usage, into = new Map<string, string>()): Map<string, string> => {
  if (usage._tag === "Named" && usage.acceptedValues._tag === "Some")
    for (const name of usage.names) into.set(name, usage.acceptedValues.value)
  if (usage._tag === "Named" && !usage.names[0]!.startsWith("-")) into.set(usage.names[0]!, "")
  if (usage._tag === "Optional" || usage._tag === "Repeated") placeholders(usage.usage, into)
  if (usage._tag === "Alternation" || usage._tag === "Concat") {
    placeholders(usage.left, into)
    placeholders(usage.right, into)
  }
  return into
}

/** The flags every command takes (@effect/cli's own and `--config`). */
const everywhere: ReadonlyArray<Flag> = [
  { names: ["-h", "--help"], value: undefined },
  { names: ["--config"], value: { kind: "files" } },
]
const atTheTop: ReadonlyArray<Flag> = [
  { names: ["--version"], value: undefined },
  { names: ["--completions"], value: { kind: "words", words: ["bash", "zsh", "fish"] } },
  {
    names: ["--log-level"],
    value: { kind: "words", words: ["all", "trace", "debug", "info", "warning", "error", "fatal", "none"] },
  },
]

/**
 * The subcommands of `descriptor`, each with its own. @effect/cli's getSubcommands flattens a subcommand
 * to its parent (`checkpoint` without `list`...), so its tree (pinned version) is read directly.
 */
const childrenOf = (descriptor: unknown): Array<readonly [string, CommandDescriptor.Command<unknown>]> => {
  const node = descriptor as {
    readonly _tag: string
    readonly command?: unknown
    readonly children?: unknown
  }
  if (node._tag === "Map") return childrenOf(node.command)
  if (node._tag !== "Subcommands") return []
  return (node.children as ReadonlyArray<CommandDescriptor.Command<unknown>>).map(
    (child) => [[...CommandDescriptor.getNames(child)][0]!, child] as const,
  )
}

const nodes = (descriptor: CommandDescriptor.Command<unknown>, path: ReadonlyArray<string>): Array<Node> => {
  const children = childrenOf(descriptor)
  const usage = CommandDescriptor.getUsage(descriptor)
  const accepted = placeholders(usage)
  const theirs = new Set(children.flatMap(([, child]) => optionsOf(child).map((o) => o.long)))
  const options = optionsOf(descriptor).filter((o) => !theirs.has(o.long))
  // Only arguments named as files complete to paths (send's <file>); a code or an id does not.
  const args = [...accepted.keys()].some((name) => name === "<file>") ? "files" : "none"
  const node: Node = {
    path,
    flags: [
      ...options.map((o) => flagOf({ ...o, accepted: accepted.get(`--${o.long}`) ?? "" })),
      ...everywhere,
      ...(path.length === 0 ? atTheTop : []),
    ],
    subcommands: children.map(([name]) => name),
    args: { kind: children.length > 0 ? "none" : args },
  }
  return [node, ...children.flatMap(([child, sub]) => nodes(sub, [...path, child]))]
}

const flagWords = (node: Node) => node.flags.flatMap((f) => f.names)
const quote = (words: ReadonlyArray<string>) => words.join(" ")

const bash = (program: string, tree: ReadonlyArray<Node>) => {
  const fn = `_${program.replace(/\W/g, "_")}`
  const compgen = (values: Values) =>
    values.kind === "files"
      ? // One name a line: a file name may hold spaces.
        `mapfile -t COMPREPLY < <(compgen -f -- "$cur")`
      : values.kind === "dirs"
        ? `mapfile -t COMPREPLY < <(compgen -d -- "$cur")`
        : values.kind === "words"
          ? `COMPREPLY=($(compgen -W "${quote(values.words)}" -- "$cur"))`
          : "COMPREPLY=()"
  const cases = tree.map((node) => {
    const valued = node.flags.filter((f) => f.value !== undefined)
    return [
      `    "${node.path.join(" ")}")`,
      `      case "$prev" in`,
      ...valued.map((f) => `        ${f.names.join("|")}) ${compgen(f.value!)}; return ;;`),
      `      esac`,
      `      if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "${quote(flagWords(node))}" -- "$cur"))`,
      node.subcommands.length > 0
        ? `      else COMPREPLY=($(compgen -W "${quote(node.subcommands)}" -- "$cur"))`
        : `      else ${compgen(node.args)}`,
      `      fi ;;`,
    ].join("\n")
  })
  const steps = tree.flatMap((node) => node.subcommands.map((sub) => `"${node.path.join(" ")},${sub}"`))
  return `# bash completion for ${program}: source it, or put it in ~/.local/share/bash-completion/completions/${program}
${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev="\${COMP_WORDS[COMP_CWORD-1]}" at="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "$at,\${COMP_WORDS[i]}" in
      ${steps.join("|")}) at="\${at:+$at }\${COMP_WORDS[i]}" ;;
    esac
  done
  case "$at" in
${cases.join("\n")}
  esac
}
complete -o filenames -F ${fn} ${program}
`
}

const zsh = (program: string, tree: ReadonlyArray<Node>) => {
  const fn = `_${program.replace(/\W/g, "_")}`
  const add = (values: Values) =>
    values.kind === "files"
      ? "_files"
      : values.kind === "dirs"
        ? "_files -/"
        : values.kind === "words"
          ? `compadd -- ${quote(values.words)}`
          : "return 1"
  const cases = tree.map((node) => {
    const valued = node.flags.filter((f) => f.value !== undefined)
    return [
      `    ("${node.path.join(" ")}")`,
      `      case "\${words[CURRENT-1]}" in`,
      ...valued.map((f) => `        (${f.names.join("|")}) ${add(f.value!)}; return ;;`),
      `      esac`,
      `      if [[ "$PREFIX" == -* ]]; then compadd -- ${quote(flagWords(node))}`,
      node.subcommands.length > 0
        ? `      else compadd -- ${quote(node.subcommands)}`
        : `      else ${add(node.args)}`,
      `      fi ;;`,
    ].join("\n")
  })
  const steps = tree.flatMap((node) => node.subcommands.map((sub) => `"${node.path.join(" ")},${sub}"`))
  return `#compdef ${program}
# zsh completion for ${program}: put it in a directory of $fpath as _${program}, or source it after compinit
${fn}() {
  local at="" i
  for ((i = 2; i < CURRENT; i++)); do
    case "$at,\${words[i]}" in
      (${steps.join("|")}) at="\${at:+$at }\${words[i]}" ;;
    esac
  done
  case "$at" in
${cases.join("\n")}
  esac
}
if [[ "\${zsh_eval_context[-1]}" == loadautofunc ]]; then ${fn} "$@"; else compdef ${fn} ${program}; fi
`
}

const fish = (program: string, tree: ReadonlyArray<Node>) => {
  const seen = (node: Node) => {
    // At this command and no deeper: every word of its path is there, none of its subcommands is.
    const inPath = node.path.map((word) => `__fish_seen_subcommand_from ${word}`)
    const notDeeper =
      node.subcommands.length > 0 ? [`not __fish_seen_subcommand_from ${quote(node.subcommands)}`] : []
    const top = tree.find((n) => n.path.length === 0)!
    const atTop = node.path.length === 0 ? [`not __fish_seen_subcommand_from ${quote(top.subcommands)}`] : []
    return [...inPath, ...notDeeper, ...atTop].join("; and ") || "true"
  }
  const flagLine = (node: Node, flag: Flag) => {
    const names = flag.names.map((name) =>
      name.startsWith("--") ? `-l ${name.slice(2)}` : `-s ${name.slice(1)}`,
    )
    const value =
      flag.value === undefined
        ? ""
        : flag.value.kind === "files"
          ? " -r -F"
          : flag.value.kind === "dirs"
            ? " -x -a '(__fish_complete_directories)'"
            : flag.value.kind === "words"
              ? ` -x -a '${quote(flag.value.words)}'`
              : " -x"
    return `complete -c ${program} -n '${seen(node)}' ${names.join(" ")}${value}`
  }
  return [
    `# fish completion for ${program}: put it in ~/.config/fish/completions/${program}.fish`,
    `complete -c ${program} -e`,
    `complete -c ${program} -f`,
    ...tree.flatMap((node) => [
      ...node.flags.map((flag) => flagLine(node, flag)),
      ...(node.subcommands.length > 0
        ? [`complete -c ${program} -n '${seen(node)}' -a '${quote(node.subcommands)}'`]
        : node.args.kind === "files"
          ? [`complete -c ${program} -n '${seen(node)}' -F`]
          : []),
    ]),
    "",
  ].join("\n")
}

export const Shells = ["bash", "zsh", "fish"] as const

/** The completion script for `shell`, covering every command under `root`. */
export const script = <Name extends string, R, E, A>(
  root: Command.Command<Name, R, E, A>,
  shell: (typeof Shells)[number],
) => {
  const program = [...CommandDescriptor.getNames(root.descriptor)][0]!
  const tree = nodes(root.descriptor, [])
  return { bash, zsh, fish }[shell](program, tree)
}
