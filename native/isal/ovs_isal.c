// ovs_isal: openvstorage's N-API addon over Intel ISA-L (Debian's libisal-dev): Reed-Solomon tables,
// encode and decode over GF(2^8), and CRC32C. Used by src/alba/coding/isal.ts, which loads it with
// RTLD_DEEPBIND (see below); nothing else may load it.
//
// Why we write it by hand: no maintained npm package is fast enough (../shared/reference/datapath-libs.md).
// ISA-L through this kind of addon measured 22.9 / 16.0 GB/s per core encoding 1 MiB at 4+2 / 8+3; the
// best npm package (@ronomon/reed-solomon, unmaintained since 2020, its own test aborts on Node 20) 8.6 /
// 5.3, the WASM packages < 0.8. For CRC32C, ISA-L's crc32_iscsi reaches 35-55 GB/s against 5-6 GB/s for
// @node-rs/crc32. The addon is deliberately thin: a few functions, no state, no threads.
//
// The RTLD_DEEPBIND trap: the node binary exports `gf_mul` (from its bundled OpenSSL 3.0). Loaded with
// default flags, libisal's internal call from gf_invert_matrix to its own gf_mul resolves to Node's
// and decode crashes (SIGSEGV). isal.ts loads this file with RTLD_NOW | RTLD_DEEPBIND so that the addon
// and libisal bind to libisal's symbols first. Our own gf_mul calls below go to libisal as well.
//
// Buffers: every function works in place on Uint8Arrays (Buffers) that the caller owns, through
// napi_get_typedarray_info: no copies, nothing kept after the call returns. Outputs must not overlap
// inputs. A zero-length Uint8Array may report a NULL data pointer on Node 20: lengths of 0 return early
// and never touch the pointer.
//
// Limits: 1 <= k <= OVS_EC_K_MAX, 0 <= m <= OVS_EC_M_MAX (small arrays on the stack), lengths < 2^31
// (ISA-L takes int). Every argument is checked; a bad one throws TypeError or RangeError, never crashes.
//
// Functions (all synchronous, on the calling thread):
//   genCauchyMatrix(k, m, matrixOut)                  (k+m)×k matrix: identity on top, then 1/(i xor j)
//   initTables(k, rowCount, matrixRows, tablesOut)    ec_init_tables: 32·k·rowCount bytes of tables
//   decodeMatrix(k, m, encodeMatrix, sourceIndices, targetIndices, matrixOut) -> boolean (false: singular)
//   encodeData(k, rowCount, tables, sources[k], targets[rowCount], lengthBytes)   ec_encode_data
//   crc32c(data, initial) -> uint32                   standard CRC32C (as iSCSI), continuing from initial
//   crc32cBlocks(data, blockSize, out)                 CRC32C of each block of data into out (uint32s)
//   crc32cSealRecords(data, count, stride, length, initial) -> uint32   see its comment
//   limits -> { kMax, mMax }
//   preadNoWait(fd, buffer, offset, length, position) -> bytes read, or -1 (would block)
//   dropCachedPages(fd) -> undefined                   posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
//   allocAligned(byteLength) -> ArrayBuffer            zeroed memory aligned to 4096 bytes
//
// preadNoWait is not ISA-L: it is preadv2 with RWF_NOWAIT, here because this
// is the one addon we build. Node has no way to say "do this I/O now if it is a page-cache hit, else
// tell me": fs.read goes through libuv's thread pool, whose submission (mutex, condition signal, a
// futex wake, the callback's return trip) cost ~7 µs of the event loop per 4 KiB read in a profile of
// NBD random reads — more than the read itself when the data is cached (reference: io_uring and QEMU
// try the same non-blocking attempt first). fs.readSync would block the loop on a cold read. RWF_NOWAIT
// returns EAGAIN instead of waiting for the disk, and the caller then goes through the pool. (No write
// twin: ext4 refuses RWF_NOWAIT on buffered writes, EOPNOTSUPP on kernel 6.18.) EOPNOTSUPP (a file system without RWF_NOWAIT) is reported as -1
// too. Any other error throws an Error whose `code` is the errno name (EIO, ENOSPC, ...).
//
// dropCachedPages is not ISA-L either: Node cannot call posix_fadvise. The volume drops the page cache of
// SCO files that are on the disk and far behind the write head ("drop-behind", as log-structured stores
// do): fresh page-cache pages cost far more than recycled ones (on this VM, whose free memory goes back
// to the host, 0.4–0.5 GB/s against 0.8–0.9 GB/s for a write + fdatasync of 4 MiB files; see
// src/base/page-cache.ts). Clean pages are dropped; dirty ones are queued for writeback and stay.
//
// allocAligned is not ISA-L either: O_DIRECT writes need a buffer address aligned to the device's logical
// block size, and Node's ArrayBuffers are not (a large one sits 16 bytes into its mmap'd chunk). The
// volume writes SCO files with O_DIRECT from these buffers (src/volume/volume.ts: no page-cache copy and
// no writeback). The memory is posix_memalign'ed, zeroed, owned by the returned ArrayBuffer and freed by
// its finalizer when the GC collects it; it is reported to V8 as external memory meanwhile.

#define _GNU_SOURCE // preadv2, RWF_NOWAIT, strerrorname_np
#include <node_api.h>
#include <isa-l/crc.h>
#include <isa-l/erasure_code.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/uio.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <stdlib.h>

#define OVS_EC_K_MAX 32
#define OVS_ALIGNED_BYTES 4096
#define OVS_EC_M_MAX 16
#define OVS_ARGS_MAX 7

typedef struct {
  uint8_t *data;
  size_t length;
} bytes_t;

static bool get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv) {
  size_t argc = OVS_ARGS_MAX;
  napi_value all[OVS_ARGS_MAX];
  if (napi_get_cb_info(env, info, &argc, all, NULL, NULL) != napi_ok) return false;
  if (argc < expected) {
    napi_throw_type_error(env, NULL, "ovs_isal: too few arguments");
    return false;
  }
  for (size_t i = 0; i < expected; i++) argv[i] = all[i];
  return true;
}

static bool get_u32(napi_env env, napi_value value, const char *name, uint32_t max, uint32_t *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) {
    char message[96];
    snprintf(message, sizeof message, "ovs_isal: %s must be a number", name);
    napi_throw_type_error(env, NULL, message);
    return false;
  }
  double number;
  napi_get_value_double(env, value, &number);
  if (!(number >= 0 && number <= (double)max) || number != (double)(uint32_t)number) {
    char message[96];
    snprintf(message, sizeof message, "ovs_isal: %s must be an integer in [0, %u]", name, max);
    napi_throw_range_error(env, NULL, message);
    return false;
  }
  *out = (uint32_t)number;
  return true;
}

static bool get_bytes(napi_env env, napi_value value, const char *name, size_t length_min, bytes_t *out) {
  bool is_typedarray = false;
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (napi_is_typedarray(env, value, &is_typedarray) != napi_ok || !is_typedarray ||
      napi_get_typedarray_info(env, value, &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    char message[96];
    snprintf(message, sizeof message, "ovs_isal: %s must be a Uint8Array or Buffer", name);
    napi_throw_type_error(env, NULL, message);
    return false;
  }
  if (length < length_min) {
    char message[128];
    snprintf(message, sizeof message, "ovs_isal: %s has %zu bytes, needs at least %zu", name, length, length_min);
    napi_throw_range_error(env, NULL, message);
    return false;
  }
  out->data = data;
  out->length = length;
  return true;
}

// Reads an array of exactly `count` Uint8Arrays of at least `length_min` bytes each into `pointers`.
static bool get_bytes_array(napi_env env, napi_value value, const char *name, uint32_t count, size_t length_min,
                            uint8_t **pointers) {
  bool is_array = false;
  uint32_t length = 0;
  if (napi_is_array(env, value, &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, value, &length) != napi_ok) {
    char message[96];
    snprintf(message, sizeof message, "ovs_isal: %s must be an array", name);
    napi_throw_type_error(env, NULL, message);
    return false;
  }
  if (length != count) {
    char message[96];
    snprintf(message, sizeof message, "ovs_isal: %s has %u entries, needs %u", name, length, count);
    napi_throw_range_error(env, NULL, message);
    return false;
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value element;
    bytes_t bytes;
    if (napi_get_element(env, value, i, &element) != napi_ok) return false;
    if (!get_bytes(env, element, name, length_min, &bytes)) return false;
    pointers[i] = bytes.data;
  }
  return true;
}

static bool get_k_m(napi_env env, napi_value k_value, napi_value m_value, uint32_t *k, uint32_t *m) {
  if (!get_u32(env, k_value, "k", OVS_EC_K_MAX, k)) return false;
  if (*k == 0) {
    napi_throw_range_error(env, NULL, "ovs_isal: k must be at least 1");
    return false;
  }
  return get_u32(env, m_value, "m", OVS_EC_M_MAX, m);
}

static napi_value undefined_value(napi_env env) {
  napi_value result;
  napi_get_undefined(env, &result);
  return result;
}

static napi_value gen_cauchy_matrix(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint32_t k, m;
  bytes_t matrix;
  if (!get_args(env, info, 3, argv) || !get_k_m(env, argv[0], argv[1], &k, &m)) return NULL;
  if (!get_bytes(env, argv[2], "matrixOut", (size_t)(k + m) * k, &matrix)) return NULL;
  gf_gen_cauchy1_matrix(matrix.data, (int)(k + m), (int)k);
  return undefined_value(env);
}

static napi_value init_tables(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint32_t k, row_count;
  bytes_t matrix, tables;
  if (!get_args(env, info, 4, argv)) return NULL;
  if (!get_u32(env, argv[0], "k", OVS_EC_K_MAX, &k)) return NULL;
  if (!get_u32(env, argv[1], "rowCount", OVS_EC_K_MAX + OVS_EC_M_MAX, &row_count)) return NULL;
  if (k == 0) {
    napi_throw_range_error(env, NULL, "ovs_isal: k must be at least 1");
    return NULL;
  }
  if (!get_bytes(env, argv[2], "matrixRows", (size_t)row_count * k, &matrix)) return NULL;
  if (!get_bytes(env, argv[3], "tablesOut", (size_t)32 * k * row_count, &tables)) return NULL;
  if (row_count > 0) ec_init_tables((int)k, (int)row_count, matrix.data, tables.data);
  return undefined_value(env);
}

// Rows that rebuild fragments `target_indices` from the k fragments `source_indices` (both indices into
// the k+m fragments of the code given by `encode_matrix`). As in ISA-L's erasure_code example.
static napi_value decode_matrix(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  uint32_t k, m;
  bytes_t encode_matrix, sources, targets, out;
  if (!get_args(env, info, 6, argv) || !get_k_m(env, argv[0], argv[1], &k, &m)) return NULL;
  if (!get_bytes(env, argv[2], "encodeMatrix", (size_t)(k + m) * k, &encode_matrix)) return NULL;
  if (!get_bytes(env, argv[3], "sourceIndices", k, &sources)) return NULL;
  if (!get_bytes(env, argv[4], "targetIndices", 0, &targets)) return NULL;
  if (sources.length != k || targets.length > k + m) {
    napi_throw_range_error(env, NULL, "ovs_isal: sourceIndices must have k entries, targetIndices at most k+m");
    return NULL;
  }
  if (!get_bytes(env, argv[5], "matrixOut", targets.length * k, &out)) return NULL;

  uint8_t chosen[OVS_EC_K_MAX * OVS_EC_K_MAX];
  uint8_t inverse[OVS_EC_K_MAX * OVS_EC_K_MAX];
  bool seen[OVS_EC_K_MAX + OVS_EC_M_MAX] = {false};
  for (uint32_t i = 0; i < k; i++) {
    uint8_t index = sources.data[i];
    if (index >= k + m || seen[index]) {
      napi_throw_range_error(env, NULL, "ovs_isal: sourceIndices must be distinct and below k+m");
      return NULL;
    }
    seen[index] = true;
    memcpy(&chosen[k * i], &encode_matrix.data[(size_t)k * index], k);
  }
  for (size_t t = 0; t < targets.length; t++) {
    if (targets.data[t] >= k + m) {
      napi_throw_range_error(env, NULL, "ovs_isal: targetIndices must be below k+m");
      return NULL;
    }
  }
  bool invertible = gf_invert_matrix(chosen, inverse, (int)k) == 0;
  if (invertible) {
    for (size_t t = 0; t < targets.length; t++) {
      uint8_t target = targets.data[t];
      uint8_t *row = &out.data[t * k];
      if (target < k) {
        memcpy(row, &inverse[(size_t)k * target], k);
      } else {
        // parity_target = Σ_j E[target][j]·data_j and data_j = Σ_i inverse[j][i]·source_i.
        for (uint32_t i = 0; i < k; i++) {
          uint8_t sum = 0;
          for (uint32_t j = 0; j < k; j++) sum ^= gf_mul(inverse[k * j + i], encode_matrix.data[(size_t)k * target + j]);
          row[i] = sum;
        }
      }
    }
  }
  napi_value result;
  napi_get_boolean(env, invertible, &result);
  return result;
}

static napi_value encode_data(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  uint32_t k, row_count, length;
  bytes_t tables;
  uint8_t *sources[OVS_EC_K_MAX];
  uint8_t *targets[OVS_EC_K_MAX + OVS_EC_M_MAX];
  if (!get_args(env, info, 6, argv)) return NULL;
  if (!get_u32(env, argv[0], "k", OVS_EC_K_MAX, &k)) return NULL;
  if (!get_u32(env, argv[1], "rowCount", OVS_EC_K_MAX + OVS_EC_M_MAX, &row_count)) return NULL;
  if (k == 0) {
    napi_throw_range_error(env, NULL, "ovs_isal: k must be at least 1");
    return NULL;
  }
  if (!get_u32(env, argv[5], "lengthBytes", INT_MAX, &length)) return NULL;
  if (!get_bytes(env, argv[2], "tables", (size_t)32 * k * row_count, &tables)) return NULL;
  if (!get_bytes_array(env, argv[3], "sources", k, length, sources)) return NULL;
  if (!get_bytes_array(env, argv[4], "targets", row_count, length, targets)) return NULL;
  if (length > 0 && row_count > 0) ec_encode_data((int)length, (int)k, (int)row_count, tables.data, sources, targets);
  return undefined_value(env);
}

static napi_value crc32c(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bytes_t data;
  uint32_t initial;
  if (!get_args(env, info, 2, argv) || !get_bytes(env, argv[0], "data", 0, &data)) return NULL;
  if (!get_u32(env, argv[1], "initial", UINT32_MAX, &initial)) return NULL;
  // crc32_iscsi neither inverts its input nor its output: the standard CRC32C is ~f(data, ~initial).
  uint32_t crc = ~initial;
  size_t offset = 0;
  while (offset < data.length) {
    size_t step = data.length - offset;
    if (step > (size_t)1 << 30) step = (size_t)1 << 30;
    crc = crc32_iscsi(data.data + offset, (int)step, crc);
    offset += step;
  }
  napi_value result;
  napi_create_uint32(env, ~crc, &result);
  return result;
}

// crc32cBlocks(data, blockSize, out): the standard CRC32C of each blockSize-byte block of `data` (whose
// length is a multiple of blockSize), written as native-endian uint32 into `out` (a Uint8Array view of a
// Uint32Array, at least 4 bytes per block). One call checksums a whole run of 4 KiB clusters: the volume's
// write and read paths otherwise pay an N-API crossing per cluster.
static napi_value crc32c_blocks(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  bytes_t data, out;
  uint32_t block_size;
  if (!get_args(env, info, 3, argv) || !get_bytes(env, argv[0], "data", 0, &data)) return NULL;
  if (!get_u32(env, argv[1], "blockSize", (uint32_t)1 << 30, &block_size)) return NULL;
  if (block_size == 0 || data.length % block_size != 0) {
    napi_throw_range_error(env, NULL, "ovs_isal: data length must be a positive multiple of blockSize");
    return NULL;
  }
  size_t count = data.length / block_size;
  if (!get_bytes(env, argv[2], "out", count * 4, &out)) return NULL;
  uint32_t *crcs = (uint32_t *)out.data;
  for (size_t i = 0; i < count; i++) crcs[i] = ~crc32_iscsi(data.data + i * block_size, (int)block_size, 0xffffffffu);
  return undefined_value(env);
}

// crc32cSealRecords(data, count, stride, length, initial): `data` holds `count` records `stride` bytes
// apart. For each, the standard CRC32C of its first `length` bytes is stored little-endian in the 4 bytes
// that follow them; the return value is the CRC32C of all the records' first `length` bytes in order,
// continuing from `initial`. The volume seals the TLog entries of a whole write this way (one call for
// 256 entries of a 1 MiB write) where a table-driven CRC in JavaScript cost ~2 % of the main thread.
static napi_value crc32c_seal_records(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  bytes_t data;
  uint32_t count, stride, length, initial;
  if (!get_args(env, info, 5, argv)) return NULL;
  if (!get_u32(env, argv[1], "count", (uint32_t)1 << 30, &count)) return NULL;
  if (!get_u32(env, argv[2], "stride", (uint32_t)1 << 20, &stride)) return NULL;
  if (!get_u32(env, argv[3], "length", (uint32_t)1 << 20, &length)) return NULL;
  if (!get_u32(env, argv[4], "initial", UINT32_MAX, &initial)) return NULL;
  if ((size_t)length + 4 > stride) {
    napi_throw_range_error(env, NULL, "ovs_isal: stride must leave 4 bytes after each record's length");
    return NULL;
  }
  if (!get_bytes(env, argv[0], "data", (size_t)count * stride, &data)) return NULL;
  uint32_t chained = ~initial;
  for (size_t i = 0; i < count; i++) {
    uint8_t *record = data.data + i * stride;
    uint32_t crc = ~crc32_iscsi(record, (int)length, 0xffffffffu);
    record[length] = (uint8_t)crc;
    record[length + 1] = (uint8_t)(crc >> 8);
    record[length + 2] = (uint8_t)(crc >> 16);
    record[length + 3] = (uint8_t)(crc >> 24);
    chained = crc32_iscsi(record, (int)length, chained);
  }
  napi_value result;
  napi_create_uint32(env, ~chained, &result);
  return result;
}

// preadNoWait(fd, buffer, offset, length, position): see the header.
// dropCachedPages(fd): see the header.
static napi_value drop_cached_pages(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t fd;
  if (!get_args(env, info, 1, argv) || !get_u32(env, argv[0], "fd", INT_MAX, &fd)) return NULL;
  int error = posix_fadvise((int)fd, 0, 0, POSIX_FADV_DONTNEED); // returns the error, not errno
  if (error != 0) {
    const char *name = strerrorname_np(error);
    char message[160];
    snprintf(message, sizeof message, "%s: %s", name ? name : "EIO", strerror(error));
    napi_throw_error(env, name ? name : "EIO", message);
    return NULL;
  }
  return undefined_value(env);
}

static void free_aligned(napi_env env, void *data, void *hint) {
  int64_t adjusted;
  napi_adjust_external_memory(env, -(int64_t)(uintptr_t)hint, &adjusted);
  free(data);
}

// allocAligned(byteLength): see the header.
static napi_value alloc_aligned(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t byte_length;
  if (!get_args(env, info, 1, argv) || !get_u32(env, argv[0], "byteLength", (uint32_t)1 << 30, &byte_length)) return NULL;
  if (byte_length == 0 || byte_length % OVS_ALIGNED_BYTES != 0) {
    napi_throw_range_error(env, NULL, "ovs_isal: byteLength must be a positive multiple of 4096");
    return NULL;
  }
  void *data = NULL;
  if (posix_memalign(&data, OVS_ALIGNED_BYTES, byte_length) != 0) {
    napi_throw_error(env, "ENOMEM", "ovs_isal: out of memory for an aligned buffer");
    return NULL;
  }
  memset(data, 0, byte_length);
  napi_value result;
  if (napi_create_external_arraybuffer(env, data, byte_length, free_aligned, (void *)(uintptr_t)byte_length, &result) != napi_ok) {
    free(data);
    napi_throw_error(env, NULL, "ovs_isal: cannot create an external ArrayBuffer");
    return NULL;
  }
  int64_t adjusted;
  napi_adjust_external_memory(env, (int64_t)byte_length, &adjusted);
  return result;
}

static napi_value pread_nowait(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  bytes_t buffer;
  uint32_t fd, offset, length;
  if (!get_args(env, info, 5, argv) || !get_u32(env, argv[0], "fd", INT_MAX, &fd) ||
      !get_bytes(env, argv[1], "buffer", 0, &buffer) || !get_u32(env, argv[2], "offset", INT_MAX, &offset) ||
      !get_u32(env, argv[3], "length", INT_MAX, &length))
    return NULL;
  double position;
  napi_valuetype type;
  if (napi_typeof(env, argv[4], &type) != napi_ok || type != napi_number ||
      napi_get_value_double(env, argv[4], &position) != napi_ok || !(position >= 0 && position <= 9007199254740991.0) ||
      position != (double)(int64_t)position) {
    napi_throw_range_error(env, NULL, "ovs_isal: position must be a non-negative safe integer");
    return NULL;
  }
  if ((size_t)offset + length > buffer.length) {
    napi_throw_range_error(env, NULL, "ovs_isal: offset + length exceeds the buffer");
    return NULL;
  }
  ssize_t done = 0;
  if (length > 0) {
    struct iovec iov = {.iov_base = buffer.data + offset, .iov_len = length};
    do {
      done = preadv2((int)fd, &iov, 1, (off_t)position, RWF_NOWAIT);
    } while (done < 0 && errno == EINTR);
    if (done < 0) {
      int error = errno;
      if (error == EAGAIN || error == EOPNOTSUPP) {
        done = -1;
      } else {
        const char *name = strerrorname_np(error);
        char message[160];
        snprintf(message, sizeof message, "%s: %s", name ? name : "EIO", strerror(error));
        napi_throw_error(env, name ? name : "EIO", message);
        return NULL;
      }
    }
  }
  napi_value result;
  napi_create_double(env, (double)done, &result);
  return result;
}


NAPI_MODULE_INIT() {
  napi_value limits, k_max, m_max;
  napi_create_object(env, &limits);
  napi_create_uint32(env, OVS_EC_K_MAX, &k_max);
  napi_create_uint32(env, OVS_EC_M_MAX, &m_max);
  napi_set_named_property(env, limits, "kMax", k_max);
  napi_set_named_property(env, limits, "mMax", m_max);
  napi_property_descriptor properties[] = {
      {"genCauchyMatrix", NULL, gen_cauchy_matrix, NULL, NULL, NULL, napi_enumerable, NULL},
      {"initTables", NULL, init_tables, NULL, NULL, NULL, napi_enumerable, NULL},
      {"decodeMatrix", NULL, decode_matrix, NULL, NULL, NULL, napi_enumerable, NULL},
      {"encodeData", NULL, encode_data, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crc32c", NULL, crc32c, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crc32cBlocks", NULL, crc32c_blocks, NULL, NULL, NULL, napi_enumerable, NULL},
      {"crc32cSealRecords", NULL, crc32c_seal_records, NULL, NULL, NULL, napi_enumerable, NULL},
      {"preadNoWait", NULL, pread_nowait, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dropCachedPages", NULL, drop_cached_pages, NULL, NULL, NULL, napi_enumerable, NULL},
      {"allocAligned", NULL, alloc_aligned, NULL, NULL, NULL, napi_enumerable, NULL},
      {"limits", NULL, NULL, NULL, NULL, limits, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}
