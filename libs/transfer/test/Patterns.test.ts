import { describe, expect, it } from "@effect/vitest"
import { excluder, isPattern } from "../src/Patterns.js"

describe("isPattern", () => {
  it("tells wildcards from plain names", () => {
    expect(["*.pdf", "docs/**/*.md", "a?.txt", "[ab].txt", "{a,b}.txt"].map(isPattern)).toEqual([
      true,
      true,
      true,
      true,
      true,
    ])
    expect(["a.txt", "docs/guide.md", "-dash.txt"].map(isPattern)).toEqual([false, false, false])
  })
})

describe("excluder", () => {
  const excluded = excluder(["*.log", "node_modules", "api/*"])
  it("matches the path from what was named, the base name, or a folder on the way", () => {
    expect(
      ["a.log", "src/c.log", "node_modules", "node_modules/m/index.js", "api/x.md", ".env.log"].map(excluded),
    ).toEqual([true, true, true, true, true, true])
    expect(["src/b.ts", "guide/api/x.md", "logs"].map(excluded)).toEqual([false, false, false])
  })

  it("leaves everything in without globs", () => {
    expect(excluder([])("anything.log")).toBe(false)
  })
})
