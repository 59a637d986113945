// The object backend the vDisk service uses on a node with ALBA: the node's AlbaBackend, except that a
// namespace created while a vDisk of a vPool is being created gets that vPool's preset (the vDisk's
// volume creates its namespace deep inside VDiskService.create; the preset travels there in an
// AsyncLocalStorage context set by the model, so the vDisk service needs no notion of presets).
// Everything else is passed through unchanged. Imported by node.ts and the model service.

import { AsyncLocalStorage } from "node:async_hooks";
import type { ByteRange, ListOptions, ListPage, ObjectAssert, ObjectBackend, ObjectUpdate } from "../../backend/index.js";

const presetContext = new AsyncLocalStorage<{ preset: string }>();

/** Runs `work` so that namespaces it creates through a VPoolBackend get `preset` (when defined). */
export function withNamespacePreset<T>(preset: string | undefined, work: () => Promise<T>): Promise<T> {
  return preset === undefined ? work() : presetContext.run({ preset }, work);
}

export class VPoolBackend implements ObjectBackend {
  constructor(
    private readonly inner: ObjectBackend,
    /** Creates a namespace under a named preset (the ALBA manager's createNamespace). */
    private readonly createWithPreset: (namespace: string, preset: string) => Promise<unknown>,
  ) {}

  get description(): string {
    return this.inner.description;
  }

  get releasesDataOnReturn(): boolean | undefined {
    return this.inner.releasesDataOnReturn;
  }

  get linksFiles(): boolean | undefined {
    return this.inner.linksFiles;
  }

  async createNamespace(namespace: string): Promise<void> {
    const context = presetContext.getStore();
    if (context === undefined) return this.inner.createNamespace(namespace);
    await this.createWithPreset(namespace, context.preset);
  }

  deleteNamespace(namespace: string): Promise<void> {
    return this.inner.deleteNamespace(namespace);
  }
  namespaceExists(namespace: string): Promise<boolean> {
    return this.inner.namespaceExists(namespace);
  }
  listNamespaces(options?: ListOptions): Promise<ListPage> {
    return this.inner.listNamespaces(options);
  }
  put(namespace: string, name: string, data: Uint8Array): Promise<void> {
    return this.inner.put(namespace, name, data);
  }
  get(namespace: string, name: string): Promise<Buffer> {
    return this.inner.get(namespace, name);
  }
  getRanges(namespace: string, name: string, ranges: readonly ByteRange[]): Promise<Buffer[]> {
    return this.inner.getRanges(namespace, name, ranges);
  }
  sizeBytes(namespace: string, name: string): Promise<number | undefined> {
    return this.inner.sizeBytes(namespace, name);
  }
  exists(namespace: string, name: string): Promise<boolean> {
    return this.inner.exists(namespace, name);
  }
  delete(namespace: string, name: string): Promise<boolean> {
    return this.inner.delete(namespace, name);
  }
  list(namespace: string, options?: ListOptions): Promise<ListPage> {
    return this.inner.list(namespace, options);
  }
  apply(namespace: string, asserts: readonly ObjectAssert[], updates: readonly ObjectUpdate[]): Promise<void> {
    return this.inner.apply(namespace, asserts, updates);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
