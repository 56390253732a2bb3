// Validates custom resources against the schemas of their published CRDs, as compiled by the
// @kubernetes-models packages (package.json pins them; deploy/dev.sh installs them with npm ci).
//   node validate.mjs NODE_MODULES_DIR < resources.json
// stdin: a JSON array of resources. stdout: a JSON array with one entry per resource,
// {"kind": ..., "name": ..., "errors": [...]} (errors empty when valid). Exit 2 on an unknown kind.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const MODELS = {
  "keda.sh/v1alpha1/ScaledObject": "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject.js",
  "keda.sh/v1alpha1/TriggerAuthentication": "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication.js",
  "monitoring.coreos.com/v1/PodMonitor":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor.js",
  "monitoring.coreos.com/v1/ServiceMonitor":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
  "monitoring.coreos.com/v1/PrometheusRule":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js",
};

const resources = JSON.parse(readFileSync(0, "utf8"));
const report = [];
for (const resource of resources) {
  const key = `${resource.apiVersion}/${resource.kind}`;
  if (!(key in MODELS)) {
    console.error(`no schema for ${key}`);
    process.exit(2);
  }
  const module = await import(pathToFileURL(join(modules, MODELS[key])).href);
  const Model = module[resource.kind];
  const errors = [];
  try {
    new Model(resource).validate();
  } catch (error) {
    errors.push(error.message);
  }
  report.push({ kind: resource.kind, name: resource.metadata?.name, errors });
}
console.log(JSON.stringify(report));
