import * as fs from "node:fs/promises"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { bin, run, start, tempDir, useSignalApp } from "../support/Processes.js"

const signalApp = useSignalApp()
const p2pal = bin("p2pal")

/** A P2PAL_HOME holding `config.toml` with `text`, mode 0600 unless told. */
const home = async (text: string, mode = 0o600) => {
  const dir = await tempDir()
  await fs.writeFile(path.join(dir, "config.toml"), text, { mode })
  await fs.chmod(path.join(dir, "config.toml"), mode)
  return dir
}

describe("config.toml", () => {
  it("precedence in one send: the flag beats the file, [send] beats the top level, the rest is default", async () => {
    const dir = await home(
      [
        'server = "http://127.0.0.1:9"',
        'stun = ""',
        "[send]",
        `server = "${signalApp.url()}"`,
        'ttl = "10m"',
        "[recv]",
        `server = "${signalApp.url()}"`,
        "yes = true",
      ].join("\n"),
    )
    const file = path.join(dir, "a.txt")
    await fs.writeFile(file, "a")
    const env = { P2PAL_HOME: dir }
    const sender = start(p2pal, ["send", "--ttl", "7m", file], { env })
    const [, code] = await sender.line(/^Join code: (\S+)$/, "stderr")
    // recv's -y comes from the file too: no prompt, and stdin is closed (which would mean "no").
    const received = await start(p2pal, ["recv", "--out", path.join(dir, "out"), code!], { env }).finished
    const sent = await sender.finished
    expect([sent.code, received.code], sent.stderr + received.stderr).toEqual([0, 0])
    expect(sent.stderr).toContain("(1 file, 1 B) — TTL: 7m")
    expect(await fs.readFile(path.join(dir, "out", "a.txt"), "utf8")).toBe("a")
  })

  it("p2pal config shows each setting's source (env beats file), secrets masked; config path names the file", async () => {
    const dir = await home('turn-user = "fileuser"\nturn-pass = "hunter2"\n[recv]\nout = "/srv/in"\n')
    const shown = await start(p2pal, ["config"], { env: { P2PAL_HOME: dir, TURN_USER: "envuser" } }).finished
    expect(shown.code).toBe(0)
    const recv = shown.stdout.slice(shown.stdout.indexOf("[recv]"))
    expect(recv).toContain('out = "/srv/in"  # file')
    expect(recv).toContain('turn-user = "envuser"  # env TURN_USER')
    expect(recv).toContain('turn-pass = "********"  # file')
    expect(recv).toContain("max-retries = 3  # default")
    expect(shown.stdout).not.toContain("hunter2")
    const where = await start(p2pal, ["config", "path"], { env: { P2PAL_HOME: dir } }).finished
    expect(where.stdout).toBe(`${path.join(dir, "config.toml")}\n`)
    const other = path.join(dir, "other.toml")
    await fs.writeFile(other, "")
    const named = await run(p2pal, ["config", "path", "--config", other])
    expect(named.stdout).toBe(`${other}\n`)
    const missing = await run(p2pal, ["config", "--config", path.join(dir, "none.toml")])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toBe(
      `p2pal: cannot read the config file ${path.join(dir, "none.toml")} (ENOENT); check --config\n`,
    )
  })

  it.each([
    ["a syntax error", 'server = "http://x"\nttl = \n', ":2: not valid TOML"],
    [
      "an unknown key",
      "[send]\nyes = true\nsever = 1\n",
      ":3: unknown key 'sever' in [send]; did you mean 'server'?",
    ],
    ["a wrong type", '[recv]\n\nyes = "sure"\n', ":3: 'yes' in [recv] must be true or false"],
    ["a key of the other command", '[recv]\nttl = "1m"\n', ":2: unknown key 'ttl' in [recv]"],
  ])(
    "%s stops every command with exit 2 naming the file, line and key, before anything else",
    async (_, text, message) => {
      const dir = await home(text)
      const file = path.join(dir, "a.txt")
      await fs.writeFile(file, "a")
      for (const args of [
        ["send", file],
        ["checkpoint", "list"],
      ]) {
        const result = await start(p2pal, args, { env: { P2PAL_HOME: dir } }).finished
        expect(result.code).toBe(2)
        expect(result.stdout).toBe("")
        expect(
          result.stderr.startsWith(`p2pal: ${path.join(dir, "config.toml")}${message}`),
          result.stderr,
        ).toBe(true)
        expect(result.stderr.trim().split("\n")).toHaveLength(1)
      }
    },
  )

  it("warns when a file others can read holds turn-pass", async () => {
    const dir = await home('turn-pass = "hunter2"\n', 0o644)
    const result = await start(p2pal, ["config", "path"], { env: { P2PAL_HOME: dir } }).finished
    expect(result.code).toBe(0)
    const file = path.join(dir, "config.toml")
    expect(result.stderr).toBe(
      `p2pal: warning: ${file} holds turn-pass and other users can read it; run chmod 600 ${file}\n`,
    )
  })
})
