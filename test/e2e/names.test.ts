import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { bin, run, snapshot, start, tempDir, useSignalApp } from "../support/Processes.js"

const signalApp = useSignalApp()
const p2pal = bin("p2pal")

/** `p2pal send -q`: its stdout carries only the join code. */
const startSend = async (args: ReadonlyArray<string>) => {
  const sender = start(p2pal, ["send", "-q", ...signalApp.cliFlags(), ...args])
  const [code] = await sender.line(/^[a-z]+-[a-z]+-\d+$/)
  return { code: code!, finished: sender.finished }
}

/** A receiver with Windows' name rules when `windows`, whatever this machine runs. */
const recv = (code: string, args: ReadonlyArray<string>, windows: boolean) =>
  start(p2pal, ["recv", "-y", ...signalApp.cliFlags(), ...args, code], {
    env: { P2PAL_NAME_RULES: windows ? "windows" : "posix" },
  }).finished

/** Names Linux allows and Windows does not, and two that differ only in case. */
const Names = ["trailing.", "colon:star*.txt", "CON", "back\\slash.txt", "README", "Readme"]

const linuxTree = async () => {
  const root = await tempDir()
  const tree = path.join(root, "names")
  await fs.mkdir(tree)
  for (const name of Names) await fs.writeFile(path.join(tree, name), `${name}\n`)
  return { root, tree, out: path.join(root, "out") }
}

describe("names Linux allows", () => {
  it("go from Linux to a Linux receiver as they are", async () => {
    const { tree, out } = await linuxTree()
    const sender = await startSend(["-r", tree])
    const received = await recv(sender.code, ["--out", out], false)
    expect({ received: received.code, sent: (await sender.finished).code }).toEqual({ received: 0, sent: 0 })
    expect(await snapshot(path.join(out, "names"))).toEqual(await snapshot(tree))
  })

  it("are refused by a receiver with Windows' rules, naming the entry, and nothing is written", async () => {
    const { tree, out } = await linuxTree()
    const sender = await startSend(["-r", tree])
    const received = await recv(sender.code, ["--out", out], true)
    const sent = await sender.finished
    expect(received.code).toBe(5)
    expect(received.stderr).toContain(
      'refused the sender\'s file list: "names/CON": Windows reserved names (CON, PRN, AUX, NUL, COM1-9, LPT1-9) are not allowed',
    )
    expect(sent.code).toBe(5)
    expect(sent.stderr).toContain("Windows reserved names")
    await expect(fs.access(out)).rejects.toThrow()
  })

  it("are saved escaped by a receiver with Windows' rules and --rename-unsafe, listed at the end", async () => {
    const { tree, out } = await linuxTree()
    const sender = await startSend(["-r", tree])
    const received = await recv(sender.code, ["--out", out, "--rename-unsafe"], true)
    expect({ received: received.code, sent: (await sender.finished).code }).toEqual({ received: 0, sent: 0 })
    const saved = {
      "%43ON": "CON",
      README: "README",
      "Readme~2": "Readme",
      "back%5Cslash.txt": "back\\slash.txt",
      "colon%3Astar%2A.txt": "colon:star*.txt",
      "trailing%2E": "trailing.",
    }
    expect((await fs.readdir(path.join(out, "names"))).sort()).toEqual(Object.keys(saved).sort())
    for (const [name, sent] of Object.entries(saved))
      expect(await fs.readFile(path.join(out, "names", name), "utf8")).toBe(`${sent}\n`)
    const listed = received.stderr.slice(received.stderr.indexOf("Saved under escaped names"))
    for (const [name, sent] of Object.entries(saved).filter(([name, sent]) => name !== sent))
      expect(listed).toContain(`names/${name}  (sent as names/${sent.replace(/\\/g, "\\\\")})`)
  })

  it("still stop the sender when no receiver may take them: control characters, invalid UTF-8", async () => {
    const cases = [
      {
        make: (tree: string) => fs.writeFile(path.join(tree, "bell\u0007.txt"), "x"),
        says: 'cannot send "names/bell\\u{0007}.txt": control characters are not allowed',
      },
      {
        // caf\xe9.txt: Latin-1, as an old archive may hold it.
        make: (tree: string) =>
          fs.writeFile(
            Buffer.concat([Buffer.from(`${tree}/caf`), Buffer.from([0xe9]), Buffer.from(".txt")]),
            "x",
          ),
        says: 'cannot send "names/caf\ufffd.txt": the name is not valid UTF-8; rename it',
      },
    ]
    for (const { make, says } of cases) {
      const { root, tree } = await linuxTree()
      await make(tree)
      const sent = await run(p2pal, ["send", ...signalApp.cliFlags(), "-r", tree])
      expect(sent.code).toBe(2)
      expect(sent.stderr).toContain(says)
      expect(sent.stdout).not.toMatch(/[a-z]+-[a-z]+-\d+/)
      expect(await fs.readdir(root)).toEqual(["names"])
    }
  })
})
