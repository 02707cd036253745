import { Data, Either, Schema } from "effect"
import { Nameplate } from "./Ids.js"
import { words as wordlist } from "./Wordlist.js"

/**
 * A join code such as `zebra-luna-47`: two secret words (never sent to the signal app; they key the
 * PAKE) and the nameplate the signal app allocated.
 */
export interface JoinCode {
  readonly words: readonly [string, string]
  readonly nameplate: Nameplate
}

export class JoinCodeError extends Data.TaggedError("JoinCodeError")<{ readonly message: string }> {}

const example = "a join code looks like zebra-luna-47"
const known: ReadonlySet<string> = new Set(wordlist)
const shape = /^([a-z]+)-([a-z]+)-([0-9]+)$/
const decodeNameplate = Schema.decodeUnknownEither(Nameplate)

export const format = (code: JoinCode): string => `${code.words[0]}-${code.words[1]}-${code.nameplate}`

const fail = (message: string) => Either.left(new JoinCodeError({ message }))

/**
 * Reads a code as typed by a person: surrounding whitespace and capitals are forgiven, nothing else.
 * Messages never repeat the input: the words are a secret and errors end up in logs.
 */
export const parse = (input: string): Either.Either<JoinCode, JoinCodeError> => {
  const match = shape.exec(input.trim().toLowerCase())
  if (match === null) return fail(`that is not a join code: ${example}`)
  const [, first = "", second = "", digits = ""] = match
  if (!known.has(first))
    return fail(`the first word is not in the word list; check its spelling (${example})`)
  if (!known.has(second))
    return fail(`the second word is not in the word list; check its spelling (${example})`)
  return Either.match(decodeNameplate(digits), {
    onLeft: () => fail(`the number in a join code has 2 to 6 digits (${example})`),
    onRight: (nameplate) => Either.right({ words: [first, second] as const, nameplate }),
  })
}

/** Two words drawn with the injected randomness (`randomIndex(bound)` returns an integer in 0..bound-1). */
export const pickWords = (randomIndex: (bound: number) => number): readonly [string, string] => {
  const pick = (): string => {
    const index = randomIndex(wordlist.length)
    const word = wordlist[index]
    if (word === undefined || !Number.isInteger(index))
      throw new RangeError(`randomIndex(${wordlist.length}) returned ${index}`)
    return word
  }
  return [pick(), pick()]
}
