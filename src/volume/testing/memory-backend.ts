// An in-memory ObjectBackend for the volume engine's unit tests (fast, and able to inject faults:
// failing puts, flipped bytes). Front-door tests use the real LocalBackend.

import { OvsError } from "../../base/index.js";
import type { ByteRange, ListOptions, ListPage, ObjectAssert, ObjectBackend, ObjectUpdate } from "../../backend/index.js";

export class MemoryBackend implements ObjectBackend {
  readonly description = "memory";
  readonly releasesDataOnReturn = true; // puts copy the data
  readonly namespaces = new Map<string, Map<string, Buffer>>();
  failPuts = false;
  putCount = 0;
  getRangeCount = 0;

  async createNamespace(namespace: string): Promise<void> {
    if (this.namespaces.has(namespace)) throw new OvsError("ALREADY_EXISTS", `namespace ${namespace} exists`);
    this.namespaces.set(namespace, new Map());
  }
  async deleteNamespace(namespace: string): Promise<void> {
    if (!this.namespaces.delete(namespace)) throw new OvsError("NOT_FOUND", `no namespace ${namespace}`);
  }
  async namespaceExists(namespace: string): Promise<boolean> {
    return this.namespaces.has(namespace);
  }
  async listNamespaces(): Promise<ListPage> {
    return { names: [...this.namespaces.keys()].sort(), more: false };
  }
  async put(namespace: string, name: string, data: Uint8Array): Promise<void> {
    if (this.failPuts) throw new OvsError("UNAVAILABLE", "injected put failure");
    this.putCount++;
    this.ns(namespace).set(name, Buffer.from(data));
  }
  async get(namespace: string, name: string): Promise<Buffer> {
    const value = this.ns(namespace).get(name);
    if (!value) throw new OvsError("NOT_FOUND", `no object ${name}`);
    return Buffer.from(value);
  }
  async getRanges(namespace: string, name: string, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    this.getRangeCount++;
    const value = await this.get(namespace, name);
    return ranges.map((r) => {
      if (r.offsetBytes + r.lengthBytes > value.length) throw new OvsError("OUT_OF_RANGE", "range past the end");
      return Buffer.from(value.subarray(r.offsetBytes, r.offsetBytes + r.lengthBytes));
    });
  }
  async sizeBytes(namespace: string, name: string): Promise<number | undefined> {
    return this.ns(namespace).get(name)?.length;
  }
  async exists(namespace: string, name: string): Promise<boolean> {
    return this.ns(namespace).has(name);
  }
  async delete(namespace: string, name: string): Promise<boolean> {
    return this.ns(namespace).delete(name);
  }
  async list(namespace: string, options: ListOptions = {}): Promise<ListPage> {
    const names = [...this.ns(namespace).keys()].filter((n) => n.startsWith(options.prefix ?? "") && (options.after === undefined || n > options.after)).sort();
    const limit = options.limit ?? 1000;
    return { names: names.slice(0, limit), more: names.length > limit };
  }
  async apply(namespace: string, asserts: readonly ObjectAssert[], updates: readonly ObjectUpdate[]): Promise<void> {
    const objects = this.ns(namespace);
    if (this.failPuts && updates.some((u) => u.kind === "put")) throw new OvsError("UNAVAILABLE", "injected put failure");
    this.putCount += updates.filter((u) => u.kind === "put").length;
    for (const a of asserts) {
      const value = objects.get(a.name);
      if (a.kind === "absent" ? value !== undefined : !value || !value.equals(a.value)) throw new OvsError("ASSERT_FAILED", `assert on ${a.name} failed`);
    }
    for (const u of updates) {
      if (u.kind === "put") objects.set(u.name, Buffer.from(u.data));
      else objects.delete(u.name);
    }
  }
  async close(): Promise<void> {}

  private ns(namespace: string): Map<string, Buffer> {
    const objects = this.namespaces.get(namespace);
    if (!objects) throw new OvsError("NOT_FOUND", `no namespace ${namespace}`);
    return objects;
  }
}
