import * as fs from "node:fs/promises"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { type Checkpoint, encodeJson } from "../../libs/domain/src/Checkpoint.js"
import type { TransferId } from "../../libs/domain/src/Ids.js"
import { bin, start, removeTempDirs, tempDir } from "../support/Processes.js"

afterAll(removeTempDirs)

const Hour = 3_600_000
/** Sent both ways, so `delete` has two files to remove. */
const Both = "tr_both0000000000000" as TransferId
const Expired = "tr_expired0000000000" as TransferId
const Damaged = "tr_damaged0000000000" as TransferId

/** `p2pal checkpoint ...args` with its checkpoints under `home`. */
const checkpoint = (home: string, ...args: ReadonlyArray<string>) =>
  start(bin("p2pal"), ["checkpoint", ...args], { env: { P2PAL_HOME: home } }).finished

const manifest = {
  version: 1,
  entries: [
    { _tag: "file", path: "one.bin", size: 1_000_000 },
    { _tag: "file", path: "three.bin", size: 3_000_000 },
  ],
} as const

/**
 * A home holding: a send and a recv checkpoint of one transfer (half done, saved 2h30m ago, with
 * 6d 23h+ to go), an expired recv checkpoint, and a truncated file. The CLI reads the real clock, so
 * the times are relative to now.
 */
const populatedHome = async () => {
  const home = await tempDir()
  const dir = path.join(home, "checkpoints")
  await fs.mkdir(dir)
  const now = Date.now()
  const times = {
    version: 1 as const,
    createdAt: now - 3 * Hour,
    updatedAt: now - 2.5 * Hour,
    expiresAt: now + 167.5 * Hour,
  }
  const checkpoints: ReadonlyArray<Checkpoint> = [
    {
      direction: "send",
      ...times,
      transferId: Both,
      manifest,
      files: [
        { index: 0, source: "/srv/one.bin", mtimeMs: now - 5 * Hour, acked: 1_000_000 },
        { index: 1, source: "/srv/three.bin", mtimeMs: now - 5 * Hour, acked: 1_000_000 },
      ],
    },
    {
      direction: "recv",
      ...times,
      transferId: Both,
      manifest,
      out: "/srv/in",
      files: [
        { index: 0, durable: 1_000_000, verified: true },
        { index: 1, temp: ".three.bin.0a0b0c0d.p2pal-part", durable: 500_000, verified: false },
      ],
    },
    {
      direction: "recv",
      ...times,
      expiresAt: now - Hour,
      transferId: Expired,
      manifest,
      out: "/srv/in",
      files: [
        { index: 0, durable: 0, verified: false },
        { index: 1, durable: 0, verified: false },
      ],
    },
  ]
  for (const c of checkpoints)
    await fs.writeFile(path.join(dir, `${c.transferId}.${c.direction}.json`), encodeJson(c))
  const damaged = path.join(dir, `${Damaged}.send.json`)
  await fs.writeFile(damaged, '{"direction": "send", "version": 1, "transf')
  return { home, dir, damaged }
}

const files = (dir: string) => fs.readdir(dir).then((names) => names.sort())

/** The line of the listing for that transfer and direction. */
const rowOf = (stdout: string, id: string, direction: string) =>
  stdout.split("\n").find((line) => new RegExp(`^${id}\\s+${direction}\\s`).test(line))

describe("p2pal checkpoint", () => {
  it("says there are none before any transfer saved one", async () => {
    const home = await tempDir()
    const listed = await checkpoint(home, "list")
    expect(listed).toMatchObject({ code: 0, stdout: "No checkpoints.\n" })
    expect(await checkpoint(home, "clean")).toMatchObject({
      code: 0,
      stdout: "Removed 0 expired checkpoints.\n",
    })
  })

  it("lists every checkpoint with its progress, age and expiry, and damaged files with their path", async () => {
    const { home, damaged } = await populatedHome()
    const { code, stdout, stderr } = await checkpoint(home, "list")
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" })
    expect(stdout.split("\n")[0]).toMatch(/^ID\s+DIRECTION\s+FILES\s+PROGRESS\s+AGE\s+EXPIRES$/)
    expect(rowOf(stdout, Both, "send")).toMatch(/\s1\/2\s+50% \(2\.0 MB \/ 4\.0 MB\)\s+2h 30m\s+in 6d 23h$/)
    expect(rowOf(stdout, Both, "recv")).toMatch(/\s1\/2\s+37% \(1\.5 MB \/ 4\.0 MB\)\s+2h 30m\s+in 6d 23h$/)
    expect(rowOf(stdout, Expired, "recv")).toMatch(/\s0\/2\s+0% \(0 B \/ 4\.0 MB\)\s+2h 30m\s+expired$/)
    expect(rowOf(stdout, Damaged, "send")).toMatch(/\sdamaged\s/)
    expect(rowOf(stdout, Damaged, "send")).toContain(`${damaged} (not valid JSON)`)
    expect(stdout).toContain("Delete a damaged checkpoint with `p2pal checkpoint delete <id>`.")
  })

  it("deletes both directions of a transfer, and a damaged file, by id", async () => {
    const { home, dir } = await populatedHome()
    expect(await checkpoint(home, "delete", Both)).toMatchObject({
      code: 0,
      stdout: `Deleted the send and recv checkpoints of ${Both}.\n`,
    })
    expect(await checkpoint(home, "delete", Damaged)).toMatchObject({
      code: 0,
      stdout: `Deleted the send checkpoint of ${Damaged}.\n`,
    })
    expect(await files(dir)).toEqual([`${Expired}.recv.json`])
  })

  it("fails with exit 2 for an id that has no checkpoint, removing nothing", async () => {
    const { home, dir } = await populatedHome()
    const before = await files(dir)
    for (const id of ["tr_unknown0000000000", "../checkpoints/x"]) {
      const { code, stdout, stderr } = await checkpoint(home, "delete", id)
      expect({ code, stdout }).toEqual({ code: 2, stdout: "" })
      expect(stderr).toBe(
        `p2pal: no checkpoint for transfer ${id}; \`p2pal checkpoint list\` shows the ones there are\n`,
      )
    }
    expect(await files(dir)).toEqual(before)
  })

  it("clean removes only the expired checkpoints; clean-all removes the rest", async () => {
    const { home, dir } = await populatedHome()
    expect(await checkpoint(home, "clean")).toMatchObject({
      code: 0,
      stdout: "Removed 1 expired checkpoint.\n",
    })
    expect(await files(dir)).toEqual([`${Both}.recv.json`, `${Both}.send.json`, `${Damaged}.send.json`])
    expect(await checkpoint(home, "clean-all")).toMatchObject({ code: 0, stdout: "Removed 3 checkpoints.\n" })
    expect(await files(dir)).toEqual([])
    expect(await checkpoint(home, "list")).toMatchObject({ code: 0, stdout: "No checkpoints.\n" })
  })
})
