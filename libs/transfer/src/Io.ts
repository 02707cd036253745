import { LocalIoFailed } from "@p2pal/domain/Errors"
import { Cause, Effect, Exit } from "effect"
import type { Stats } from "node:fs"
import * as fs from "node:fs/promises"

/** Words for what a file-system call met; Node's own text repeats the syscall and the path. */
const ErrnoTexts: Record<string, string> = {
  ENOENT: "no such file or directory",
  ENOTDIR: "a part of the path is not a directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  EISDIR: "it is a directory",
  EEXIST: "it already exists",
  EMFILE: "too many open files",
  ENAMETOOLONG: "the name is too long",
  EIO: "input/output error",
}

/** What a failed file-system call met, in words with its code (for searching); other errors as they say. */
export const errnoText = (e: unknown): string => {
  const code = (e as NodeJS.ErrnoException | undefined)?.code
  const text = typeof code === "string" ? ErrnoTexts[code] : undefined
  if (text !== undefined) return `${text} (${code})`
  return e instanceof Error ? e.message : String(e)
}

const FullCodes: ReadonlyArray<unknown> = ["ENOSPC", "EDQUOT"]

/** A failed file-system call on `path`, as the user will read it. */
export const ioError = (path: string) => (e: unknown) =>
  new LocalIoFailed({
    path,
    message: errnoText(e),
    ...(FullCodes.includes((e as NodeJS.ErrnoException | undefined)?.code) ? { diskFull: true } : {}),
  })

/** Writes all of `bytes` at `position`: a write may stop short (a disk filling up), so it goes on from there. */
export const writeAll = async (handle: fs.FileHandle, bytes: Uint8Array, position: number) => {
  for (let at = 0; at < bytes.length;) {
    const { bytesWritten } = await handle.write(bytes, at, bytes.length - at, position + at)
    // A full disk, as an ENOSPC would say it, so the transfer stays resumable once there is room.
    if (bytesWritten === 0) throw Object.assign(new Error("the disk took no more bytes"), { code: "ENOSPC" })
    at += bytesWritten
  }
}

/** Nothing is there: no such entry, or a component of the path on the way to it is not a directory. */
export const isAbsent = (e: unknown) => {
  const code = (e as NodeJS.ErrnoException | undefined)?.code
  return code === "ENOENT" || code === "ENOTDIR"
}

/** What is at `p` itself (a symlink is not followed), or undefined if nothing is; other errors fail. */
export const lstat = (p: string): Effect.Effect<Stats | undefined, LocalIoFailed> =>
  Effect.tryPromise({
    try: () => fs.lstat(p).catch((e) => (isAbsent(e) ? undefined : Promise.reject(e))),
    catch: ioError(p),
  })

/**
 * Runs `cleanup` after `self` however it ends, interruption included, as `Effect.onExit` does, except
 * that the cleanup may fail and its failure is not lost: after a success it is the outcome; after a
 * failure it follows that one in the cause, and the CLI reports the first, the reason the transfer stopped.
 */
export const withCleanup = <A, E, R, E2, R2>(
  self: Effect.Effect<A, E, R>,
  cleanup: (exit: Exit.Exit<A, E>) => Effect.Effect<void, E2, R2>,
): Effect.Effect<A, E | E2, R | R2> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.exit(restore(self)), (exit) =>
      Effect.flatMap(Effect.exit(cleanup(exit)), (cleaned): Exit.Exit<A, E | E2> =>
        Exit.isSuccess(cleaned)
          ? exit
          : Exit.failCause(
              Exit.isSuccess(exit) ? cleaned.cause : Cause.sequential(exit.cause, cleaned.cause),
            ),
      ),
    ),
  )

/** Words for the errors a file being read is likely to meet; the code stays alongside, for searching. */
const ReadErrors: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "permission denied",
  ENOENT: "it no longer exists",
  ELOOP: "it is now a symlink, which is not followed",
  EISDIR: "it is now a directory",
  EIO: "the disk failed to read it",
}

/**
 * Why a file could not be read, without its path: Node's messages quote the local path, and this text
 * also goes to the receiver (Skip and Error frames), which has no business learning it.
 */
export const readFailure = (e: unknown): string => {
  const code = (e as NodeJS.ErrnoException | undefined)?.code
  if (typeof code === "string") return `${ReadErrors[code] ?? "cannot read it"} (${code})`
  return e instanceof Error ? e.message : String(e)
}
