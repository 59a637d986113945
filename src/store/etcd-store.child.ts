// A child process for etcd-store.test.ts (compiled to dist/ by tsc; the test runs that file):
//   campaign ENDPOINTS PREFIX ELECTION CANDIDATE TTL_MS
//     opens an EtcdStore on the comma-separated ENDPOINTS, campaigns, prints "LEADER <candidate>" once it
//     leads and "FOLLOWER <candidate>" when it does not, and runs until killed (the test kills it with
//     SIGKILL to show that its lease expires and another candidate takes over).
// Not part of the store's public face.

import { EtcdStore } from "./etcd-store.js";

async function main(): Promise<void> {
  const [mode, endpoints, prefix, election, candidate, ttlText] = process.argv.slice(2);
  if (mode !== "campaign" || endpoints === undefined || prefix === undefined || election === undefined || candidate === undefined || ttlText === undefined) {
    process.stderr.write("usage: etcd-store.child.js campaign ENDPOINTS PREFIX ELECTION CANDIDATE TTL_MS\n");
    process.exit(2);
  }
  const store = await EtcdStore.open({ endpoints: endpoints.split(","), prefix });
  const campaign = await store.campaign(election, candidate, Number(ttlText));
  const report = (isLeader: boolean): void => {
    process.stdout.write(`${isLeader ? "LEADER" : "FOLLOWER"} ${candidate}\n`);
  };
  campaign.onChange(report);
  report(campaign.isLeader());
  setInterval(() => undefined, 1000);
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`);
  process.exit(1);
});
