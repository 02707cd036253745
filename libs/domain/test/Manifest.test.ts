import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { MaxManifestBytes } from "../src/Frames.js"
import {
  checkSize,
  decodeManifest,
  type Entry,
  encodeManifest,
  type Manifest,
  totalBytes,
} from "../src/Manifest.js"
import { check, escapeForDisplay, MaxEntries, ManifestError } from "../src/ManifestPolicy.js"

const encoder = new TextEncoder()
const manifest = (...entries: ReadonlyArray<Entry>): Manifest => ({ version: 1, entries })
const file = (path: string, size = 1): Entry => ({ _tag: "file", path, size })
const dir = (path: string): Entry => ({ _tag: "dir", path })
const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value))
/** `n` entries as a source tree lists them: folders of 1000, each listed before its files. */
const tree = (n: number): Manifest => ({
  version: 1,
  entries: Array.from({ length: n }, (_, i) => {
    const folder = `project/src/module-${String(Math.floor(i / 1000)).padStart(4, "0")}`
    return i % 1000 === 0 ? dir(folder) : file(`${folder}/file-${String(i % 1000).padStart(5, "0")}.ts`, i)
  }),
})
/** `n` top-level directories; built without spreading, which would overflow the stack at the cap. */
const dirs = (n: number): Manifest => ({
  version: 1,
  entries: Array.from({ length: n }, (_, i) => dir(`d${i}`)),
})

const ruleOf = (bytes: Uint8Array): string =>
  Either.match(decodeManifest(bytes), { onLeft: (e) => e.rule, onRight: () => "accepted" })

/** Printable and unambiguous: nothing that steers a terminal, no lone surrogates. */
const unprintable =
  /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/u

const benignNames = [
  "my file.txt",
  "ünïcødé",
  "naïve café.md",
  "🎉 party",
  "😀.png",
  "日本語",
  ".hidden",
  "a..b",
  "COM0",
]
/** Valid manifests: unique names by construction (index prefixes), files optionally inside listed or implied dirs. */
const validManifest: fc.Arbitrary<Manifest> = fc
  .array(
    fc.record({
      isDir: fc.boolean(),
      parent: fc.option(fc.nat(20), { nil: undefined }),
      name: fc.constantFrom(...benignNames),
      size: fc.oneof(fc.nat(), fc.integer({ min: 0, max: 2 ** 40 })),
    }),
    { maxLength: 40 },
  )
  .map((specs) =>
    manifest(
      ...specs.map(({ isDir, parent, name, size }, i): Entry => {
        if (isDir) return dir(`d${i}`)
        const path = `${parent === undefined ? "" : `d${parent}/`}f${i} ${name}`
        return file(path, size)
      }),
    ),
  )

describe("Manifest", () => {
  it.prop("decodeManifest(encodeManifest(m)) equals m", [validManifest], ([m]) => {
    expect(decodeManifest(encodeManifest(m))).toEqual(Either.right(m))
    expect(totalBytes(m)).toBe(m.entries.reduce((n, e) => n + (e._tag === "file" ? e.size : 0), 0))
  })

  it("accepts benign unicode names, nesting and explicit parents", () => {
    const m = manifest(
      dir("empty"),
      dir("ünïcødé"),
      file("ünïcødé/naïve café.txt", 10),
      file("🎉 party/😀 face.png", 20),
      file("日本語/ファイル.txt", 30),
      file("a/b/c/d/e.txt", 0),
      file(`${"x/".repeat(31)}deep`),
      file("é".repeat(127)),
      file(Array.from({ length: 4 }, () => "n".repeat(255)).join("/")),
    )
    expect(decodeManifest(encodeManifest(m))).toEqual(Either.right(m))
    expect(totalBytes(m)).toBe(61 + 2)
  })

  it("accepts a tree of 100,000 entries arriving as bytes, within the byte cap", () => {
    const m = tree(100_000)
    const bytes = encodeManifest(m)
    expect(bytes.length).toBeLessThan(MaxManifestBytes)
    expect(decodeManifest(bytes)).toEqual(Either.right(m))
    expect(checkSize(m)).toEqual(Either.right(m))
  })

  it("refuses one entry over the cap, saying what the cap is", () => {
    const error = Either.getOrThrow(Either.flip(decodeManifest(encodeManifest(tree(MaxEntries + 1)))))
    expect(MaxEntries).toBeGreaterThanOrEqual(100_000)
    expect(error.message).toBe("more than 200,000 entries (200,001 listed)")
  })

  it("refuses on the sender a file list the receiver would find too large", () => {
    // Paths of 959 bytes: the entry count is far below its cap, the bytes are not.
    const parent = ["x", "y", "z"].map((c) => c.repeat(240)).join("/")
    const m: Manifest = {
      version: 1,
      entries: Array.from({ length: 40_000 }, (_, i) =>
        file(`${parent}/${"w".repeat(230)}${String(i).padStart(6, "0")}`),
      ),
    }
    expect(Either.isRight(check(m))).toBe(true)
    const error = Either.getOrThrow(Either.flip(checkSize(m)))
    expect(error.rule).toBe("too-large")
    expect(error.message).toMatch(/^a file list of [\d,]+ bytes, over the 33,554,432-byte limit/)
    expect(ruleOf(encodeManifest(m))).toBe("too-large")
  })

  it("accepts exactly the entry limit", () => {
    const m = dirs(MaxEntries)
    expect(Either.isRight(check(m))).toBe(true)
  })

  it("drops properties outside the schema when encoding", () => {
    const withExtras = {
      version: 1,
      entries: [{ _tag: "file", path: "a", size: 1, mode: 0o4755 }],
      extra: true,
    } as const
    const m: Manifest = withExtras
    expect(JSON.parse(new TextDecoder().decode(encodeManifest(m)))).toEqual(manifest(file("a")))
  })

  const garbage: ReadonlyArray<readonly [string, Uint8Array, string]> = [
    ["over the size cap", new Uint8Array(MaxManifestBytes + 1).fill(0x20), "too-large"],
    ["invalid UTF-8", new Uint8Array([0x7b, 0xff, 0x7d]), "invalid-utf8"],
    ["not JSON", encoder.encode("version: 1"), "json"],
    ["empty input", new Uint8Array(0), "json"],
    ["JSON null", json(null), "schema"],
    ["version 2", json({ version: 2, entries: [] }), "schema"],
    ["no entries", json({ version: 1 }), "schema"],
    ["excess top-level property", json({ version: 1, entries: [], x: 1 }), "schema"],
    ["excess entry property", json({ version: 1, entries: [{ ...file("a"), mode: 0o4755 }] }), "schema"],
    [
      "symlink entry",
      json({ version: 1, entries: [{ _tag: "symlink", path: "a", target: "/etc" }] }),
      "schema",
    ],
    ["negative size", json(manifest(file("a", -1))), "schema"],
    ["fractional size", json(manifest(file("a", 1.5))), "schema"],
    [
      "unsafe size",
      encoder.encode('{"version":1,"entries":[{"_tag":"file","path":"a","size":1e16}]}'),
      "schema",
    ],
    [
      "infinite size",
      encoder.encode('{"version":1,"entries":[{"_tag":"file","path":"a","size":1e999}]}'),
      "schema",
    ],
    ["numeric path", json({ version: 1, entries: [{ _tag: "dir", path: 7 }] }), "schema"],
    ["a malformed transfer id", json({ ...manifest(file("a")), transfer: "../x" }), "schema"],
    ["changed naming a directory", json({ ...manifest(dir("d"), file("d/a")), changed: [0] }), "changed"],
    ["changed past the entries", json({ ...manifest(file("a")), changed: [1] }), "changed"],
    ["changed naming a file twice", json({ ...manifest(file("a"), file("b")), changed: [1, 1] }), "changed"],
    ["changed out of order", json({ ...manifest(file("a"), file("b")), changed: [1, 0] }), "changed"],
    ["a pipe of two files", json({ ...manifest(file("a", 0), file("b", 0)), stream: "pipe" }), "stream"],
    ["a pipe with a declared size", json({ ...manifest(file("a", 5)), stream: "pipe" }), "stream"],
    ["a pipe that is a directory", json({ ...manifest(dir("a")), stream: "pipe" }), "stream"],
    ["a text over 64 KiB", json({ ...manifest(file("text", 64 * 1024 + 1)), stream: "text" }), "stream"],
    ["an unknown stream", json({ ...manifest(file("a", 0)), stream: "socket" }), "schema"],
  ]
  it.each(garbage)("rejects %s", (_, bytes, rule) => {
    expect(ruleOf(bytes)).toBe(rule)
  })

  it("escapes hostile values quoted in schema errors", () => {
    const bytes = json({ version: 1, entries: [{ _tag: "\u202eexe.txt\u0007", path: "a" }] })
    const error = Either.getOrThrow(Either.flip(decodeManifest(bytes)))
    expect(error.rule).toBe("schema")
    expect(error.message).toContain("\\u{202e}")
    expect(error.message).not.toMatch(unprintable)
  })

  /** One hostile manifest per rule; several rules get a few variants. */
  const hostile: ReadonlyArray<readonly [rule: string, m: Manifest]> = [
    ["empty-path", manifest(file(""))],
    ["absolute", manifest(file("/etc/passwd"))],
    ["absolute", manifest(dir("//server/share"))],
    ["lone-surrogate", manifest(file("a\ud800b"))],
    ["lone-surrogate", manifest(file("\udc00"))],
    ["control-char", manifest(file("a\nb"))],
    ["control-char", manifest(file("nul\u0000byte"))],
    ["control-char", manifest(file("del\u007f"))],
    ["control-char", manifest(file("c1\u0085"))],
    ["control-char", manifest(file("esc\u001b[31m"))],
    ["invisible-char", manifest(file("invoice\u202efdp.exe"))],
    ["invisible-char", manifest(file("zero\u200bwidth"))],
    ["invisible-char", manifest(file("\ufeffbom"))],
    ["invisible-char", manifest(file("isolate\u2066x\u2069"))],
    ["path-too-long", manifest(file(Array.from({ length: 5 }, () => "p".repeat(250)).join("/")))],
    ["too-deep", manifest(file(`${"a/".repeat(32)}f`))],
    ["empty-component", manifest(file("a//b"))],
    ["empty-component", manifest(dir("a/"))],
    ["traversal", manifest(file("../outside"))],
    ["traversal", manifest(file("a/../../outside"))],
    ["traversal", manifest(dir(".."))],
    ["dot-component", manifest(file("./a"))],
    ["dot-component", manifest(file("a/./b"))],
    ["component-too-long", manifest(file("n".repeat(256)))],
    ["component-too-long", manifest(file("é".repeat(128)))],
    ["too-many-entries", dirs(MaxEntries + 1)],
    ["duplicate", manifest(file("a.txt"), file("a.txt"))],
    ["duplicate", manifest(dir("d"), dir("d"))],
    ["file-dir-clash", manifest(file("a"), file("a/b"))],
    ["file-dir-clash", manifest(file("a/b"), file("a"))],
    ["file-dir-clash", manifest(file("a"), dir("a"))],
    ["file-dir-clash", manifest(dir("x/a"), file("x/a"))],
    ["total-too-large", manifest(file("a", Number.MAX_SAFE_INTEGER), file("b", 1))],
  ]

  it.each(hostile)("rejects %s (case %#)", (rule, m) => {
    const error = Either.getOrThrow(Either.flip(check(m)))
    expect(error.rule).toBe(rule)
    expect(error.message).not.toMatch(unprintable)
    if (error.entry !== undefined) expect(error.entry).not.toMatch(unprintable)
    // The same verdict when the manifest arrives as bytes.
    expect(ruleOf(encodeManifest(m))).toBe(rule)
  })

  it("covers every rule in the policy with a hostile example", () => {
    expect([...new Set(hostile.map(([rule]) => rule))].sort()).toEqual([
      "absolute",
      "component-too-long",
      "control-char",
      "dot-component",
      "duplicate",
      "empty-component",
      "empty-path",
      "file-dir-clash",
      "invisible-char",
      "lone-surrogate",
      "path-too-long",
      "too-deep",
      "too-many-entries",
      "total-too-large",
      "traversal",
    ])
  })

  it("names the offending entry, escaped", () => {
    const error = Either.getOrThrow(Either.flip(check(manifest(file("ok"), file("invoice\u202efdp.exe")))))
    expect(error.entry).toBe("invoice\\u{202e}fdp.exe")
    expect(error.message).toContain("invoice\\u{202e}fdp.exe")
    const long = Either.getOrThrow(Either.flip(check(manifest(file("n".repeat(5_000))))))
    expect(long.entry!.length).toBeLessThan(300)
  })
})

/** What decodeManifest must always return, whatever it is given: an Either, never a throw. */
const expectVerdict = (bytes: Uint8Array) => {
  const result = decodeManifest(bytes)
  expect(Either.isEither(result)).toBe(true)
  if (Either.isLeft(result)) {
    expect(result.left).toBeInstanceOf(ManifestError)
    expect(typeof result.left.rule).toBe("string")
    expect(typeof result.left.message).toBe("string")
  }
  return result
}

/** Mostly `common`, one time in twenty `odd`: breaks the schema often enough, but not nearly always. */
const rare = <A, B>(common: fc.Arbitrary<A>, odd: fc.Arbitrary<B>) =>
  fc.oneof({ arbitrary: common, weight: 19 }, { arbitrary: odd, weight: 1 })

/** Path components a hostile sender would try, mixed with benign ones and arbitrary UTF-16. */
const component = fc.oneof(
  fc.constantFrom(...benignNames, "..", ".", "", "CON", "a:b", "x ", "y.", "\u202e", "a\\b", "C:"),
  fc.string({ unit: "binary", maxLength: 8 }),
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n)), maxLength: 4 }),
)
const anyPath = fc
  .tuple(rare(fc.constant(""), fc.constant("/")), fc.array(component, { minLength: 1, maxLength: 4 }))
  .map(([root, parts]) => root + parts.join("/"))
/**
 * Shaped like a manifest, so the decoder usually gets past JSON and the schema to the policy, with
 * hostile paths and now and then an arbitrary JSON value where a field or an entry should be.
 */
const manifestLike: fc.Arbitrary<unknown> = fc.record({
  version: rare(fc.constant(1), fc.jsonValue()),
  entries: fc.array(
    rare(
      fc.oneof(
        fc.record({
          _tag: fc.constant("file"),
          path: rare(anyPath, fc.jsonValue()),
          size: rare(fc.oneof(fc.nat(), fc.integer({ min: 0, max: 2 ** 53 - 1 })), fc.jsonValue()),
        }),
        fc.record({ _tag: fc.constant("dir"), path: anyPath }),
      ),
      fc.jsonValue(),
    ),
    { maxLength: 6 },
  ),
})

describe("decodeManifest on arbitrary input", () => {
  it.prop("never throws on arbitrary bytes", [fc.uint8Array({ maxLength: 2048 })], ([bytes]) => {
    expectVerdict(bytes)
  })

  it.prop("never throws on arbitrary JSON values", [fc.jsonValue()], ([value]) => {
    expectVerdict(json(value))
  })

  it.prop(
    "never throws on arbitrary strings, JSON or not",
    [fc.oneof(fc.json(), fc.string({ unit: "binary" }), fc.string({ unit: "grapheme" }))],
    ([text]) => {
      expectVerdict(encoder.encode(text))
    },
  )

  it.prop("never throws on manifest-shaped hostile values", [manifestLike], ([value]) => {
    expectVerdict(json(value))
  })

  it.prop(
    "never throws on a valid manifest with one byte changed, and refuses every truncation",
    [validManifest, fc.nat(), fc.integer({ min: 0, max: 255 })],
    ([m, at, byte]) => {
      const bytes = encodeManifest(m)
      const changed = bytes.slice()
      changed[at % bytes.length] = byte
      expectVerdict(changed)
      expect(Either.isLeft(expectVerdict(bytes.subarray(0, at % bytes.length)))).toBe(true)
    },
  )

  it("re-encodes every manifest it accepts to bytes that decode to an equal value", () => {
    let accepted = 0
    fc.assert(
      fc.property(fc.oneof(manifestLike, fc.jsonValue(), validManifest), (value) => {
        const first = expectVerdict(json(value))
        if (Either.isLeft(first)) return
        accepted++
        const again = expectVerdict(encodeManifest(first.right))
        expect(again).toEqual(Either.right(first.right))
        expect(encodeManifest(Either.getOrThrow(again))).toEqual(encodeManifest(first.right))
      }),
      { numRuns: 500 },
    )
    // The property says nothing unless a fair share of the inputs were accepted (about 40% are).
    expect(accepted).toBeGreaterThan(100)
  })
})

describe("escapeForDisplay", () => {
  it("escapes control, bidi, zero-width characters and lone surrogates", () => {
    expect(escapeForDisplay("a\u202eb")).toBe("a\\u{202e}b")
    expect(escapeForDisplay("line\nbreak\u0000")).toBe("line\\u{000a}break\\u{0000}")
    expect(escapeForDisplay("zw\u200bj\ufeff")).toBe("zw\\u{200b}j\\u{feff}")
    expect(escapeForDisplay("\ud800")).toBe("\\u{d800}")
    expect(escapeForDisplay("back\\slash")).toBe("back\\\\slash")
  })

  it("leaves printable text alone", () => {
    for (const s of ["ünïcødé", "🎉 party", "日本語", "a b.txt", "👍🏽"]) expect(escapeForDisplay(s)).toBe(s)
  })

  it.prop("never lets an unprintable character through", [fc.string({ unit: "binary" })], ([s]) => {
    expect(escapeForDisplay(s)).not.toMatch(unprintable)
  })

  it.prop(
    "never lets an unprintable character through (UTF-16 units, lone surrogates included)",
    [fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((n) => String.fromCharCode(n)) })],
    ([s]) => {
      expect(escapeForDisplay(s)).not.toMatch(unprintable)
    },
  )
})
