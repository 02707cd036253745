import { Effect, Option } from "effect"

/**
 * Lines of stdin, read without ever holding more than `max` bytes of one: a stdin with no line end
 * (`< /dev/zero`) must not grow the process until it dies. Bytes read past a line wait for the next call,
 * so a code and a later answer may arrive in one write.
 */
let pending = Buffer.alloc(0)
let ended = false

/** The next line (without its end; the rest of input at end of input, "" after it), or None if it is longer than `max` bytes. */
export const read = (max: number): Effect.Effect<Option.Option<string>> =>
  Effect.async<Option.Option<string>>((resume) => {
    const stdin = process.stdin
    const take = (): Option.Option<string> | undefined => {
      const end = pending.indexOf(0x0a)
      const length = end === -1 ? pending.length : end
      if (length > max) return Option.none()
      if (end === -1 && !ended) return undefined
      const line = pending.subarray(0, length).toString("utf8").replace(/\r$/, "")
      pending = pending.subarray(end === -1 ? length : end + 1)
      return Option.some(line)
    }
    const stop = () => {
      stdin.off("data", onData)
      stdin.off("end", onEnd)
      stdin.off("error", onEnd)
      stdin.pause()
    }
    const settle = () => {
      const line = take()
      if (line === undefined) return
      stop()
      resume(Effect.succeed(line))
    }
    const onData = (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      settle()
    }
    // A stdin that fails to read ends the input as far as a question is concerned.
    const onEnd = () => {
      ended = true
      settle()
    }
    const now = take()
    if (now !== undefined) return resume(Effect.succeed(now))
    stdin.on("data", onData)
    stdin.once("end", onEnd)
    stdin.once("error", onEnd)
    stdin.resume()
    return Effect.sync(stop)
  })
