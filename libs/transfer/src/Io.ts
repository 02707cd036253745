import { LocalIoFailed } from "@p2pal/domain/Errors"

/** A failed file-system call on `path`, as the user will read it. */
export const ioError = (path: string) => (e: unknown) =>
  new LocalIoFailed({ path, message: e instanceof Error ? e.message : String(e) })

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
