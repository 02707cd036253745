import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import type { Entry, Manifest } from "../src/Manifest.js"
import * as ManifestPolicy from "../src/ManifestPolicy.js"
import { check, type NameRules, rename } from "../src/NameRules.js"

const manifest = (...entries: ReadonlyArray<Entry>): Manifest => ({ version: 1, entries })
const file = (path: string, size = 1): Entry => ({ _tag: "file", path, size })
const dir = (path: string): Entry => ({ _tag: "dir", path })

const linux: NameRules = { windows: false, foldsCase: false, foldsUnicode: false }
const mac: NameRules = { windows: false, foldsCase: true, foldsUnicode: true }
const windows: NameRules = { windows: true, foldsCase: true, foldsUnicode: true }

const ruleOf = (m: Manifest, rules: NameRules) =>
  Either.match(check(m, rules), { onLeft: (e) => e.rule, onRight: () => "accepted" })

/** Names Linux allows: every sender and a Linux receiver take them; Windows (or a folding disk) does not. */
const platformOnly: ReadonlyArray<readonly [rule: string, m: Manifest, onMac: string]> = [
  ["backslash", manifest(file("back\\slash.txt")), "accepted"],
  ["backslash", manifest(file("\\\\server\\share\\x")), "accepted"],
  ["backslash", manifest(file("a\\..\\..\\etc")), "accepted"],
  ["drive-letter", manifest(file("C:/Windows/system.ini")), "accepted"],
  ["drive-letter", manifest(file("c:evil")), "accepted"],
  ["reserved-name", manifest(file("CON")), "accepted"],
  ["reserved-name", manifest(file("nul.txt")), "accepted"],
  ["reserved-name", manifest(file("logs/Com1.log")), "accepted"],
  ["reserved-name", manifest(dir("LPT9")), "accepted"],
  ["trailing-dot-space", manifest(file("trailing.")), "accepted"],
  ["trailing-dot-space", manifest(file("name ")), "accepted"],
  ["trailing-dot-space", manifest(file("dir./x")), "accepted"],
  ["forbidden-char", manifest(file("x/colon:star*.txt")), "accepted"],
  ["forbidden-char", manifest(file("what?")), "accepted"],
  ["forbidden-char", manifest(file("<x>")), "accepted"],
  ["forbidden-char", manifest(file('say"hi')), "accepted"],
  ["forbidden-char", manifest(file("a|b")), "accepted"],
  ["collision", manifest(file("Readme"), file("README")), "collision"],
  ["collision", manifest(file("caf\u00e9"), file("cafe\u0301")), "collision"],
  ["collision", manifest(file("A/x"), file("a/y")), "collision"],
]

describe("NameRules", () => {
  it.each(platformOnly)("%s: %j is any sender's, a Linux receiver's, not Windows'", (rule, m, onMac) => {
    expect(Either.isRight(ManifestPolicy.check(m))).toBe(true)
    expect(ruleOf(m, linux)).toBe("accepted")
    expect(ruleOf(m, windows)).toBe(rule)
    expect(ruleOf(m, mac)).toBe(onMac)
  })

  it("folds case and Unicode form separately, as the file system does", () => {
    const caseOnly = { ...linux, foldsCase: true }
    expect(ruleOf(manifest(file("Readme"), file("README")), caseOnly)).toBe("collision")
    expect(ruleOf(manifest(file("caf\u00e9"), file("cafe\u0301")), caseOnly)).toBe("accepted")
  })

  it("escapes what Windows refuses, visibly, and lists each renamed name once", () => {
    const m = manifest(
      dir("CON"),
      file("CON/colon:star*.txt"),
      file("CON/trailing. "),
      file("back\\slash.txt"),
      file("nul.txt"),
      file("plain.txt"),
    )
    const { manifest: saved, renamed } = Either.getOrThrow(rename(m, windows))
    expect(saved.entries.map((e) => e.path)).toEqual([
      "%43ON",
      "%43ON/colon%3Astar%2A.txt",
      "%43ON/trailing%2E%20",
      "back%5Cslash.txt",
      "%6Eul.txt",
      "plain.txt",
    ])
    expect(renamed).toEqual([
      { from: "CON", to: "%43ON" },
      { from: "CON/colon:star*.txt", to: "%43ON/colon%3Astar%2A.txt" },
      { from: "CON/trailing. ", to: "%43ON/trailing%2E%20" },
      { from: "back\\slash.txt", to: "back%5Cslash.txt" },
      { from: "nul.txt", to: "%6Eul.txt" },
    ])
    expect(ruleOf(saved, windows)).toBe("accepted")
  })

  it("numbers names the file system takes for an earlier one, whole folders included", () => {
    const m = manifest(file("README"), file("Readme"), file("Docs/a.txt"), file("docs/A.txt"), file("docs/b"))
    const { manifest: saved, renamed } = Either.getOrThrow(rename(m, mac))
    expect(saved.entries.map((e) => e.path)).toEqual([
      "README",
      "Readme~2",
      "Docs/a.txt",
      "docs~2/A.txt",
      "docs~2/b",
    ])
    expect(renamed).toEqual([
      { from: "Readme", to: "Readme~2" },
      { from: "docs", to: "docs~2" },
    ])
    expect(ruleOf(saved, mac)).toBe("accepted")
  })

  it("does not number into a name the sender also uses", () => {
    const m = manifest(file("a.txt"), file("A.txt"), file("a~2.txt"))
    const saved = Either.getOrThrow(rename(m, mac)).manifest.entries.map((e) => e.path)
    expect(saved).toEqual(["a.txt", "A~2.txt", "a~2~2.txt"])
  })

  it("renames nothing on a file system that keeps every name apart", () => {
    const m = manifest(file("CON"), file("a:b"), file("README"), file("Readme"))
    expect(Either.getOrThrow(rename(m, linux))).toEqual({ manifest: m, renamed: [] })
  })

  it("refuses a name that escaping makes too long", () => {
    const error = Either.getOrThrow(Either.flip(rename(manifest(file(":".repeat(200))), windows)))
    expect(error.rule).toBe("component-too-long")
  })
})
