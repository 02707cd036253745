import { Effect } from "effect"
import { Worker } from "node:worker_threads"

export interface ReadRequest {
  readonly id: number
  /** Each file's bytes go after `offset` bytes of room (for a frame header) in a buffer of their own. */
  readonly files: ReadonlyArray<{ readonly path: string; readonly size: number; readonly offset: number }>
}

export type ReadResult =
  | {
      readonly _tag: "read"
      readonly buffer: ArrayBuffer
      readonly bytesRead: number
      /** The file's state once read (fstat), to tell whether it changed since it was listed. */
      readonly size: number
      readonly mtimeMs: number
    }
  | { readonly _tag: "failed"; readonly code: string | undefined; readonly message: string }

export interface SmallReads {
  /** Reads the files whole on the reading thread, in one trip; each promise rejects as its read failed. */
  readonly read: (files: ReadRequest["files"]) => ReadonlyArray<Promise<ReadResult & { _tag: "read" }>>
}

/** An error as the failed call threw it, its code kept: Io.readFailure words it by the code. */
const asError = (failed: ReadResult & { _tag: "failed" }) =>
  Object.assign(new Error(failed.message), failed.code === undefined ? {} : { code: failed.code })

/**
 * A thread that reads small files for the sender (see ReadWorker.ts), started with the first request and
 * stopped with the scope. A thread that dies fails the reads it had.
 */
export const make = Effect.gen(function* () {
  let worker: Worker | undefined
  const waiting = new Map<number, (results: ReadonlyArray<ReadResult> | Error) => void>()
  let nextId = 0
  yield* Effect.addFinalizer(() => Effect.promise(async () => void (await worker?.terminate())))
  const start = () => {
    const started = new Worker(new URL("./ReadWorker.js", import.meta.url))
    started.unref()
    started.on("message", ({ id, results }: { id: number; results: ReadonlyArray<ReadResult> }) => {
      waiting.get(id)?.(results)
      waiting.delete(id)
    })
    const die = (error: Error) => {
      for (const resolve of waiting.values()) resolve(error)
      waiting.clear()
      // The next read starts another.
      if (worker === started) worker = undefined
    }
    started.on("error", die)
    started.on("exit", (code) => die(new Error(`the reading thread exited (code ${code})`)))
    return started
  }
  const reads: SmallReads = {
    read: (files) => {
      worker ??= start()
      const id = nextId++
      const all = new Promise<ReadonlyArray<ReadResult> | Error>((resolve) => waiting.set(id, resolve))
      worker.postMessage({ id, files } satisfies ReadRequest)
      return files.map((_, i) =>
        all.then((results) => {
          if (results instanceof Error) throw results
          const result = results[i]!
          if (result._tag === "failed") throw asError(result)
          return result
        }),
      )
    },
  }
  return reads
})
