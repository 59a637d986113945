// Password and client-secret hashing: scrypt from node:crypto, its parameters stored in the record so
// they can be raised later without invalidating existing hashes (docs/formats/auth-keys.md). Verification
// compares in constant time. Imported by auth-service.ts only.

import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from "node:crypto";
import { OvsError } from "../../base/index.js";

/** A stored hash: every parameter needed to verify it, salt and hash in base64. */
export interface PasswordHash {
  algorithm: "scrypt";
  /** scrypt cost (CPU/memory), a power of two. */
  N: number;
  r: number;
  p: number;
  keyLengthBytes: number;
  salt: string;
  hash: string;
}

/** Today's parameters: N = 2^15, r = 8 (32 MiB, about 60 ms here), p = 1, 32-byte key, 16-byte salt. */
export const scryptDefaults = { N: 1 << 15, r: 8, p: 1, keyLengthBytes: 32, saltBytes: 16 } as const;
/** Bounds a stored record may ask for (a corrupt or hostile record cannot make us allocate gigabytes). */
const scryptNMax = 1 << 20;
const scryptMemoryBytesMax = 256 * 1024 * 1024;
export const passwordBytesMin = 8;
export const passwordBytesMax = 1024;

function scrypt(password: string, salt: Buffer, keyLengthBytes: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCallback(password, salt, keyLengthBytes, options, (error, key) => (error ? reject(error) : resolve(key))),
  );
}

function memoryBytes(N: number, r: number, p: number): number {
  return 128 * N * r * (p + 1) + 1024 * 1024;
}

export function checkPassword(password: unknown, what = "password"): string {
  if (typeof password !== "string") throw new OvsError("INVALID_ARGUMENT", `the ${what} must be a string.`);
  const length = Buffer.byteLength(password, "utf8");
  if (length < passwordBytesMin || length > passwordBytesMax) {
    throw new OvsError("INVALID_ARGUMENT", `the ${what} must be ${passwordBytesMin} to ${passwordBytesMax} bytes long.`);
  }
  return password;
}

export async function hashPassword(password: string, salt: Buffer = randomBytes(scryptDefaults.saltBytes)): Promise<PasswordHash> {
  const { N, r, p, keyLengthBytes } = scryptDefaults;
  const key = await scrypt(password, salt, keyLengthBytes, { N, r, p, maxmem: memoryBytes(N, r, p) });
  return { algorithm: "scrypt", N, r, p, keyLengthBytes, salt: salt.toString("base64"), hash: key.toString("base64") };
}

export async function verifyPassword(password: string, stored: PasswordHash): Promise<boolean> {
  const { N, r, p, keyLengthBytes } = stored;
  const valid =
    stored.algorithm === "scrypt" && Number.isInteger(N) && N > 1 && N <= scryptNMax && (N & (N - 1)) === 0 &&
    Number.isInteger(r) && r >= 1 && Number.isInteger(p) && p >= 1 && memoryBytes(N, r, p) <= scryptMemoryBytesMax &&
    Number.isInteger(keyLengthBytes) && keyLengthBytes >= 16 && keyLengthBytes <= 64;
  if (!valid) throw new OvsError("CORRUPT", "a stored password hash has parameters out of bounds.");
  const expected = Buffer.from(stored.hash, "base64");
  const key = await scrypt(password, Buffer.from(stored.salt, "base64"), keyLengthBytes, { N, r, p, maxmem: memoryBytes(N, r, p) });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** A generated secret (first admin password, client secrets): 24 random bytes, base64url (32 characters). */
export function generateSecret(): string {
  return randomBytes(24).toString("base64url");
}
