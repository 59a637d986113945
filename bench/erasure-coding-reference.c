// Reference for bench/erasure-coding.ts: Reed-Solomon encode and decode with Intel ISA-L called directly
// from C, measured exactly as the Node side measures our addon (same matrix, same buffers, same work per
// call). Compiled by the benchmark with `gcc -O2 … -lisal` against Debian's libisal-dev; not shipped.
//
// Usage: erasure-coding-reference K M CHUNK_BYTES REPETITIONS MIN_MS
// Prints one JSON line: {"k":…,"m":…,"chunkBytes":…,"encodeGBps":[…],"decodeGBps":[…]}, where each value
// is one repetition: bytes of object data (k fragments) per CPU second (CLOCK_PROCESS_CPUTIME_ID) / 1e9,
// each repetition running at least MIN_MS of CPU time. Decode loses the first m data fragments and
// rebuilds them from the k survivors, building the decode matrix (gf_invert_matrix) on every call.

#include <isa-l/erasure_code.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define K_MAX 32
#define M_MAX 16

static double cpu_seconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static unsigned char *allocate(size_t size) {
  void *memory = NULL;
  if (posix_memalign(&memory, 64, size) != 0) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return memory;
}

static void decode_once(int k, int m, int length, const unsigned char *encode_matrix, unsigned char **survivors,
                        const int *survivor_indices, unsigned char **outputs, const int *lost_indices, int lost_count) {
  unsigned char chosen[K_MAX * K_MAX], inverse[K_MAX * K_MAX], rows[M_MAX * K_MAX], tables[32 * K_MAX * M_MAX];
  for (int i = 0; i < k; i++) memcpy(&chosen[k * i], &encode_matrix[k * survivor_indices[i]], (size_t)k);
  if (gf_invert_matrix(chosen, inverse, k) != 0) {
    fprintf(stderr, "singular matrix\n");
    exit(1);
  }
  for (int t = 0; t < lost_count; t++) memcpy(&rows[k * t], &inverse[k * lost_indices[t]], (size_t)k);
  ec_init_tables(k, lost_count, rows, tables);
  ec_encode_data(length, k, lost_count, tables, survivors, outputs);
  (void)m;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s K M CHUNK_BYTES REPETITIONS MIN_MS\n", argv[0]);
    return 2;
  }
  int k = atoi(argv[1]), m = atoi(argv[2]), chunk_bytes = atoi(argv[3]), repetitions = atoi(argv[4]);
  double min_seconds = atof(argv[5]) / 1000.0;
  if (k < 1 || k > K_MAX || m < 1 || m > M_MAX || m > k || chunk_bytes < k || repetitions < 1 || repetitions > 99) {
    fprintf(stderr, "arguments out of range\n");
    return 2;
  }
  int length = (chunk_bytes + k - 1) / k;
  unsigned char *fragments[K_MAX + M_MAX], *outputs[M_MAX];
  unsigned int state = 0x9e3779b9u;
  for (int i = 0; i < k + m; i++) {
    fragments[i] = allocate((size_t)length);
    for (int b = 0; b < length; b++) {
      state ^= state << 13;
      state ^= state >> 17;
      state ^= state << 5;
      fragments[i][b] = (unsigned char)state;
    }
  }
  for (int i = 0; i < m; i++) outputs[i] = allocate((size_t)length);

  unsigned char encode_matrix[(K_MAX + M_MAX) * K_MAX], tables[32 * K_MAX * M_MAX];
  gf_gen_cauchy1_matrix(encode_matrix, k + m, k);
  ec_init_tables(k, m, &encode_matrix[k * k], tables);

  // Decode setup: the first m data fragments are lost; survivors are fragments m .. k+m-1.
  int survivor_indices[K_MAX], lost_indices[M_MAX];
  unsigned char *survivors[K_MAX];
  for (int i = 0; i < k; i++) {
    survivor_indices[i] = m + i;
    survivors[i] = fragments[m + i];
  }
  for (int i = 0; i < m; i++) lost_indices[i] = i;

  // Correctness first: encode, rebuild, compare.
  ec_encode_data(length, k, m, tables, fragments, &fragments[k]);
  decode_once(k, m, length, encode_matrix, survivors, survivor_indices, outputs, lost_indices, m);
  for (int i = 0; i < m; i++) {
    if (memcmp(outputs[i], fragments[i], (size_t)length) != 0) {
      fprintf(stderr, "decode mismatch on fragment %d\n", i);
      return 1;
    }
  }

  double encode_rates[99], decode_rates[99];
  double data_bytes = (double)length * k;
  for (int r = 0; r < repetitions; r++) {
    long iterations = 0;
    double start = cpu_seconds(), elapsed;
    do {
      for (int i = 0; i < 16; i++) ec_encode_data(length, k, m, tables, fragments, &fragments[k]);
      iterations += 16;
      elapsed = cpu_seconds() - start;
    } while (elapsed < min_seconds);
    encode_rates[r] = data_bytes * (double)iterations / elapsed / 1e9;

    iterations = 0;
    start = cpu_seconds();
    do {
      for (int i = 0; i < 16; i++) decode_once(k, m, length, encode_matrix, survivors, survivor_indices, outputs, lost_indices, m);
      iterations += 16;
      elapsed = cpu_seconds() - start;
    } while (elapsed < min_seconds);
    decode_rates[r] = data_bytes * (double)iterations / elapsed / 1e9;
  }

  printf("{\"k\":%d,\"m\":%d,\"chunkBytes\":%d,\"encodeGBps\":[", k, m, chunk_bytes);
  for (int r = 0; r < repetitions; r++) printf("%s%.4f", r ? "," : "", encode_rates[r]);
  printf("],\"decodeGBps\":[");
  for (int r = 0; r < repetitions; r++) printf("%s%.4f", r ? "," : "", decode_rates[r]);
  printf("]}\n");
  return 0;
}
