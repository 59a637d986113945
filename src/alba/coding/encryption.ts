// AES-256-GCM per fragment (node:crypto, 3.1 GB/s per core at 1 MiB: reference/datapath-libs.md §4).
// Each fragment has its own 96-bit nonce, random by default (crypto.randomFillSync), stored in the fragment
// header; the 128-bit tag is stored there too. The additional authenticated data is the header's fixed
// fields, so that a header that lies about sizes or position fails authentication as well.
// Imported by pipeline.ts only.
//
// Nonce limit: random 96-bit nonces keep the collision probability below 2^-32 for up to 2^32
// fragments per key (NIST SP 800-38D §8.3); a preset's key must be rotated before that many fragments.
// Buffers: encrypt/decrypt return fresh Buffers owned by the caller (node:crypto on Node 20 cannot write
// into a preallocated output); the tag is written into the caller's `tagOut`.

import crypto from "node:crypto";
import { assert } from "../../base/index.js";

export const aesGcmKeySizeBytes = 32;
export const aesGcmNonceSizeBytes = 12;
export const aesGcmTagSizeBytes = 16;

export function randomNonce(): Buffer {
  return crypto.randomFillSync(Buffer.allocUnsafe(aesGcmNonceSizeBytes));
}

/** Encrypts `plain`; writes the 16-byte tag into `tagOut`; returns the cipher text (same length). */
export function encryptAesGcm(
  key: Uint8Array,
  nonce: Uint8Array,
  additionalData: Uint8Array,
  plain: Uint8Array,
  tagOut: Uint8Array,
): Buffer {
  assert(key.length === aesGcmKeySizeBytes, "AES-256-GCM key is 32 bytes");
  assert(nonce.length === aesGcmNonceSizeBytes, "AES-256-GCM nonce is 12 bytes");
  assert(tagOut.length === aesGcmTagSizeBytes, "AES-256-GCM tag is 16 bytes");
  const cipher = crypto.createCipheriv("aes-256-gcm", key, nonce, { authTagLength: aesGcmTagSizeBytes });
  cipher.setAAD(additionalData);
  const cipherText = cipher.update(plain);
  const rest = cipher.final();
  assert(rest.length === 0 && cipherText.length === plain.length, "GCM is a stream mode");
  tagOut.set(cipher.getAuthTag());
  return cipherText;
}

/** Decrypts and checks the tag; returns undefined when authentication fails (wrong key or altered bytes). */
export function decryptAesGcm(
  key: Uint8Array,
  nonce: Uint8Array,
  additionalData: Uint8Array,
  cipherText: Uint8Array,
  tag: Uint8Array,
): Buffer | undefined {
  assert(key.length === aesGcmKeySizeBytes, "AES-256-GCM key is 32 bytes");
  assert(nonce.length === aesGcmNonceSizeBytes && tag.length === aesGcmTagSizeBytes, "nonce 12 and tag 16 bytes");
  const decipher = crypto.createDecipheriv("aes-256-gcm", key, nonce, { authTagLength: aesGcmTagSizeBytes });
  decipher.setAAD(additionalData);
  decipher.setAuthTag(tag);
  const plain = decipher.update(cipherText);
  try {
    const rest = decipher.final();
    assert(rest.length === 0, "GCM is a stream mode");
  } catch {
    return undefined;
  }
  return plain;
}
