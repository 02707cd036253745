import { spawnSync } from "node:child_process"
import { expect } from "vitest"
import { run } from "./Processes.js"

const isRoot = process.getuid?.() === 0

/**
 * chmod 000 does not stop root (CAP_DAC_OVERRIDE). As root, a command put behind this prefix runs under
 * util-linux setpriv with those capabilities dropped from its bounding set: still uid 0, but bound by
 * permission bits. Empty for anyone else.
 */
export const permissionBound: ReadonlyArray<string> = isRoot
  ? ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
  : []

/** Why this machine cannot make a file unreadable to p2pal (root without setpriv), or undefined. */
export const cannotDenyReads =
  isRoot && spawnSync("setpriv", ["--version"]).status !== 0
    ? "running as root without setpriv (util-linux), so chmod 000 cannot stop reads"
    : undefined

/** Fails unless a command behind `permissionBound` really cannot read `file`: else the test proves nothing. */
export const expectUnreadable = async (file: string) => {
  const [command, ...args] = [...permissionBound, "cat", file]
  expect(await run(command!, args), `${file} is still readable behind permissionBound`).toMatchObject({
    code: 1,
    stdout: "",
    stderr: expect.stringContaining("Permission denied"),
  })
}
