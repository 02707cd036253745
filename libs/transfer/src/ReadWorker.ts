import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from "node:fs"
import { parentPort } from "node:worker_threads"
import type { ReadRequest, ReadResult } from "./SmallReads.js"

/**
 * Reads small files whole, a batch per message, with plain blocking calls: four calls per file through
 * the main thread's promises and the thread pool cost several times what the calls themselves do.
 */
const readOne = ({ path, size, offset }: ReadRequest["files"][number]): ReadResult => {
  try {
    // As BlockReader opens: a symlink swapped in is refused, a FIFO cannot hang the open.
    const fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK)
    try {
      const buffer = new ArrayBuffer(offset + size)
      const bytesRead = size === 0 ? 0 : readSync(fd, new Uint8Array(buffer, offset, size), 0, size, 0)
      const { size: sizeNow, mtimeMs } = fstatSync(fd)
      return { _tag: "read", buffer, bytesRead, size: sizeNow, mtimeMs }
    } finally {
      closeSync(fd)
    }
  } catch (e) {
    const error = e as NodeJS.ErrnoException
    return { _tag: "failed", code: error.code, message: error.message }
  }
}

parentPort!.on("message", (request: ReadRequest) => {
  const results = request.files.map(readOne)
  const buffers = results.flatMap((r) => (r._tag === "read" ? [r.buffer] : []))
  parentPort!.postMessage({ id: request.id, results }, buffers)
})
