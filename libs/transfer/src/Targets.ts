import type { Manifest } from "@p2pal/domain"
import { LocalIoFailed } from "@p2pal/domain/Errors"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { isAbsent, lstat } from "./Io.js"

/** Where the receiver puts the manifest's entries, and what it checks there before writing anything. */

/** Where each entry lands under `out`; the manifest policy has already ruled out anything escaping it. */
export const targetOf = (out: string, entry: Manifest.Entry) => path.join(out, ...entry.path.split("/"))

/**
 * What stops the transfer before anything is written: a target already on disk that may not be replaced
 * (unless asked to), or a symlink already inside `out` that it would write through (it could point
 * anywhere). Undefined when there is none; failing to look is a failure of its own.
 */
export const findConflict = (
  out: string,
  manifest: Manifest.Manifest,
  overwrite: boolean,
  /** Entries this transfer placed in an earlier session: they are expected to exist. */
  placedBefore: ReadonlySet<number>,
): Effect.Effect<LocalIoFailed | undefined, LocalIoFailed> =>
  Effect.gen(function* () {
    const safeParents = new Set<string>()
    /** Directories not there: nothing under them needs a look (a fresh `out` costs one lstat per folder). */
    const absent = new Set<string>()
    if ((yield* lstat(out)) === undefined) absent.add(out)
    for (const [index, entry] of manifest.entries.entries()) {
      const target = targetOf(out, entry)
      const parts = entry.path.split("/")
      let missing = absent.has(out)
      for (let depth = 1; depth < parts.length && !missing; depth++) {
        const parent = path.join(out, ...parts.slice(0, depth))
        if (absent.has(parent)) missing = true
        if (missing || safeParents.has(parent)) continue
        const parentStat = yield* lstat(parent)
        if (parentStat?.isSymbolicLink())
          return new LocalIoFailed({ path: parent, message: "is a symlink; refusing to write through it" })
        if (parentStat === undefined) {
          absent.add(parent)
          missing = true
        } else safeParents.add(parent)
      }
      const stat = missing ? undefined : yield* lstat(target)
      if (stat === undefined || placedBefore.has(index)) continue
      if (entry._tag === "dir" && stat.isDirectory()) continue
      if (entry._tag === "file" && stat.isFile() && overwrite) continue
      return new LocalIoFailed({
        path: target,
        message:
          entry._tag === "file" && stat.isFile()
            ? "already exists; nothing was written (use --overwrite to replace it)"
            : `already exists as a ${stat.isSymbolicLink() ? "symlink" : stat.isDirectory() ? "directory" : "special file"}; nothing was written`,
      })
    }
    return undefined
  })

/** `ask` of `dir`, or of its nearest ancestor that exists: the out dir is created only once the transfer is accepted. */
const nearest = async <A>(dir: string, ask: (at: string) => Promise<A>): Promise<A> => {
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    try {
      return await ask(at)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT" || path.dirname(at) === at) throw e
    }
  }
}

/** Free bytes an unprivileged user may fill on the file system that holds (or will hold) `dir`. */
export const freeBytes = (dir: string): Promise<bigint> =>
  nearest(dir, async (at) => {
    const stats = await fs.statfs(at, { bigint: true })
    return stats.bavail * stats.bsize
  })

const foldsByDefault = process.platform === "darwin" || process.platform === "win32"

/**
 * Whether the file system that holds (or will hold) `dir` finds a name under another letter case or
 * Unicode form: one empty file of its own there, looked up under the other spellings, then removed.
 * Where it cannot be made, the platform's usual file system answers.
 */
export const probeFolding = (dir: string): Promise<{ foldsCase: boolean; foldsUnicode: boolean }> =>
  nearest(dir, async (at) => {
    const name = `.p2pal-probe-${randomBytes(6).toString("hex")}-e\u0301`
    const probe = path.join(at, name)
    await fs.writeFile(probe, "", { flag: "wx" })
    try {
      const found = (other: string) =>
        fs.lstat(path.join(at, other)).then(
          () => true,
          (e) => (isAbsent(e) ? false : Promise.reject(e)),
        )
      return { foldsCase: await found(name.toUpperCase()), foldsUnicode: await found(name.normalize("NFC")) }
    } finally {
      await fs.rm(probe, { force: true })
    }
  }).catch(() => ({ foldsCase: foldsByDefault, foldsUnicode: foldsByDefault }))

/** Moves a verified file into place; link() refuses an existing target, so a file that appeared meanwhile is never clobbered. */
export const place = (temp: string, target: string, overwrite: boolean) =>
  overwrite ? fs.rename(temp, target) : fs.link(temp, target).then(() => fs.unlink(temp))

/**
 * Finishes the move of a verified file that a stopped receiver may have left half done. False when
 * `target` is somebody else's file (or neither name is left); true when it is now ours: moved before
 * (only the target is left), moved now, or linked but the temporary name not yet removed.
 */
export const finishPlacing = async (temp: string, target: string): Promise<boolean> => {
  const [ours, there] = await Promise.all(
    [fs.lstat(temp), fs.lstat(target)].map((p) =>
      p.catch((e) => (isAbsent(e) ? undefined : Promise.reject(e))),
    ),
  )
  if (ours === undefined) return there !== undefined
  if (there === undefined) await place(temp, target, false)
  else if (ours.ino === there.ino && ours.dev === there.dev) await fs.rm(temp)
  else return false
  return true
}
