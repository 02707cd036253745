import { describe, expect, it } from "@effect/vitest"
import * as BlockReader from "@p2pal/transfer/BlockReader"
import { Hasher } from "@p2pal/transfer/Hasher"
import * as Lookahead from "@p2pal/transfer/Lookahead"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"

/** Chunks smaller than the files: none is small (BlockReader.isSmall), every one is opened ahead. */
const chunkSize = 1024
/** A tree's files, more than are prepared ahead at once. */
const Count = Lookahead.MaxFiles + 20
/** Descriptors this process holds open on files in `dir`. */
const openIn = (dir: string) =>
  fs.readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir)
    } catch {
      return false // the descriptor readdir itself used, gone by now
    }
  }).length
/** Closing is not waited for (BlockReader.ts): give the thread pool a moment to finish it. */
const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 100)))

/** Count files of 1-7 KiB in a temp dir; the one at `broken` is a symlink, which the sender refuses. */
const tree = (broken: number, chunk = chunkSize) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "p2pal-lookahead-"))
      return Array.from({ length: Count }, (_, index) => {
        const file = path.join(dir, `f${index}`)
        const bytes = randomBytes(1024 + index * 70)
        fs.writeFileSync(file, bytes)
        if (index === broken) {
          fs.renameSync(file, `${file}.real`)
          fs.symlinkSync(`${file}.real`, file)
        }
        const source = { path: file, mtimeMs: fs.lstatSync(file).mtimeMs }
        return { bytes, options: { source, index, size: bytes.length, from: 0, chunkSize: chunk } }
      })
    }),
    ([first]) => Effect.sync(() => fs.rmSync(path.dirname(first!.options.source.path), { recursive: true })),
  )

/** Reads the file at `position` as the sender does, taking it from the lookahead. */
const readAll = (lookahead: Lookahead.Lookahead, options: BlockReader.Options, position: number) =>
  Effect.gen(function* () {
    const hash = (yield* Hasher).start(options.size)
    const reader = yield* BlockReader.open({ ...options, hash }, () => lookahead.take(position))
    const bytes: Array<Uint8Array> = []
    for (let block = yield* reader.next; block !== undefined; block = yield* reader.next)
      bytes.push(...block.payloads)
    yield* reader.unchanged
    return Buffer.concat(bytes)
  }).pipe(Effect.scoped)

describe("Lookahead", () => {
  it.scoped("reads every file whole, a failing one fails alone, and closes what it opened", () =>
    Effect.gen(function* () {
      const files = yield* tree(5)
      const dir = path.dirname(files[0]!.options.source.path)
      yield* Effect.gen(function* () {
        const lookahead = yield* Lookahead.make(files.map((f) => f.options))
        for (const [position, { bytes, options }] of files.entries()) {
          const read = yield* Effect.either(readAll(lookahead, options, position))
          if (position === 5) expect(read._tag === "Left" && read.left._tag).toBe("Unreadable")
          else expect(read._tag === "Right" && read.right.equals(bytes)).toBe(true)
          // The next MaxFiles files are opened before their turn, but the symlink among them is refused.
          if (position === 0) {
            yield* settle
            expect(openIn(dir)).toBe(Lookahead.MaxFiles - 1)
          }
        }
      }).pipe(Effect.scoped)
      yield* settle
      expect(openIn(dir)).toBe(0)
    }).pipe(Effect.provide(Hasher.Default)),
  )

  it.scoped("has small files read whole by the reading thread, which keeps none open", () =>
    Effect.gen(function* () {
      const files = yield* tree(5, 64 * 1024)
      const dir = path.dirname(files[0]!.options.source.path)
      expect(files.every((f) => BlockReader.isSmall(f.options))).toBe(true)
      yield* Effect.gen(function* () {
        const lookahead = yield* Lookahead.make(files.map((f) => f.options))
        for (const [position, { bytes, options }] of files.entries()) {
          const read = yield* Effect.either(readAll(lookahead, options, position))
          if (position === 5)
            expect(read._tag === "Left" && read.left.reason).toBe(
              "it is now a symlink, which is not followed (ELOOP)",
            )
          else expect(read._tag === "Right" && read.right.equals(bytes)).toBe(true)
          // The first is opened by the caller; those after it were read, and closed, before their turn.
          if (position === 1) expect(openIn(dir)).toBe(0)
        }
      }).pipe(Effect.scoped)
    }).pipe(Effect.provide(Hasher.Default)),
  )

  it.scoped("tells a small file that changed after it was listed, as the sender must", () =>
    Effect.gen(function* () {
      const files = yield* tree(-1, 64 * 1024)
      const { source } = files[3]!.options
      fs.appendFileSync(source.path, "more")
      yield* Effect.gen(function* () {
        const lookahead = yield* Lookahead.make(files.map((f) => f.options))
        for (const [position, { options }] of files.slice(0, 4).entries()) {
          const read = yield* Effect.either(readAll(lookahead, options, position))
          expect(read._tag === "Left" ? read.left.reason : "read").toBe(
            position === 3 ? "it changed while being sent" : "read",
          )
        }
      }).pipe(Effect.scoped)
    }).pipe(Effect.provide(Hasher.Default)),
  )

  it.scoped("closes the files opened ahead when sending stops early", () =>
    Effect.gen(function* () {
      const files = yield* tree(-1)
      const dir = path.dirname(files[0]!.options.source.path)
      yield* Effect.gen(function* () {
        const lookahead = yield* Lookahead.make(files.map((f) => f.options))
        yield* readAll(lookahead, files[0]!.options, 0)
        yield* settle
        expect(openIn(dir)).toBe(Lookahead.MaxFiles)
      }).pipe(Effect.scoped)
      yield* settle
      expect(openIn(dir)).toBe(0)
    }).pipe(Effect.provide(Hasher.Default)),
  )
})
