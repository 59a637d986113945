// The one error catalogue (STYLE.md): every operating error has a stable code, a one-sentence message
// and, for the API, an HTTP status. Codes are persisted in logs and API replies: never rename one.
// Imported by every layer.

export const errorCatalogue = {
  INVALID_ARGUMENT: { httpStatus: 400 },
  NOT_FOUND: { httpStatus: 404 },
  ALREADY_EXISTS: { httpStatus: 409 },
  CONFLICT: { httpStatus: 409 },
  IN_USE: { httpStatus: 409 },
  ASSERT_FAILED: { httpStatus: 409 },
  OUT_OF_RANGE: { httpStatus: 400 },
  NO_SPACE: { httpStatus: 507 },
  IO_ERROR: { httpStatus: 500 },
  CHECKSUM_MISMATCH: { httpStatus: 500 },
  CORRUPT: { httpStatus: 500 },
  UNAVAILABLE: { httpStatus: 503 },
  CLOSED: { httpStatus: 503 },
  TIMEOUT: { httpStatus: 504 },
  INTERNAL: { httpStatus: 500 },
  UNAUTHENTICATED: { httpStatus: 401 },
  FORBIDDEN: { httpStatus: 403 },
  RATE_LIMITED: { httpStatus: 429 },
} as const;

export type ErrorCode = keyof typeof errorCatalogue;

export class OvsError extends Error {
  override name = "OvsError";
  readonly code: ErrorCode;
  readonly httpStatus: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.httpStatus = errorCatalogue[code].httpStatus;
    this.details = details;
  }
}

export function isOvsError(error: unknown, code?: ErrorCode): error is OvsError {
  return error instanceof OvsError && (code === undefined || error.code === code);
}

/** The errno-style code of a Node system error (ENOENT, ENOSPC, ...), or undefined. */
export function systemErrorCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}
