// A child process for embedded-store.test.ts (compiled to dist/ by tsc; the test runs that file):
//   writer DIR  opens the store, prints "READY <pid>", then runs 4 concurrent writers doing acknowledged
//               puts and sequences, printing "ACK <key>" once each call has resolved (durable), forever.
//   hold DIR    opens the store, prints "READY <pid>" and keeps it open until killed.
// stdout is a pipe, which Node writes synchronously on Linux: a printed ACK is in the pipe when the
// next write starts, so the parent sees every acknowledgement made before it kills this process.
// Not part of the store's public face.

import { EmbeddedStore } from "./embedded-store.js";

/** The value every writer stores under `key`; the test has the same function and checks it byte for byte. */
function crashTestValue(key: string): Buffer {
  return Buffer.from(`value of ${key};`.repeat(16), "utf8");
}

const writersCount = 4;

async function main(): Promise<void> {
  const [mode, dir] = process.argv.slice(2);
  if ((mode !== "writer" && mode !== "hold") || dir === undefined) {
    process.stderr.write("usage: embedded-store.child.js writer|hold DIR\n");
    process.exit(2);
  }
  const store = await EmbeddedStore.open({ dir });
  process.stdout.write(`READY ${process.pid}\n`);
  if (mode === "hold") {
    setInterval(() => undefined, 1000);
    return;
  }
  const writer = async (writerIndex: number): Promise<void> => {
    for (let index = 0; ; index++) {
      const key = `w${writerIndex}/${String(index).padStart(8, "0")}`;
      if (index % 2 === 0) {
        await store.put(key, crashTestValue(key));
      } else {
        await store.sequence(
          [{ kind: "absent", key }],
          [
            { kind: "put", key, value: crashTestValue(key) },
            { kind: "put", key: `last/w${writerIndex}`, value: Buffer.from(key, "utf8") },
          ],
        );
      }
      process.stdout.write(`ACK ${key}\n`);
    }
  };
  await Promise.all(Array.from({ length: writersCount }, (_, writerIndex) => writer(writerIndex)));
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`);
  process.exit(1);
});
