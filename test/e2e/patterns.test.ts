import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { bin, run, snapshot, start, tempDir, useSignalApp } from "../support/Processes.js"

const signalApp = useSignalApp()
const p2pal = bin("p2pal")
const common = signalApp.cliFlags

/** A tree with nested folders, dot files, a symlink and a file whose name looks like a pattern. */
const makeTree = async () => {
  const root = await tempDir()
  const files: Record<string, string> = {
    "docs/guide/intro.md": "intro",
    "docs/api/x.md": "x",
    "docs/api/y.txt": "y",
    "docs/top.md": "top",
    "docs/.hidden.md": "hidden",
    "docs/.dot/z.md": "z",
    "docs/report[1].txt": "literal",
    "docs/report1.txt": "not this one",
    "outside.md": "outside",
    "proj/a.log": "log",
    "proj/src/b.ts": "b",
    "proj/src/c.log": "log",
    "proj/node_modules/m/index.js": "m",
  }
  for (const [name, text] of Object.entries(files)) {
    await fs.mkdir(path.join(root, path.dirname(name)), { recursive: true })
    await fs.writeFile(path.join(root, name), text)
  }
  await fs.symlink(path.join(root, "outside.md"), path.join(root, "docs/link.md"))
  await fs.symlink(path.join(root, "docs/guide"), path.join(root, "docs/linked-dir"))
  return root
}

/**
 * `p2pal send` run in `cwd` with `args` (the patterns reach it quoted, as from a shell), received with
 * `recv -y` into a new directory: what arrived there and both sides' output.
 */
const transfer = async (cwd: string, args: ReadonlyArray<string>) => {
  const sender = start("sh", ["-c", 'cd "$0" && exec "$@"', cwd, p2pal, "send", ...common(), ...args])
  const [, code] = await sender.line(/^Join code: (\S+)$/, "stderr")
  const out = await tempDir()
  const received = await run(p2pal, ["recv", "-y", ...common(), "--out", out, code!])
  const sent = await sender.finished
  expect([sent.code, received.code], sent.stderr + received.stderr).toEqual([0, 0])
  return { arrived: [...(await snapshot(out)).keys()].sort(), sent }
}

describe("send expands quoted patterns itself", () => {
  it("'docs/**/*.md': nested matches keep their path from the static base; no dot files, no symlinks followed", async () => {
    const root = await makeTree()
    // docs/link.md (to a file outside) and docs/linked-dir (to docs/guide) are symlinks: neither matches.
    const { arrived } = await transfer(root, ["docs/**/*.md"])
    expect(arrived).toEqual(["api/", "api/x.md", "guide/", "guide/intro.md", "top.md"])
  })

  it("braces, ? and [...] match as in a shell; a leading dot matches where the pattern has one", async () => {
    const root = await makeTree()
    const braces = await transfer(path.join(root, "docs"), ["api/{x.md,y.txt}", "t?p.md"])
    expect(braces.arrived).toEqual(["x.md", "y.txt", "top.md"].sort())
    const dots = await transfer(root, ["docs/.*.md", "docs/.dot/*.md"])
    expect(dots.arrived).toEqual([".hidden.md", "z.md"])
  })

  it("a file whose name literally is the pattern is taken as it is", async () => {
    const root = await makeTree()
    const { arrived } = await transfer(path.join(root, "docs"), ["report[1].txt"])
    expect(arrived).toEqual(["report[1].txt"])
  })

  it("a pattern that matches nothing stops before a code: exit 2, no file matches", async () => {
    const root = await makeTree()
    const result = await run("sh", [
      "-c",
      'cd "$0" && exec "$@"',
      root,
      p2pal,
      "send",
      ...common(),
      "docs/*.pdf",
    ])
    expect(result.code).toBe(2)
    expect(result.stdout).toBe("")
    expect(result.stderr.trim()).toBe("p2pal: no file matches 'docs/*.pdf'")
  })

  it("with -r, a matched directory comes whole", async () => {
    const root = await makeTree()
    const { arrived } = await transfer(root, ["-r", "docs/g*"])
    expect(arrived).toEqual(["guide/", "guide/intro.md"])
  })
})

describe("--exclude", () => {
  it("leaves entries out of -r by path or base name, a folder with all it holds, and the summary counts them", async () => {
    const root = await makeTree()
    const { arrived, sent } = await transfer(root, [
      "-r",
      "proj",
      "--exclude",
      "*.log",
      "--exclude",
      "node_modules",
    ])
    expect(arrived).toEqual(["proj/", "proj/src/", "proj/src/b.ts"])
    expect(sent.stderr).toContain("Sending directory: proj (1 file, 1 B, 3 entries excluded)")
  })

  it("applies to pattern matches, by their path from the static base", async () => {
    const root = await makeTree()
    const { arrived, sent } = await transfer(root, ["docs/**/*.md", "--exclude", "api/*"])
    expect(arrived).toEqual(["guide/", "guide/intro.md", "top.md"])
    expect(sent.stderr).toContain("1 entry excluded")
  })
})
