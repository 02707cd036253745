import { LocalIoFailed } from "@p2pal/domain/Errors"

/** A failed file-system call on `path`, as the user will read it. */
export const ioError = (path: string) => (e: unknown) =>
  new LocalIoFailed({ path, message: e instanceof Error ? e.message : String(e) })
