import { Console } from "effect"
import { stripVTControlCharacters } from "node:util"

/**
 * The sentence @effect/cli puts under every option of a type, above the option's own description: it
 * says nothing ("A user-defined piece of text.") and hides the description that does.
 */
const TypeBlurb =
  /^ *(A user-defined piece of text( that is confidential)?|A true or false value|An integer|A floating point number|A directory|A file|A file or directory)\.\n\n/gm

/** Colour only for a person at a terminal who has not asked for none (https://no-color.org). */
export const colour = (stream: NodeJS.WriteStream) =>
  stream.isTTY === true && (process.env.NO_COLOR ?? "") === ""

const tidy = (withColour: boolean) => (arg: unknown) => {
  if (typeof arg !== "string") return arg
  const text = arg.replace(TypeBlurb, "")
  return withColour ? text : stripVTControlCharacters(text)
}

/**
 * The console @effect/cli prints help, completions and its own usage errors to: without the type blurbs,
 * and without escape codes where they would show as garbage (a pipe, a file, `NO_COLOR`).
 */
export const cliConsole = (base: Console.Console): Console.Console => {
  const out = tidy(colour(process.stdout))
  const err = tidy(colour(process.stderr))
  return {
    ...base,
    log: (...args) => base.log(...args.map(out)),
    error: (...args) => base.error(...args.map(err)),
  }
}
