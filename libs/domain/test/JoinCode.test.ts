import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc, Schema } from "effect"
import { Nameplate } from "../src/Ids.js"
import { format, type JoinCode, parse, pickWords } from "../src/JoinCode.js"
import { words } from "../src/Wordlist.js"

const word = fc.constantFrom(...words)
const nameplate = fc.stringMatching(/^[0-9]{2,6}$/).map(Schema.decodeSync(Nameplate))
const code: fc.Arbitrary<JoinCode> = fc.record({ words: fc.tuple(word, word), nameplate })

const messageOf = (input: string): string =>
  Either.match(parse(input), { onLeft: (e) => e.message, onRight: (c) => `parsed ${format(c)}` })

describe("Wordlist", () => {
  it("has 2048 unique lowercase words of 3-8 letters, enough for 22 bits from two words", () => {
    expect(words.length).toBe(2048)
    expect(new Set(words).size).toBe(words.length)
    for (const w of words) expect(w).toMatch(/^[a-z]{3,8}$/)
    expect(Math.log2(words.length) * 2).toBeGreaterThanOrEqual(20)
  })

  it("contains the words of the documented example", () => {
    expect(words).toContain("zebra")
    expect(words).toContain("luna")
  })
})

describe("JoinCode", () => {
  it.prop("parse(format(c)) equals c", [code], ([c]) => {
    expect(parse(format(c))).toEqual(Either.right(c))
  })

  it.prop(
    "forgives surrounding whitespace and capitals",
    [code, fc.constantFrom(" ", "\t", "\n", "  ")],
    ([c, ws]) => {
      expect(parse(`${ws}${format(c).toUpperCase()}${ws}`)).toEqual(Either.right(c))
    },
  )

  it("formats as word-word-number", () => {
    const c = Either.getOrThrow(parse("zebra-luna-47"))
    expect(c.words).toEqual(["zebra", "luna"])
    expect(c.nameplate).toBe("47")
    expect(format(c)).toBe("zebra-luna-47")
  })

  const bad: ReadonlyArray<readonly [string, RegExp]> = [
    ["", /a join code looks like zebra-luna-47/],
    ["   ", /a join code looks like zebra-luna-47/],
    ["zebra-luna", /a join code looks like/],
    ["47-zebra-luna", /a join code looks like/],
    ["zebra_luna_47", /a join code looks like/],
    ["zebra luna 47", /a join code looks like/],
    ["zebra-luna-47-extra", /a join code looks like/],
    ["zebra--luna-47", /a join code looks like/],
    ["zebra-lüna-47", /a join code looks like/],
    ["zebra-luna-4a", /a join code looks like/],
    ["zebra-luna-٤٧", /a join code looks like/],
    ["qwxyz-luna-47", /first word is not in the word list/],
    ["zebra-qwxyz-47", /second word is not in the word list/],
    ["zebra-luna-4", /2 to 6 digits/],
    ["zebra-luna-1234567", /2 to 6 digits/],
  ]
  it.each(bad)("rejects %j", (input, message) => {
    expect(messageOf(input)).toMatch(message)
  })

  it("never repeats the secret words in an error", () => {
    for (const input of ["qwxyz-river-47", "river-qwxyz-47", "river-apple-1", "river-apple"]) {
      const message = messageOf(input)
      for (const part of ["qwxyz", "river", "apple"]) expect(message).not.toContain(part)
    }
  })

  it("pickWords draws both words through the injected randomness", () => {
    const bounds: Array<number> = []
    const draws = [5, 2047]
    const picked = pickWords((bound) => {
      bounds.push(bound)
      return draws.shift()!
    })
    expect(picked).toEqual([words[5], words[2047]])
    expect(bounds).toEqual([words.length, words.length])
  })

  it.prop(
    "pickWords always yields a parseable code",
    [fc.nat(2047), fc.nat(2047), nameplate],
    ([i, j, n]) => {
      const draws = [i, j]
      const picked = pickWords(() => draws.shift()!)
      expect(parse(format({ words: picked, nameplate: n }))).toEqual(
        Either.right({ words: picked, nameplate: n }),
      )
    },
  )

  it("pickWords refuses an index outside the list", () => {
    expect(() => pickWords(() => words.length)).toThrow(RangeError)
    expect(() => pickWords(() => -1)).toThrow(RangeError)
    expect(() => pickWords(() => 0.5)).toThrow(RangeError)
  })
})
