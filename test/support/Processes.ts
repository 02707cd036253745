import { type ChildProcess, spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { createInterface } from "node:readline"
import { afterAll, beforeAll } from "vitest"

export const repo = path.resolve(import.meta.dirname, "../..")
export const bin = (name: "p2pal" | "p2pal-signal") => path.join(repo, "bin", name)

/** Where `name` is on the PATH, if it is there and executable. */
export const onPath = (name: string): string | undefined =>
  (process.env.PATH ?? "")
    .split(path.delimiter)
    .map((dir) => path.join(dir, name))
    .find((candidate) => {
      try {
        accessSync(candidate, constants.X_OK)
        return true
      } catch {
        return false
      }
    })

export interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

const live = new Set<ChildProcess>()
process.on("exit", () => live.forEach((p) => p.kill("SIGKILL")))

/**
 * `P2PAL_HOME` of every process a test file starts (unless it passes its own): their checkpoints stay
 * out of the user's ~/.p2pal and go with the test file.
 */
const p2palHome = mkdtempSync(path.join(os.tmpdir(), "p2pal-e2e-home-"))
process.on("exit", () => rmSync(p2palHome, { recursive: true, force: true }))

export interface Running {
  readonly child: ChildProcess
  readonly finished: Promise<Finished>
  /** What it has written so far. */
  readonly output: () => { readonly stdout: string; readonly stderr: string }
  /** Resolves with the first line (of stdout, unless told) that matches, or rejects when the process exits first. */
  readonly line: (pattern: RegExp, from?: "stdout" | "stderr") => Promise<RegExpMatchArray>
}

export interface StartOptions {
  /** Written to stdin, which is then closed. Without it stdin is closed at once (end of input). */
  readonly stdin?: string
  /**
   * Leaves stdin open (after writing `stdin`, if given) so the test can answer later through
   * `child.stdin`; the test must end it (or the process must exit) itself.
   */
  readonly keepStdinOpen?: boolean
  readonly env?: NodeJS.ProcessEnv
}

export const start = (command: string, args: ReadonlyArray<string>, options: StartOptions = {}): Running => {
  const child = spawn(command, args, {
    stdio: ["pipe", "pipe", "pipe"],
    env: { ...process.env, P2PAL_HOME: p2palHome, ...options.env },
  })
  live.add(child)
  let stdout = ""
  let stderr = ""
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d))
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
  // A process that exits before reading its input would make a later write fail with EPIPE.
  child.stdin!.on("error", () => {})
  if (options.keepStdinOpen) {
    if (options.stdin !== undefined) child.stdin!.write(options.stdin)
  } else if (options.stdin === undefined) child.stdin!.end()
  else child.stdin!.end(options.stdin)
  const finished = new Promise<Finished>((resolve) =>
    child.on("close", (code, signal) => {
      live.delete(child)
      resolve({ code, signal, stdout, stderr })
    }),
  )
  const streams = {
    stdout: createInterface({ input: child.stdout! }),
    stderr: createInterface({ input: child.stderr! }),
  }
  const line = (pattern: RegExp, from: "stdout" | "stderr" = "stdout") =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const lines = streams[from]
      const onLine = (l: string) => {
        const m = l.match(pattern)
        if (m) {
          lines.off("line", onLine)
          resolve(m)
        }
      }
      lines.on("line", onLine)
      void finished.then((f) =>
        reject(new Error(`exited (${f.code}) before printing ${pattern}: ${f.stderr}`)),
      )
    })
  return { child, finished, line, output: () => ({ stdout, stderr }) }
}

/**
 * How `running` ended, if it ends within `ms`; otherwise it is killed and this rejects with what it had
 * written, so a hang shows where it stopped instead of timing the whole test out.
 */
export const finishedWithin = async (running: Running, ms: number, what: string) => {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const { stdout, stderr } = running.output()
      running.child.kill("SIGKILL")
      reject(new Error(`${what} still running after ${ms} ms; stdout:\n${stdout}\nstderr:\n${stderr}`))
    }, ms)
  })
  return Promise.race([running.finished, late]).finally(() => clearTimeout(timer))
}

export const run = (command: string, args: ReadonlyArray<string>, options: { stdin?: string } = {}) =>
  start(command, args, options).finished

export interface Signal {
  readonly url: string
  /** Its /metrics, on the listener of its own (`--metrics-port`). */
  readonly metricsUrl: string
  readonly child: ChildProcess
  readonly finished: Promise<Finished>
  /** What it has logged so far. */
  readonly output: () => { readonly stdout: string; readonly stderr: string }
  /** Stops it with SIGTERM and tells how it ended, stdout after the listening line included. */
  readonly stop: () => Promise<Finished>
}

const LimitFlags = ["--limit-creates", "--limit-joins", "--limit-failed-joins"]

/**
 * The signal app's flags `args` with every rate limit they do not set out of reach: a suite that runs
 * fast creates more transfers a minute from 127.0.0.1 than the defaults allow, and only the tests about
 * limits (which set the ones they test) may meet one.
 */
export const signalArgs = (args: ReadonlyArray<string>): ReadonlyArray<string> => [
  ...LimitFlags.filter((flag) => !args.includes(flag)).flatMap((flag) => [flag, "1000000"]),
  // Several apps run at once: each takes a free metrics port rather than the fixed default.
  ...(args.includes("--metrics-port") ? [] : ["--metrics-port", "0"]),
  ...args,
]

/**
 * The real signal app as a child process on a free loopback port (or `--port` in `args`), read from
 * its listening line; `args` are more flags (`--redis URL`, limits; see signalArgs).
 */
export const startSignal = async (args: ReadonlyArray<string> = []): Promise<Signal> => {
  const proc = start(bin("p2pal-signal"), signalArgs(["--port", "0", "--host", "127.0.0.1", ...args]))
  const [, url] = await proc.line(/^p2pal-signal listening on (http:\/\/\S+)$/)
  // Printed before the listening line, so already in its output.
  const [, metricsUrl] = /^p2pal-signal metrics on (http:\/\/\S+)$/m.exec(proc.output().stdout) ?? []
  return {
    url: url!,
    metricsUrl: metricsUrl!,
    child: proc.child,
    finished: proc.finished,
    output: proc.output,
    stop: () => {
      proc.child.kill("SIGTERM")
      return proc.finished
    },
  }
}

/**
 * One signal app for the calling test file, stopped (and the file's temporary directories removed)
 * after it; `cliFlags()` points a p2pal command at it, with no STUN since everything is on loopback.
 */
export const useSignalApp = () => {
  let signal: Signal | undefined
  beforeAll(async () => {
    signal = await startSignal()
  })
  afterAll(() => Promise.all([signal?.stop(), removeTempDirs()]))
  return {
    url: () => signal!.url,
    cliFlags: () => ["--server", signal!.url, "--stun", ""],
  }
}

const temps: Array<string> = []
process.on("exit", () => temps.forEach((dir) => rmSync(dir, { recursive: true, force: true })))

export const tempDir = async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "p2pal-e2e-"))
  temps.push(dir)
  return dir
}

/**
 * A sparse file in which every 64 KiB starts with 4 KiB of random bytes: quick to make, and as a chunk
 * is at most 63 KiB, every chunk carries random bytes, so one written at the wrong offset changes the hash.
 */
export const sparseRandomFile = async (file: string, size: number) => {
  await fs.mkdir(path.dirname(file), { recursive: true })
  const handle = await fs.open(file, "w")
  try {
    for (let at = 0; at < size; at += 64 * 1024) {
      const bytes = randomBytes(Math.min(4096, size - at))
      await handle.write(bytes, 0, bytes.length, at)
    }
    await handle.truncate(size)
  } finally {
    await handle.close()
  }
}

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex")

/** Every entry under `dir`, relative: files with their size and SHA-256, directories ending with "/". */
export const snapshot = async (dir: string): Promise<Map<string, string | null>> => {
  const result = new Map<string, string | null>()
  const walk = async (rel: string) => {
    for (const entry of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel === "" ? entry.name : `${rel}/${entry.name}`
      if (entry.isDirectory()) {
        result.set(`${child}/`, null)
        await walk(child)
      } else {
        const bytes = await fs.readFile(path.join(dir, child))
        result.set(child, `${bytes.length} ${sha256(bytes)}`)
      }
    }
  }
  await walk("")
  return result
}

/**
 * Polls `probe` until it returns something other than undefined, at most `timeoutMs`: for conditions
 * no process announces (a file appearing on disk). The probe may throw to give up early.
 */
export const waitFor = async <A>(
  what: string,
  probe: () => Promise<A | undefined>,
  timeoutMs = 20_000,
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  while (true) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Resolves with the first match of `pattern` in what the process writes to stderr from now on. */
export const stderrMatch = (running: Running, pattern: RegExp) =>
  new Promise<RegExpMatchArray>((resolve, reject) => {
    let text = ""
    const onData = (d: Buffer | string) => {
      text += d.toString()
      const m = text.match(pattern)
      if (m) {
        running.child.stderr!.off("data", onData)
        resolve(m)
      }
    }
    running.child.stderr!.on("data", onData)
    void running.finished.then((f) =>
      reject(new Error(`exited (${f.code}) before printing ${pattern} on stderr: ${f.stderr}`)),
    )
  })

/** Quotes one argument for `sh -c`. */
export const shellQuote = (arg: string) => `'${arg.replace(/'/g, `'\\''`)}'`

/**
 * Runs a command on a pseudo-terminal through util-linux `script` (Debian: bsdutils), so it sees a TTY
 * on stdin, stdout and stderr. Everything it writes arrives merged on the returned process's stdout,
 * and the exit code is the command's (-e).
 */
export const startOnTty = (command: string, args: ReadonlyArray<string>) => start(...onTty(command, args))

/** The `script` command line that runs `command` on a pseudo-terminal (for starting it elsewhere). */
export const onTty = (command: string, args: ReadonlyArray<string>) =>
  ["script", ["-qfec", [command, ...args].map(shellQuote).join(" "), "/dev/null"]] as const

/** Every line a program drew on a terminal, escape sequences and carriage returns removed. */
export const drawnLines = (output: string) =>
  output.split("\n").map((line) => line.replace(/\x1b\[\d*[A-Za-z]/g, "").replace(/\r/g, ""))

/**
 * Removes every directory `tempDir` made in this test file so far. Call it from `afterAll`: vitest's
 * workers do not always reach the process "exit" handler above, and received files are real bytes.
 */
export const removeTempDirs = async () => {
  for (const dir of temps.splice(0)) await fs.rm(dir, { recursive: true, force: true })
  // Checkpoints of the file's processes; the store makes the directory again if a later test needs it.
  await fs.rm(p2palHome, { recursive: true, force: true })
}

/**
 * Waits until the receiver's temporary file for `name` in `out` has grown past 8 MiB: the transfer is
 * under way, bytes are on disk, and far from done. Gives up at once if any of `processes` has exited.
 */
export const midTransfer = async (out: string, name: string, processes: ReadonlyArray<Running>) => {
  const exits: Array<Finished> = []
  for (const p of processes) void p.finished.then((f) => exits.push(f))
  const temp = new RegExp(`^\\.${name.replace(/\./g, "\\.")}\\.[0-9a-f]{8}\\.p2pal-part$`)
  return waitFor(`a temporary file for ${name} past 8 MiB in ${out}`, async () => {
    if (exits.length > 0) throw new Error(`a process exited before mid-transfer: ${JSON.stringify(exits)}`)
    for (const entry of await fs.readdir(out).catch(() => [])) {
      if (!temp.test(entry)) continue
      const size = (await fs.stat(path.join(out, entry)).catch(() => undefined))?.size ?? 0
      if (size >= 8 * 1024 * 1024) return entry
    }
    return undefined
  })
}

/** Every entry below `dir`, never following symlinks ("name -> target"); none if `dir` does not exist. */
export const leftIn = async (dir: string): Promise<Array<string>> => {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return []
    throw e
  })
  const found: Array<string> = []
  for (const entry of entries) {
    const full = path.join(dir, entry.name)
    if (entry.isSymbolicLink()) found.push(`${entry.name} -> ${await fs.readlink(full)}`)
    else if (entry.isDirectory())
      found.push(`${entry.name}/`, ...(await leftIn(full)).map((e) => `${entry.name}/${e}`))
    else found.push(entry.name)
  }
  return found.sort()
}

/** Bytes in the files below `dir` (temporary files included), at any depth; 0 if it does not exist. */
export const bytesUnder = async (dir: string): Promise<number> => {
  let total = 0
  for (const entry of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) total += await bytesUnder(full)
    else total += (await fs.stat(full).catch(() => undefined))?.size ?? 0
  }
  return total
}

/** Resolves once the files below `out` hold `bytes`; fails at once if one of `processes` exits first. */
export const untilOnDisk = (
  out: string,
  bytes: number,
  processes: ReadonlyArray<Running>,
  timeoutMs?: number,
) => {
  const exits: Array<Finished> = []
  for (const p of processes) void p.finished.then((f) => exits.push(f))
  return waitFor(
    `${bytes} bytes in ${out}`,
    async () => {
      // The bytes first: a process may have exited just after they arrived.
      if ((await bytesUnder(out)) >= bytes) return true
      if (exits.length > 0)
        throw new Error(`a process exited before the interruption point: ${JSON.stringify(exits)}`)
      return undefined
    },
    timeoutMs,
  )
}
