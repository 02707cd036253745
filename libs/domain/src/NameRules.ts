import { Either } from "effect"
import type { Entry, Manifest } from "./Manifest.js"
import * as ManifestPolicy from "./ManifestPolicy.js"
import { checkTree, firstBroken, type ManifestError, reject, type Rule } from "./ManifestPolicy.js"

/**
 * What a receiver refuses on top of ManifestPolicy because of its own platform: names Windows cannot
 * hold, and names its file system would take for another entry's. A Linux sender may send `a:b`, `CON`
 * or both `README` and `Readme`; a Linux receiver on ext4 keeps them, a Windows or macOS one does not.
 */
export interface NameRules {
  /** Windows' reserved names and characters, trailing dots and spaces. */
  readonly windows: boolean
  /** The file system finds a name under another letter case (NTFS, APFS by default, ext4 casefold). */
  readonly foldsCase: boolean
  /** The file system finds a name under another Unicode normalisation form (APFS, HFS+). */
  readonly foldsUnicode: boolean
}

const windowsPathRules: ReadonlyArray<Rule> = [
  {
    rule: "backslash",
    test: (p) => p.includes("\\"),
    message: "backslashes (and UNC paths) are not allowed",
  },
  { rule: "drive-letter", test: (p) => /^[a-z]:/i.test(p), message: "drive letters are not allowed" },
]

// Windows device names, with or without an extension; superscript digits count as digits there.
const reservedName = /^(con|prn|aux|nul|conin\$|conout\$|(com|lpt)[1-9\u00b9\u00b2\u00b3])(\..*)?$/i
const trailingDotSpace = /[. ]+$/
const forbiddenChars = /[:<>"|?*\\]/g

const windowsComponentRules: ReadonlyArray<Rule> = [
  {
    rule: "reserved-name",
    test: (c) => reservedName.test(c),
    message: "Windows reserved names (CON, PRN, AUX, NUL, COM1-9, LPT1-9) are not allowed",
  },
  {
    rule: "trailing-dot-space",
    test: (c) => trailingDotSpace.test(c),
    message: "names ending in a dot or a space are not allowed",
  },
  {
    rule: "forbidden-char",
    test: (c) => /[:<>"|?*]/.test(c),
    message: 'the characters : < > " | ? * are not allowed',
  },
]

/** How the receiving file system compares two names. */
const foldOf =
  (rules: NameRules) =>
  (name: string): string => {
    const normal = rules.foldsUnicode ? name.normalize("NFC") : name
    return rules.foldsCase ? normal.toLowerCase() : normal
  }

const checkWindowsPath = (path: string): ManifestError | undefined => {
  const failed =
    firstBroken(windowsPathRules, path) ??
    path
      .split("/")
      .map((c) => firstBroken(windowsComponentRules, c))
      .find((r) => r !== undefined)
  return failed && reject(path, failed.rule, failed.message)
}

/** Refuses, naming the first entry and rule broken, what this receiver's platform cannot hold. */
export const check = (m: Manifest, rules: NameRules): Either.Either<Manifest, ManifestError> => {
  if (rules.windows)
    for (const entry of m.entries) {
      const problem = checkWindowsPath(entry.path)
      if (problem) return Either.left(problem)
    }
  const clash = rules.foldsCase || rules.foldsUnicode ? checkTree(m.entries, foldOf(rules)) : undefined
  return clash ? Either.left(clash) : Either.right(m)
}

/** A name saved under another than the sender's (`recv --rename-unsafe`), "/"-separated from the top. */
export interface Renamed {
  readonly from: string
  readonly to: string
}

const percent = (c: string) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`

/** `a:b` -> `a%3Ab`, `name.` -> `name%2E`, `CON` -> `%43ON`: still readable, and visibly not the original. */
const escapeWindows = (name: string): string => {
  const escaped = name
    .replace(forbiddenChars, percent)
    .replace(trailingDotSpace, (t) => [...t].map(percent).join(""))
  return reservedName.test(escaped) ? percent(escaped) + escaped.slice(1) : escaped
}

/** `README` -> `README~2`, `a.txt` -> `a~2.txt`: the n-th of several names the file system takes for one. */
const numbered = (name: string, n: number): string => {
  const dot = name.lastIndexOf(".")
  return dot > 0 ? `${name.slice(0, dot)}~${n}${name.slice(dot)}` : `${name}~${n}`
}

/**
 * `recv --rename-unsafe`: the manifest with every name this platform refuses escaped, and every name its
 * file system would take for an earlier one numbered, entry order and indices kept. Fails only when an
 * escaped name breaks a rule of its own (it grew past 255 bytes).
 */
export const rename = (
  m: Manifest,
  rules: NameRules,
): Either.Either<
  { readonly manifest: Manifest; readonly renamed: ReadonlyArray<Renamed> },
  ManifestError
> => {
  const fold = foldOf(rules)
  /** Each directory or entry path as sent -> as saved. */
  const saved = new Map<string, string>()
  /** Each folded saved path -> the path as sent that holds it. */
  const holders = new Map<string, string>()
  const renamed: Array<Renamed> = []
  const place = (from: string): string => {
    const known = saved.get(from)
    if (known !== undefined) return known
    const slash = from.lastIndexOf("/")
    const parent = slash < 0 ? "" : place(from.slice(0, slash))
    const name = from.slice(slash + 1)
    const escaped = rules.windows ? escapeWindows(name) : name
    const under = (n: string) => (parent === "" ? n : `${parent}/${n}`)
    let to = under(escaped)
    for (let n = 2; (holders.get(fold(to)) ?? from) !== from; n++) to = under(numbered(escaped, n))
    saved.set(from, to)
    holders.set(fold(to), from)
    if (to.slice(to.lastIndexOf("/") + 1) !== name) renamed.push({ from, to })
    return to
  }
  const entries = m.entries.map((entry): Entry => ({ ...entry, path: place(entry.path) }))
  const manifest: Manifest = { ...m, entries }
  return Either.map(
    Either.flatMap(ManifestPolicy.check(manifest), (checked) => check(checked, rules)),
    (checked) => ({ manifest: checked, renamed }),
  )
}
