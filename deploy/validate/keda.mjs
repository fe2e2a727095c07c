// Validates KEDA custom resources against the schemas of npm @kubernetes-models/keda (generated
// from KEDA's Go API types: required fields, types, enums). Kubernetes' own schemas know no CRDs,
// so deploy/validate/check.py sends the keda.sh objects here.
// Input: a JSON array of objects on stdin. Prints one line per object; exits 1 if any fails.
import { readFileSync } from "node:fs";
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";

const KINDS = {
  "keda.sh/v1alpha1/ScaledObject": keda.ScaledObject,
  "keda.sh/v1alpha1/ScaledJob": keda.ScaledJob,
  "keda.sh/v1alpha1/TriggerAuthentication": keda.TriggerAuthentication,
  "keda.sh/v1alpha1/ClusterTriggerAuthentication": keda.ClusterTriggerAuthentication,
};

let failed = 0;
for (const doc of JSON.parse(readFileSync(0, "utf8"))) {
  const name = `${doc.kind}/${doc.metadata?.name}`;
  const Model = KINDS[`${doc.apiVersion}/${doc.kind}`];
  if (!Model) {
    console.log(`FAIL ${name}: no KEDA schema for ${doc.apiVersion} ${doc.kind}`);
    failed += 1;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok ${name} (KEDA ${doc.apiVersion})`);
  } catch (err) {
    console.log(`FAIL ${name}: ${err.message}`);
    failed += 1;
  }
}
process.exit(failed ? 1 : 0);
