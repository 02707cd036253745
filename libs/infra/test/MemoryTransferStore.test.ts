import { layer } from "../src/MemoryTransferStore.js"
import { transferStoreContract } from "./TransferStoreContract.js"

transferStoreContract("memory", layer)
