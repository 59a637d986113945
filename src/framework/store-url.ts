// Which cluster store a node uses, from `--store`:
//   embedded             the embedded store in <data dir>/store (single node; the default)
//   embedded:/some/dir   the embedded store in that directory
//   etcd://h1:2379,h2:2379[/prefix]   an etcd cluster (keys under the prefix, default "ovs/")
// Bad URLs are refused with one sentence saying what is accepted.

import path from "node:path";
import { OvsError, type Logger } from "../base/index.js";
import { EmbeddedStore, EtcdStore, type ClusterStore } from "../store/index.js";

export type StoreSpec = { kind: "embedded"; dir: string } | { kind: "etcd"; endpoints: string[]; prefix: string };

export function parseStoreUrl(url: string, dataDir: string): StoreSpec {
  if (url === "embedded") return { kind: "embedded", dir: path.join(dataDir, "store") };
  if (url.startsWith("embedded:")) {
    const dir = url.slice("embedded:".length);
    if (dir === "") throw new OvsError("INVALID_ARGUMENT", "embedded: needs a directory, e.g. embedded:/var/lib/ovs/store.");
    return { kind: "embedded", dir };
  }
  const match = /^etcd:\/\/([^/]+)(\/.*)?$/.exec(url);
  if (match) {
    const hosts = match[1]!.split(",").filter((h) => h !== "");
    if (hosts.length === 0 || hosts.some((h) => !/^[A-Za-z0-9.\-[\]:]+:\d+$/.test(h))) {
      throw new OvsError("INVALID_ARGUMENT", `"${url}" lists no valid host:port; use e.g. etcd://10.0.0.1:2379,10.0.0.2:2379.`);
    }
    const prefixPath = (match[2] ?? "").replace(/^\//, "");
    const prefix = prefixPath === "" ? "ovs/" : prefixPath.endsWith("/") ? prefixPath : `${prefixPath}/`;
    return { kind: "etcd", endpoints: hosts.map((h) => `http://${h}`), prefix };
  }
  throw new OvsError("INVALID_ARGUMENT", `"${url}" is not a store; use embedded, embedded:DIR or etcd://HOST:PORT[,HOST:PORT...][/PREFIX].`);
}

export async function openStore(spec: StoreSpec, log: Logger): Promise<ClusterStore> {
  if (spec.kind === "embedded") return EmbeddedStore.open({ dir: spec.dir, logger: log });
  return EtcdStore.open({ endpoints: spec.endpoints, prefix: spec.prefix, logger: log });
}
