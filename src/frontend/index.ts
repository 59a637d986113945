// Public face of src/frontend/: the block and object frontends (NBD first; iSCSI and S3 later).
export * from "./nbd/index.js";
