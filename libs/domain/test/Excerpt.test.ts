import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc, Schema } from "effect"
import { chars, firstIssue, utf8Prefix } from "../src/Excerpt.js"

const decoder = new TextDecoder("utf-8", { fatal: true })

describe("utf8Prefix", () => {
  it.prop(
    "is the longest prefix of whole characters within the bytes",
    [fc.string({ unit: "binary" }), fc.integer({ min: 0, max: 64 })],
    ([text, max]) => {
      const bytes = utf8Prefix(text, max)
      expect(bytes.length).toBeLessThanOrEqual(max)
      const kept = decoder.decode(bytes)
      expect(text.startsWith(kept)).toBe(true)
      if (kept.length < text.length) {
        const next = String.fromCodePoint(text.codePointAt(kept.length)!)
        expect(bytes.length + new TextEncoder().encode(next).length).toBeGreaterThan(max)
      }
    },
  )

  it("cuts before a character that would not fit whole", () => {
    // 1 + 2 + 3 + 4 bytes
    expect(decoder.decode(utf8Prefix("aé€😀", 5))).toBe("aé")
    expect(decoder.decode(utf8Prefix("aé€😀", 9))).toBe("aé€")
    expect(decoder.decode(utf8Prefix("aé€😀", 10))).toBe("aé€😀")
  })
})

describe("chars", () => {
  it("keeps short text, marks a cut, never splits a surrogate pair", () => {
    expect(chars("abc", 3)).toBe("abc")
    expect(chars("abcd", 3)).toBe("abc...")
    expect(chars("ab😀", 3)).toBe("ab...")
  })
})

describe("firstIssue", () => {
  const decode = Schema.decodeUnknownEither(Schema.Struct({ entries: Schema.Array(Schema.Number) }))
  const issue = (input: unknown) =>
    Either.match(decode(input), { onLeft: firstIssue, onRight: () => undefined })

  it("names where the first problem is, and what", () => {
    expect(issue({ entries: [1, "x", "y"] })).toEqual({
      path: "entries.1",
      message: 'Expected number, actual "x"',
    })
  })

  it("has an empty path when the value itself is wrong", () => {
    expect(issue("x")?.path).toBe("")
  })
})
