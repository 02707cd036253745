import { describe, expect, it } from "@effect/vitest"
import { bytesToNumberLE } from "@noble/curves/utils.js"
import * as CPace from "@p2pal/transfer/CPace"

/**
 * The published test vectors of draft-irtf-cfrg-cpace, appendix "Test vectors", section "Test vector for
 * CPace using group ristretto255 and hash SHA-512" (and the string utility vectors before it), as in
 * the CFRG draft repository github.com/cfrg/draft-irtf-cfrg-cpace, draft-irtf-cfrg-cpace.md at commit
 * 8fb4056e1b9201927d9f651b9970d9d5660c7892.
 */
const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ""), "hex")
const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")

const PRS = Buffer.from("Password")
const CI = hex("0b415f696e69746961746f720b425f726573706f6e646572")
const sid = hex("7e4b4791d6a8ef019b936c79fb7f2c57")
const ADa = Buffer.from("ADa")
const ADb = Buffer.from("ADb")
const ya = bytesToNumberLE(hex("da3d23700a9e5699258aef94dc060dfda5ebb61f02a5ea77fad53f4ff0976d08"))
const yb = bytesToNumberLE(hex("d2316b454718c35362d83d69df6320f38578ed5984651435e2949762d900b80d"))
const Ya = "d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0eec482b9157"
const Yb = "3ea7e0b19560d7c0b0f5734f63b955286dfa8232b5ebe63324e2d9e7433f7258"
const K = "80b69a8a76457ab6a4d7f887a4bf6b55a2f80ac19c333f917a05fc9887c8b40f"

describe("CPace (draft-irtf-cfrg-cpace, CPACE-RISTR255-SHA512) against the draft's test vectors", () => {
  it("prepend_len and lv_cat", () => {
    expect(toHex(CPace.prependLen(Buffer.alloc(0)))).toBe("00")
    expect(toHex(CPace.prependLen(Buffer.from("1234")))).toBe("0431323334")
    const range = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => i))
    expect(toHex(CPace.prependLen(range(127)))).toBe(`7f${toHex(range(127))}`)
    expect(toHex(CPace.prependLen(range(128)))).toBe(`8001${toHex(range(128))}`)
    const parts = ["1234", "5", "", "678"].map((s) => Buffer.from(s))
    expect(toHex(CPace.lvCat(...parts))).toBe("043132333401350003363738")
  })

  it("transcript_ir and transcript_oc", () => {
    const b = (s: string) => Buffer.from(s)
    expect(toHex(CPace.transcriptIr(b("123"), b("PartyA"), b("234"), b("PartyB")))).toBe(
      "03313233065061727479410332333406506172747942",
    )
    expect(toHex(CPace.transcriptIr(b("3456"), b("PartyA"), b("2345"), b("PartyB")))).toBe(
      "043334353606506172747941043233343506506172747942",
    )
    expect(toHex(CPace.transcriptOc(b("123"), b("PartyA"), b("234"), b("PartyB")))).toBe(
      "6f6303323334065061727479420331323306506172747941",
    )
    expect(toHex(CPace.transcriptOc(b("3456"), b("PartyA"), b("2345"), b("PartyB")))).toBe(
      "6f63043334353606506172747941043233343506506172747942",
    )
  })

  it("generator string and generator", () => {
    expect(toHex(CPace.generatorString(PRS, CI, sid))).toBe(
      toHex(
        hex(`11435061636552697374726574746f3235350850617373776f726464
          00000000000000000000000000000000000000000000000000000000
          00000000000000000000000000000000000000000000000000000000
          00000000000000000000000000000000000000000000000000000000
          00000000000000000000000000000000180b415f696e69746961746f
          720b425f726573706f6e646572107e4b4791d6a8ef019b936c79fb7f
          2c57`),
      ),
    )
    expect(toHex(CPace.calculateGenerator(PRS, CI, sid).toBytes())).toBe(
      "222b6b195fe84b1652badb6f6a3ae3d24341e7306967f0b8115b40d5698c7e56",
    )
  })

  it("messages Ya and Yb, the shared point K, and ISK in both modes", () => {
    const g = CPace.calculateGenerator(PRS, CI, sid)
    const Ya_ = CPace.scalarMult(ya, g)
    const Yb_ = CPace.scalarMult(yb, g)
    expect(toHex(Ya_)).toBe(Ya)
    expect(toHex(Yb_)).toBe(Yb)
    const ka = CPace.scalarMultVfy(ya, Yb_)
    expect(toHex(ka)).toBe(K)
    expect(toHex(CPace.scalarMultVfy(yb, Ya_))).toBe(K)
    expect(toHex(CPace.isk(sid, ka, CPace.transcriptIr(Ya_, ADa, Yb_, ADb)))).toBe(
      toHex(
        hex(`b69effbf61b51d56401c0f65601abe428de8206feaaf0e32198896dc
             ae7b35cd2b38950a39dfd5d4a79164614c2984f7daa460b588c1e80c
             3fa2068af7900447`),
      ),
    )
    expect(toHex(CPace.isk(sid, ka, CPace.transcriptOc(Ya_, ADa, Yb_, ADb)))).toBe(
      toHex(
        hex(`544199d71f62f8d9a1fee55727e24fe4a45844593c2b6013c4fa3969
             d0e5debb2244675c0b43397cbb68d342b01fc0f98fc961469a25134d
             e9f0f813c1a57476`),
      ),
    )
  })

  it("scalar_mult_vfy: a valid point, and the identity for an undecodable one or the identity itself", () => {
    const s = bytesToNumberLE(hex("7cd0e075fa7955ba52c02759a6c90dbbfc10e6d40aea8d283e407d88cf538a05"))
    expect(
      toHex(CPace.scalarMultVfy(s, hex("2c3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c"))),
    ).toBe("7c13645fe790a468f62c39beb7388e541d8405d1ade69d1778c5fe3e7f6b600e")
    const invalid = hex("2b3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d654b4a51c")
    expect(CPace.scalarMultVfy(s, invalid)).toEqual(CPace.Identity)
    expect(CPace.scalarMultVfy(s, Buffer.alloc(32))).toEqual(CPace.Identity)
    expect(toHex(CPace.Identity)).toBe("00".repeat(32))
  })

  it("sampled scalars are nonzero and below 2^252", () => {
    for (let i = 0; i < 64; i++) {
      const scalar = CPace.sampleScalar()
      expect(scalar > 0n && scalar < 2n ** 252n).toBe(true)
    }
  })
})
