import { describe, expect, it } from "@effect/vitest"
import type { Manifest } from "@p2pal/domain"
import { describeManifest, ListedEntries } from "../src/Summary.js"

const file = (path: string, size: number): Manifest.Entry => ({ _tag: "file", path, size })
const dir = (path: string): Manifest.Entry => ({ _tag: "dir", path })
const manifest = (entries: ReadonlyArray<Manifest.Entry>): Manifest.Manifest => ({ version: 1, entries })

/** `tree/` holding `n` files of 1000 bytes in folders of 10, as `send -r tree` lists them. */
const tree = (n: number): Array<Manifest.Entry> =>
  Array.from({ length: n }, (_, i) => [
    ...(i === 0 ? [dir("tree")] : []),
    ...(i % 10 === 0 ? [dir(`tree/d${i / 10}`)] : []),
    file(`tree/d${Math.floor(i / 10)}/f${i}.txt`, 1000),
  ]).flat()

describe("describeManifest", () => {
  it("lists a short manifest whole, as before", () => {
    expect(
      describeManifest(manifest([dir("tree"), file("tree/a.txt", 200_000), file("b", 5)]), false),
    ).toEqual(["Receiving 2 files (200.0 kB):", "  tree/", "  tree/a.txt  200.0 kB", "  b  5 B"])
    expect(describeManifest(manifest([file("only.bin", 1500)]), false)).toEqual([
      "Receiving: only.bin (1.5 kB)",
    ])
  })

  it(`lists exactly ${ListedEntries} entries whole`, () => {
    const entries = tree(17)
    expect(entries.length).toBe(ListedEntries)
    expect(describeManifest(manifest(entries), false)).toHaveLength(ListedEntries + 1)
  })

  it("summarises a longer one: its first entries, each top folder's files and bytes, the total", () => {
    const entries = [...tree(50), dir("empty"), file("top.bin", 2_000_000), file("second.bin", 1)]
    expect(describeManifest({ ...manifest(entries), encryption: "aes-256-gcm" }, false)).toEqual([
      "Chunks are sealed with AES-256-GCM on top of DTLS.",
      "Receiving 52 files (2.1 MB):",
      "  tree/",
      "  tree/d0/",
      "  tree/d0/f0.txt  1.0 kB",
      "  tree/d0/f1.txt  1.0 kB",
      "  tree/d0/f2.txt  1.0 kB",
      "  tree/d0/f3.txt  1.0 kB",
      "  tree/d0/f4.txt  1.0 kB",
      "  tree/d0/f5.txt  1.0 kB",
      "  tree/d0/f6.txt  1.0 kB",
      "  tree/d0/f7.txt  1.0 kB",
      `  ... and ${entries.length - 10} more (--list-all shows every one)`,
      "By top folder:",
      "  tree/  50 files, 50.0 kB",
      "  empty/  0 files, 0 B",
      "  (top level)  2 files, 2.0 MB",
      "Total: 52 files, 2.1 MB",
    ])
  })

  it("lists every entry with --list-all", () => {
    const entries = tree(50)
    const lines = describeManifest(manifest(entries), true)
    expect(lines).toHaveLength(entries.length + 1)
    expect(lines.at(-1)).toBe("  tree/d4/f49.txt  1.0 kB")
  })

  it("names at most 10 top folders and escapes every name it shows", () => {
    const entries = Array.from({ length: 30 }, (_, i) => file(`bidi\u202e${i}/x`, 1))
    const lines = describeManifest(manifest(entries), false)
    expect(lines).toContain("  bidi\\u{202e}0/x  1 B")
    expect(lines).toContain("  bidi\\u{202e}9/  1 file, 1 B")
    expect(lines).not.toContain("  bidi\\u{202e}10/  1 file, 1 B")
    expect(lines).toContain("  ... and 20 more top folders")
    expect(lines.join("\n")).not.toContain("\u202e")
  })

  it("summarises 100,000 entries in a screenful", () => {
    const lines = describeManifest(manifest(tree(100_000)), false)
    expect(lines.length).toBeLessThan(30)
    expect(lines.at(-1)).toBe("Total: 100000 files, 100.0 MB")
  })
})
