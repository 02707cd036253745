import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { finishPlacing, probeFolding } from "../src/Targets.js"

const dirs: Array<string> = []
afterAll(() => Promise.all(dirs.map((dir) => fs.rm(dir, { recursive: true, force: true }))))

/** A temporary and a target name in a fresh directory; neither exists yet. */
const names = async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "p2pal-targets-"))
  dirs.push(dir)
  return { temp: path.join(dir, ".a.bin.part"), target: path.join(dir, "a.bin") }
}

describe("finishPlacing: a verified file a stopped receiver may have left half moved", () => {
  it("moves it when only the temporary name is there", async () => {
    const { temp, target } = await names()
    await fs.writeFile(temp, "ours")
    expect(await finishPlacing(temp, target)).toBe(true)
    expect(await fs.readFile(target, "utf8")).toBe("ours")
    await expect(fs.access(temp)).rejects.toThrow()
  })

  it("drops the temporary name when both name one file (linked, not yet removed)", async () => {
    const { temp, target } = await names()
    await fs.writeFile(temp, "ours")
    await fs.link(temp, target)
    expect(await finishPlacing(temp, target)).toBe(true)
    expect(await fs.readFile(target, "utf8")).toBe("ours")
    await expect(fs.access(temp)).rejects.toThrow()
  })

  it("takes a target left alone as the moved file", async () => {
    const { temp, target } = await names()
    await fs.writeFile(target, "ours")
    expect(await finishPlacing(temp, target)).toBe(true)
  })

  it("leaves somebody else's target alone", async () => {
    const { temp, target } = await names()
    await fs.writeFile(temp, "ours")
    await fs.writeFile(target, "theirs")
    expect(await finishPlacing(temp, target)).toBe(false)
    expect(await fs.readFile(target, "utf8")).toBe("theirs")
  })

  it("says no when neither name is left", async () => {
    const { temp, target } = await names()
    expect(await finishPlacing(temp, target)).toBe(false)
  })
})

describe("probeFolding: whether the disk under --out takes a name for another (NameRules)", () => {
  it("finds that Linux's own file systems keep every spelling apart, and leaves nothing behind", async () => {
    const { target } = await names()
    const dir = path.dirname(target)
    // The temp directory here is ext4, tmpfs or overlayfs: none folds case or Unicode form.
    if (process.platform === "linux")
      expect(await probeFolding(dir)).toEqual({ foldsCase: false, foldsUnicode: false })
    expect(await fs.readdir(dir)).toEqual([])
  })

  it("asks the nearest folder that exists when --out is not made yet", async () => {
    const { target } = await names()
    const dir = path.dirname(target)
    const folds = await probeFolding(path.join(dir, "not", "yet"))
    if (process.platform === "linux") expect(folds).toEqual({ foldsCase: false, foldsUnicode: false })
    expect(await fs.readdir(dir)).toEqual([])
  })
})
