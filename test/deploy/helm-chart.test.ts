/**
 * The Helm chart, checked without helm or a cluster:
 * 1. deploy/helm/rendered/ holds real `helm template` output (and NOTES from a client-side dry
 *    run), made by deploy/helm/render.sh. The subset renderer (helm-template.ts) must reproduce
 *    it document for document, so a template change that was not re-rendered with helm fails here.
 * 2. The rendered manifests have what the deployment needs: probes, ports, env, security
 *    context, GPU resources, graceful termination matching the server's drain, monitoring.
 * 3. Value combinations without a helm copy are rendered by the subset renderer and checked the same way.
 * Where a helm binary exists (HELM=/path/to/helm, or helm on PATH), it is also run live.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { configKnobs } from '../../src/server/config.ts';
import { shutdownMarginMs } from '../../src/server/main.ts';
import { loadChart, parseManifests, parseValues, renderChart, splitHelmOutput } from './helm-template.ts';
import { chartDir, dashboardPath, renderedDir } from './queried-metrics.ts';

/** A Kubernetes object as parsed YAML, checked field by field. */
type Doc = Record<string, any>;

const release = { releaseName: 'mop-serve', namespace: 'mop' };
const chart = loadChart(chartDir);

/** The value sets with a helm-rendered reference copy (keep in step with deploy/helm/render.sh). */
const cases = [
  { name: 'default', values: {} },
  { name: 'gpu', values: parseValues(fs.readFileSync(path.join(chartDir, 'ci/gpu-values.yaml'), 'utf8')) },
];

function renderDocs(values: Record<string, unknown> = {}): { docs: Doc[]; notes: string } {
  const r = renderChart(chart, { ...release, values });
  return { docs: [...r.manifests.values()].flatMap((t) => parseManifests(t)), notes: r.notes };
}

const byKind = (docs: Doc[], kind: string) => docs.filter((d) => d.kind === kind);
const one = (docs: Doc[], kind: string): Doc => {
  const found = byKind(docs, kind);
  assert.equal(found.length, 1, `exactly one ${kind}, found ${found.length}`);
  return found[0]!;
};
const serverContainer = (docs: Doc[]): Doc => {
  const c = (one(docs, 'Deployment').spec.template.spec.containers as Doc[]).find((x) => x.name === 'server');
  assert.ok(c, 'a container named server');
  return c;
};
/** The client Service (the release's full name), beside the optional `<name>-admin` one. */
const apiService = (docs: Doc[]): Doc => {
  const svc = byKind(docs, 'Service').find((d) => d.metadata.name === 'mop-serve');
  assert.ok(svc, 'the client Service mop-serve');
  return svc;
};
const named = (docs: Doc[], kind: string, name: string): Doc => {
  const d = byKind(docs, kind).find((x) => x.metadata.name === name);
  assert.ok(d, `${kind} ${name}`);
  return d;
};
const secretRef = (c: Doc, env: string): Doc | undefined => (c.env as Doc[] | undefined)?.find((e) => e.name === env)?.valueFrom.secretKeyRef;
const configEnv = (docs: Doc[]): Record<string, unknown> => byKind(docs, 'ConfigMap').find((c) => !c.metadata.name.endsWith('-dashboard'))!.data as Record<string, unknown>;

describe('deploy/helm/rendered (helm output) and the subset renderer', () => {
  for (const c of cases) {
    it(`renders the ${c.name} values exactly as helm did`, () => {
      const helmText = fs.readFileSync(path.join(renderedDir, `${c.name}.yaml`), 'utf8');
      assert.match(helmText.split('\n')[1]!, /^# Rendered by helm v\d+\.\d+\.\d+/, 'the reference copy says which helm rendered it');
      const helm = splitHelmOutput(helmText);
      const mine = renderChart(chart, { ...release, values: c.values });
      assert.deepEqual([...mine.manifests.keys()].sort(), [...helm.keys()].sort(), 'the same templates render to something');
      for (const [source, text] of mine.manifests) {
        const docs = parseManifests(text);
        assert.ok(isDeepStrictEqual(docs, helm.get(source)), `${source} differs from helm's rendering: re-run deploy/helm/render.sh with helm, or the renderer is wrong\n${JSON.stringify(docs).slice(0, 400)}\n${JSON.stringify(helm.get(source)).slice(0, 400)}`);
      }
      const helmNotes = fs.readFileSync(path.join(renderedDir, `${c.name}.NOTES.txt`), 'utf8');
      assert.equal(mine.notes.trim(), helmNotes.trim(), 'NOTES.txt');
    });
  }

  it('keeps the chart to the subset: every template parses (loadChart throws otherwise)', () => {
    assert.ok(chart.templatePaths.length >= 10, chart.templatePaths.join(', '));
  });
});

for (const c of cases) {
  describe(`the ${c.name} manifests (helm's rendering)`, () => {
    const docs = [...splitHelmOutput(fs.readFileSync(path.join(renderedDir, `${c.name}.yaml`), 'utf8')).values()].flat() as Doc[];
    const gpu = c.name === 'gpu';

    it('are Kubernetes objects with DNS-label names and the chart labels', () => {
      for (const d of docs) {
        assert.ok(d.apiVersion && d.kind && d.metadata?.name, JSON.stringify(d).slice(0, 120));
        assert.match(d.metadata.name, /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, d.metadata.name);
        assert.equal(d.metadata.labels?.['app.kubernetes.io/instance'], 'mop-serve', `${d.kind} labels`);
        assert.equal(d.metadata.labels?.['app.kubernetes.io/name'], 'mop-serve');
      }
    });

    it('probe liveness on /health and readiness on /ready, with a start-up probe long enough to load and prune', () => {
      const s = serverContainer(docs);
      assert.equal(s.livenessProbe.httpGet.path, '/health');
      assert.equal(s.readinessProbe.httpGet.path, '/ready');
      assert.equal(s.startupProbe.httpGet.path, '/ready');
      for (const p of [s.livenessProbe, s.readinessProbe, s.startupProbe]) assert.equal(p.httpGet.port, 'http');
      const startupWindow = s.startupProbe.periodSeconds * s.startupProbe.failureThreshold;
      assert.ok(startupWindow >= 600, `start-up window ${startupWindow}s; a prune at start-up takes minutes`);
      assert.ok(startupWindow > s.livenessProbe.periodSeconds * s.livenessProbe.failureThreshold);
    });

    it('listen on the named port the Service and the ServiceMonitor use', () => {
      const s = serverContainer(docs);
      const port = (s.ports as Doc[]).find((p) => p.name === 'http');
      assert.equal(port?.containerPort, Number(configEnv(docs).PORT));
      const svc = apiService(docs);
      assert.equal(svc.spec.ports[0].targetPort, 'http');
      const podLabels = one(docs, 'Deployment').spec.template.metadata.labels;
      for (const [k, v] of Object.entries(svc.spec.selector as Record<string, string>)) assert.equal(podLabels[k], v, `Service selector ${k}`);
      const sm = one(docs, 'ServiceMonitor');
      assert.equal(sm.spec.endpoints[0].port, svc.spec.ports[0].name);
      assert.equal(sm.spec.endpoints[0].path, '/metrics');
      for (const [k, v] of Object.entries(sm.spec.selector.matchLabels as Record<string, string>)) assert.equal(svc.metadata.labels[k], v, `ServiceMonitor selector ${k}`);
    });

    it('take every server setting from the environment, as strings the server parses', () => {
      const s = serverContainer(docs);
      const cm = byKind(docs, 'ConfigMap').find((x) => x.metadata.name === s.envFrom[0].configMapRef.name);
      assert.ok(cm, 'envFrom names the ConfigMap');
      const known = new Set(configKnobs.map((k) => k.env));
      const entries = Object.entries(cm.data as Record<string, unknown>);
      assert.ok(entries.length > 0, 'the ConfigMap holds server settings');
      for (const [name, value] of entries) {
        assert.equal(typeof value, 'string', `${name} must be a string in a ConfigMap`);
        assert.doesNotMatch(String(value), /^\d+(\.\d+)?e[+-]\d+$/, `${name}=${String(value)}: a number printed in Go's exponent form`);
        assert.ok(known.has(name), `${name} is no server setting (src/server/config.ts)`);
      }
      assert.equal(s.args[0], 'serve');
    });

    it('terminate gracefully: the grace period covers preStop, the server drain (MOP_SHUTDOWN_GRACE_MS) and exit', () => {
      const spec = one(docs, 'Deployment').spec.template.spec;
      const drainSeconds = Number(configEnv(docs).MOP_SHUTDOWN_GRACE_MS) / 1000;
      const preStop = serverContainer(docs).lifecycle?.preStop?.exec?.command as string[] | undefined;
      const preStopSeconds = preStop ? Number(preStop[1]) : 0;
      assert.deepEqual(preStop?.[0], 'sleep');
      assert.ok(spec.terminationGracePeriodSeconds > preStopSeconds + drainSeconds, `${spec.terminationGracePeriodSeconds}s ≤ ${preStopSeconds}s preStop + ${drainSeconds}s drain`);
      assert.ok(spec.terminationGracePeriodSeconds <= preStopSeconds + drainSeconds + 30, 'and not much longer');
      // The server's own bound on a shutdown: the grace period plus shutdownMarginMs (main.ts).
      assert.ok(spec.terminationGracePeriodSeconds >= preStopSeconds + drainSeconds + shutdownMarginMs / 1000, `room for the server's shutdown margin (${shutdownMarginMs} ms)`);
    });

    it('run as non-root, without privilege escalation or capabilities, on a read-only root filesystem', () => {
      const spec = one(docs, 'Deployment').spec.template.spec;
      assert.equal(spec.securityContext.runAsNonRoot, true);
      assert.ok(spec.securityContext.runAsUser > 0);
      assert.equal(spec.securityContext.seccompProfile.type, 'RuntimeDefault');
      assert.equal(spec.automountServiceAccountToken, false);
      const sc = serverContainer(docs).securityContext;
      assert.equal(sc.allowPrivilegeEscalation, false);
      assert.equal(sc.readOnlyRootFilesystem, true);
      assert.deepEqual(sc.capabilities.drop, ['ALL']);
      assert.ok((serverContainer(docs).volumeMounts as Doc[]).some((m) => m.mountPath === '/tmp'), 'a writable /tmp');
    });

    it(gpu ? 'request a GPU and run the CUDA image with MOP_DEVICE=cuda' : 'request no GPU and run the CPU image', () => {
      const s = serverContainer(docs);
      const env = configEnv(docs);
      if (gpu) {
        assert.equal(s.resources.limits['nvidia.com/gpu'], 1);
        assert.equal(env.MOP_DEVICE, 'cuda');
        assert.match(s.image, /:0\.1\.0-cuda$/);
        assert.equal(one(docs, 'Deployment').spec.template.spec.runtimeClassName, 'nvidia');
      } else {
        assert.equal(s.resources.limits?.['nvidia.com/gpu'], undefined);
        assert.equal(env.MOP_DEVICE, 'cpu');
        assert.match(s.image, /:0\.1\.0$/);
      }
      assert.ok(s.resources.requests.cpu && s.resources.requests.memory && s.resources.limits.memory, 'requests and a memory limit');
    });

    it(gpu ? 'wire the admin token Secret, the models volume, the model store and the HPA' : 'create no Secret, volume, model store or HPA unless asked', () => {
      const s = serverContainer(docs);
      const deployment = one(docs, 'Deployment');
      if (gpu) {
        const secret = named(docs, 'Secret', 'mop-serve-admin');
        const ref = secretRef(s, 'MOP_ADMIN_TOKEN')!;
        assert.equal(ref.name, secret.metadata.name);
        assert.ok(ref.key in secret.stringData);
        const volume = (deployment.spec.template.spec.volumes as Doc[]).find((v) => v.name === 'models');
        assert.equal(volume?.persistentVolumeClaim.claimName, 'llama-weights');
        assert.ok((s.volumeMounts as Doc[]).some((m) => m.name === 'models' && m.mountPath === '/models' && m.readOnly === true));
        // The model store: one claim every replica mounts read-write, named in MOP_MODEL_STORE.
        const pvc = one(docs, 'PersistentVolumeClaim');
        assert.deepEqual(pvc.spec.accessModes, ['ReadWriteMany'], 'autoscaling: several pods share the store');
        assert.equal(pvc.metadata.annotations['helm.sh/resource-policy'], 'keep');
        assert.equal(pvc.metadata.annotations['helm.sh/hook'], 'pre-install', 'created before the pre-install Job that writes into it');
        const store = (deployment.spec.template.spec.volumes as Doc[]).find((v) => v.name === 'model-store');
        assert.equal(store?.persistentVolumeClaim.claimName, pvc.metadata.name);
        const mount = (s.volumeMounts as Doc[]).find((m) => m.name === 'model-store');
        assert.ok(mount && !mount.readOnly);
        assert.equal(configEnv(docs).MOP_MODEL_STORE, mount.mountPath);
        assert.equal(configEnv(docs).MOP_MODEL_STORE_POLL_MS, '3000');
        assert.equal(configEnv(docs).MOP_MODEL_STORE_MAX_BYTES, '80000000000');
        assert.match(String(configEnv(docs).MOP_MODEL), /^\/models\//);
        const hpa = one(docs, 'HorizontalPodAutoscaler');
        assert.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name);
        assert.equal(deployment.spec.replicas, undefined, 'the HPA owns the replica count');
      } else {
        assert.equal(byKind(docs, 'Secret').length, 0);
        assert.equal(s.env, undefined, 'no MOP_ADMIN_TOKEN, no MOP_API_KEY: the admin API is off and /v1 open');
        assert.equal(byKind(docs, 'PersistentVolumeClaim').length, 0);
        assert.equal(byKind(docs, 'Job').length, 0);
        assert.equal(configEnv(docs).MOP_MODEL_STORE, undefined);
        assert.equal(byKind(docs, 'HorizontalPodAutoscaler').length, 0);
        assert.equal(deployment.spec.replicas, 1);
        assert.equal(configEnv(docs).MOP_MODEL, undefined, 'the bundled model');
      }
    });

    if (gpu) {
      it('pre-populate the store with a pre-install/pre-upgrade hook Job that prunes as the pods would', () => {
        const job = one(docs, 'Job');
        assert.equal(job.metadata.annotations['helm.sh/hook'], 'pre-install,pre-upgrade');
        assert.ok(Number(job.metadata.annotations['helm.sh/hook-weight']) > Number(one(docs, 'PersistentVolumeClaim').metadata.annotations['helm.sh/hook-weight']), 'after the claim');
        const pod = job.spec.template.spec;
        const c = pod.containers[0] as Doc;
        const env = configEnv(docs);
        assert.deepEqual(c.args.slice(0, 5), ['prune', '--model-store', env.MOP_MODEL_STORE, '--target', env.MOP_PRUNE_TARGET]);
        const jobEnv = Object.fromEntries((c.env as Doc[]).map((e) => [e.name, e.value]));
        for (const name of ['MOP_MODEL', 'MOP_PREFILL_CHUNK']) assert.equal(jobEnv[name], env[name], `${name} as the pods have it (same store key)`);
        assert.equal(c.image, serverContainer(docs).image);
        const store = (pod.volumes as Doc[]).find((v) => v.name === 'model-store');
        assert.equal(store?.persistentVolumeClaim.claimName, one(docs, 'PersistentVolumeClaim').metadata.name);
        assert.equal(pod.restartPolicy, 'Never');
        assert.equal(pod.securityContext.runAsNonRoot, true);
        const selector = apiService(docs).spec.selector as Record<string, string>;
        const labels = job.spec.template.metadata.labels as Record<string, string>;
        assert.ok(!Object.entries(selector).every(([k, v]) => labels[k] === v), 'the Service never routes to the hook pod');
      });
    }

    it('alert on p99 latency, error ratio, queue saturation and stalled engines, scoped to this release', () => {
      const rule = one(docs, 'PrometheusRule');
      const rules = (rule.spec.groups as Doc[]).flatMap((g) => g.rules as Doc[]);
      const names = rules.map((r) => r.alert);
      for (const want of ['MopServeP99LatencyHigh', 'MopServeErrorRatioHigh', 'MopServeQueueSaturated', 'MopServeEngineStalled']) assert.ok(names.includes(want), `alert ${want}`);
      for (const r of rules) {
        assert.ok(r.expr && r.for && r.labels?.severity && r.annotations?.summary, `${r.alert} has expr, for, severity, summary`);
        assert.match(r.expr, /job="mop-serve",namespace="mop"/, `${r.alert} is scoped to the release`);
        assert.match(r.annotations.summary, /\{\{ \$labels\.\w+ \}\}|\{\{ \$value/, `${r.alert} keeps Prometheus' own template syntax`);
      }
      const queue = rules.find((r) => r.alert === 'MopServeQueueSaturated')!;
      assert.match(queue.expr, new RegExp(`/ ${String(configEnv(docs).MOP_MAX_QUEUE)} >`), 'queue saturation is relative to MOP_MAX_QUEUE');
      assert.match(rules.find((r) => r.alert === 'MopServeP99LatencyHigh')!.expr, /histogram_quantile\(0\.99,/);
      // Every server-side failure: a 503 (engine died, restarting, stalled) counts as unavailable.
      const failed = /outcome=~"([^"]+)"/.exec(rules.find((r) => r.alert === 'MopServeErrorRatioHigh')!.expr)?.[1]?.split('|').sort();
      assert.deepEqual(failed, ['error', 'timeout', 'unavailable']);
      assert.match(rules.find((r) => r.alert === 'MopServeEngineStalled')!.expr, /^max by \(namespace, pod, model\) \(mop_engine_stalled\{job="mop-serve",namespace="mop"\}\) > 0$/);
    });

    it(gpu ? 'serve /admin on its own port behind a Service of its own, never through the client Service' : 'serve /admin on the API port, with no admin Service', () => {
      const s = serverContainer(docs);
      const client = apiService(docs);
      assert.deepEqual((client.spec.ports as Doc[]).map((p) => p.targetPort), ['http'], 'the client Service exposes the API port only');
      if (gpu) {
        assert.equal(configEnv(docs).MOP_ADMIN_PORT, '9000');
        const port = (s.ports as Doc[]).find((p) => p.name === 'admin');
        assert.equal(port?.containerPort, 9000);
        const admin = named(docs, 'Service', 'mop-serve-admin');
        assert.deepEqual(admin.spec.ports, [{ name: 'admin', port: 9000, targetPort: 'admin', protocol: 'TCP' }]);
        const podLabels = one(docs, 'Deployment').spec.template.metadata.labels;
        for (const [k, v] of Object.entries(admin.spec.selector as Record<string, string>)) assert.equal(podLabels[k], v, `admin Service selector ${k}`);
        // The ServiceMonitor scrapes by port name: the admin Service has no 'http' port, so it is never scraped.
        assert.ok(!(admin.spec.ports as Doc[]).some((p) => p.name === one(docs, 'ServiceMonitor').spec.endpoints[0].port));
      } else {
        assert.equal(configEnv(docs).MOP_ADMIN_PORT, undefined);
        assert.deepEqual(byKind(docs, 'Service').map((d) => d.metadata.name), ['mop-serve']);
        assert.deepEqual((s.ports as Doc[]).map((p) => p.name), ['http']);
      }
    });

    it(gpu ? 'take the API key from a Secret, in the server and in the helm test pod' : 'leave /v1 without an API key', () => {
      const s = serverContainer(docs);
      const testPod = byKind(docs, 'Pod').find((p) => p.metadata.annotations?.['helm.sh/hook'] === 'test')!;
      if (gpu) {
        const secret = named(docs, 'Secret', 'mop-serve-api-key');
        const ref = secretRef(s, 'MOP_API_KEY')!;
        assert.deepEqual(ref, { name: secret.metadata.name, key: 'api-key' });
        assert.ok(ref.key in secret.stringData);
        assert.deepEqual(secretRef(testPod.spec.containers[0], 'MOP_API_KEY'), ref);
        assert.match(testPod.spec.containers[0].args[0], /authorization: 'Bearer ' \+ key/);
        const checksum = one(docs, 'Deployment').spec.template.metadata.annotations['checksum/api-key-secret'];
        assert.match(checksum, /^[0-9a-f]{64}$/, 'a key change rolls the pods');
      } else {
        assert.equal(secretRef(s, 'MOP_API_KEY'), undefined);
        assert.equal(testPod.spec.containers[0].env, undefined);
      }
    });

    it(gpu ? 'let only the chosen peers in: the API port from apiFrom (and the release), the admin port from adminFrom' : 'create no NetworkPolicy unless asked', () => {
      if (!gpu) return assert.equal(byKind(docs, 'NetworkPolicy').length, 0);
      const np = one(docs, 'NetworkPolicy');
      assert.deepEqual(np.spec.policyTypes, ['Ingress']);
      const podLabels = one(docs, 'Deployment').spec.template.metadata.labels;
      for (const [k, v] of Object.entries(np.spec.podSelector.matchLabels as Record<string, string>)) assert.equal(podLabels[k], v, `policy selects the pods by ${k}`);
      const rules = np.spec.ingress as Doc[];
      assert.deepEqual(rules.map((r) => (r.ports as Doc[]).map((p) => p.port)), [['http'], ['admin']]);
      const [api, admin] = rules as [Doc, Doc];
      assert.deepEqual(api.from.slice(1).map((p: Doc) => p.namespaceSelector.matchLabels['kubernetes.io/metadata.name']), ['gateway', 'monitoring']);
      assert.deepEqual(api.from[0], { podSelector: { matchLabels: np.spec.podSelector.matchLabels } }, 'the helm test pod reaches the API');
      assert.deepEqual(admin.from, [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'mop-ops' } }, podSelector: { matchLabels: { app: 'mop-operator' } } }]);
    });

    it('ship the Grafana dashboard in a ConfigMap the sidecar picks up', () => {
      const cm = byKind(docs, 'ConfigMap').find((x) => x.metadata.name.endsWith('-dashboard'));
      assert.ok(cm);
      assert.equal(cm.metadata.labels.grafana_dashboard, '1');
      const [file, json] = Object.entries(cm.data as Record<string, string>)[0]!;
      assert.match(file, /\.json$/);
      assert.deepEqual(JSON.parse(json), JSON.parse(fs.readFileSync(dashboardPath, 'utf8')));
    });
  });
}

describe('other value combinations (subset renderer)', () => {
  it('uses an existing Secret for the admin token without creating one', () => {
    const { docs, notes } = renderDocs({ admin: { existingSecret: 'mop-admin', existingSecretKey: 'token' } });
    assert.equal(byKind(docs, 'Secret').length, 0);
    const ref = (serverContainer(docs).env as Doc[])[0]!.valueFrom.secretKeyRef;
    assert.deepEqual(ref, { name: 'mop-admin', key: 'token' });
    assert.match(notes, /get secret mop-admin/);
    assert.match(notes, /\/admin\/prune -H "Authorization: Bearer \$MOP_ADMIN_TOKEN"/);
  });

  it('uses an existing Secret for the API key without creating one', () => {
    const { docs, notes } = renderDocs({ apiKey: { existingSecret: 'mop-keys', existingSecretKey: 'keys' } });
    assert.equal(byKind(docs, 'Secret').length, 0);
    assert.deepEqual(secretRef(serverContainer(docs), 'MOP_API_KEY'), { name: 'mop-keys', key: 'keys' });
    assert.match(notes, /get secret mop-keys -o jsonpath='\{\.data\.keys\}'/);
    assert.match(notes, /Authorization: Bearer \$MOP_API_KEY/);
  });

  it('wires the admin token and the API key side by side', () => {
    const { docs } = renderDocs({ admin: { token: 'admin-token-of-16+' }, apiKey: { value: 'api-key-of-16-chars' } });
    const env = serverContainer(docs).env as Doc[];
    assert.deepEqual(env.map((e) => e.name), ['MOP_ADMIN_TOKEN', 'MOP_API_KEY']);
    assert.deepEqual(byKind(docs, 'Secret').map((d) => d.metadata.name).sort(), ['mop-serve-admin', 'mop-serve-api-key']);
  });

  it('lets any source reach the API port when apiFrom is empty, and nobody the admin port when adminFrom is', () => {
    const open = one(renderDocs({ networkPolicy: { enabled: true } }).docs, 'NetworkPolicy');
    assert.deepEqual(open.spec.ingress, [{ ports: [{ port: 'http', protocol: 'TCP' }] }], 'no `from`: any source; no admin port without admin.port');
    const closed = one(renderDocs({ networkPolicy: { enabled: true }, admin: { port: 9000 } }).docs, 'NetworkPolicy');
    assert.ok(!(closed.spec.ingress as Doc[]).some((r) => (r.ports as Doc[]).some((p) => p.port === 'admin')), 'no rule for the admin port: nobody reaches it');
    const extra = one(renderDocs({ networkPolicy: { enabled: true, extraIngress: [{ ports: [{ port: 'http' }], from: [{ ipBlock: { cidr: '10.0.0.0/8' } }] }] } }).docs, 'NetworkPolicy');
    assert.deepEqual(extra.spec.ingress[1], { ports: [{ port: 'http' }], from: [{ ipBlock: { cidr: '10.0.0.0/8' } }] });
  });

  it('tells how to reach the admin API on its own port', () => {
    const { docs, notes } = renderDocs({ admin: { token: 'admin-token-of-16+', port: 9100 } });
    assert.equal(configEnv(docs).MOP_ADMIN_PORT, '9100');
    assert.match(notes, /port-forward service\/mop-serve-admin 9100:9100/);
    assert.match(notes, /curl -s localhost:9100\/admin\/prune/);
    assert.doesNotMatch(notes, /localhost:8000\/admin/);
  });

  it('mounts an existing claim without creating one', () => {
    const { docs } = renderDocs({ models: { persistence: { enabled: true, existingClaim: 'llama-weights' } } });
    assert.equal(byKind(docs, 'PersistentVolumeClaim').length, 0);
    const volume = (one(docs, 'Deployment').spec.template.spec.volumes as Doc[]).find((v) => v.name === 'models');
    assert.equal(volume?.persistentVolumeClaim.claimName, 'llama-weights');
  });

  it('renders without the Prometheus Operator and Grafana objects when they are off', () => {
    const { docs, notes } = renderDocs({ metrics: { serviceMonitor: { enabled: false }, prometheusRule: { enabled: false } }, grafanaDashboard: { enabled: false }, tests: { enabled: false } });
    assert.deepEqual(docs.map((d) => d.kind).sort(), ['ConfigMap', 'Deployment', 'Service', 'ServiceAccount']);
    assert.equal(one(docs, 'Deployment').spec.template.metadata.annotations['prometheus.io/scrape'], 'true');
    assert.match(notes, /The ServiceMonitor is off/);
  });

  it('drops the preStop hook at 0 s and still covers the drain', () => {
    const { docs } = renderDocs({ lifecycle: { preStopSleepSeconds: 0 }, server: { shutdownGraceSeconds: 120 } });
    assert.equal(serverContainer(docs).lifecycle, undefined);
    assert.equal(configEnv(docs).MOP_SHUTDOWN_GRACE_MS, '120000');
    assert.equal(one(docs, 'Deployment').spec.template.spec.terminationGracePeriodSeconds, 130);
  });

  it('prints large numbers as integers, not in exponent form', () => {
    const { docs } = renderDocs({ server: { requestTimeoutMs: 86_400_000, maxBodyBytes: 67_108_864 } });
    assert.equal(configEnv(docs).MOP_REQUEST_TIMEOUT_MS, '86400000');
    assert.equal(configEnv(docs).MOP_MAX_BODY_BYTES, '67108864');
  });

  it('gives the store claim ReadWriteMany when several replicas mount it, ReadWriteOnce for one, or the mode set in values', () => {
    const mode = (values: Record<string, unknown>) => one(renderDocs(values).docs, 'PersistentVolumeClaim').spec.accessModes;
    assert.deepEqual(mode({ modelStore: { enabled: true } }), ['ReadWriteOnce']);
    assert.deepEqual(mode({ replicaCount: 3, modelStore: { enabled: true } }), ['ReadWriteMany']);
    assert.deepEqual(mode({ replicaCount: 3, modelStore: { enabled: true, accessMode: 'ReadWriteOncePod' } }), ['ReadWriteOncePod']);
    const plain = one(renderDocs({ modelStore: { enabled: true } }).docs, 'PersistentVolumeClaim');
    assert.equal(plain.metadata.annotations['helm.sh/hook'], undefined, 'without the hook Job the claim is an ordinary release object');
  });

  it('mounts an existing store claim without creating one, and runs the hook Job only with a target', () => {
    const { docs } = renderDocs({ modelStore: { enabled: true, existingClaim: 'shared-store', prepopulate: { enabled: true } } });
    assert.equal(byKind(docs, 'PersistentVolumeClaim').length, 0);
    assert.equal(byKind(docs, 'Job').length, 0, 'no target: nothing to pre-populate');
    const volume = (one(docs, 'Deployment').spec.template.spec.volumes as Doc[]).find((v) => v.name === 'model-store');
    assert.equal(volume?.persistentVolumeClaim.claimName, 'shared-store');
    const withTarget = renderDocs({ modelStore: { enabled: true, existingClaim: 'shared-store', prepopulate: { enabled: true, target: 0.3, extraArgs: ['--recovery', 'none'] } } });
    assert.deepEqual(one(withTarget.docs, 'Job').spec.template.spec.containers[0].args, ['prune', '--model-store', '/store', '--target', '0.3', '--recovery', 'none']);
  });

  it('explains the declarative target and the runtime re-prune, and how a store carries the latter to every replica', () => {
    const plain = renderDocs({ admin: { token: 't' } }).notes;
    assert.match(plain, /declarative: server\.pruneTarget/);
    assert.match(plain, /lost on restart; set\s+modelStore\.enabled/);
    const stored = renderDocs({ replicaCount: 3, admin: { token: 't' }, modelStore: { enabled: true } }).notes;
    assert.match(stored, /every other pod loads the new variant from the store \(without pruning\)/);
    assert.doesNotMatch(stored, /port-forward to each/);
  });

  it('tells how to re-prune on every replica when there are several', () => {
    assert.match(renderDocs({ replicaCount: 3, admin: { token: 't' } }).notes, /port-forward to each\s+pod/);
    assert.doesNotMatch(renderDocs({ admin: { token: 't' } }).notes, /port-forward to each/);
  });
});

/** A helm binary, if this machine has one (HELM=…, or on PATH). */
function findHelm(): string | undefined {
  const candidates = [process.env.HELM, 'helm'].filter((c): c is string => !!c);
  return candidates.find((c) => spawnSync(c, ['version', '--short'], { encoding: 'utf8' }).status === 0);
}

describe('with a real helm, where one is installed', () => {
  const helm = findHelm();
  const skip = helm ? false : 'no helm binary here (set HELM=/path/to/helm; docs/deploying.md says how to get one from npm)';

  it('passes helm lint --strict', { skip }, () => {
    for (const c of cases) {
      const args = c.name === 'gpu' ? ['-f', path.join(chartDir, 'ci/gpu-values.yaml')] : [];
      const r = spawnSync(helm!, ['lint', '--strict', chartDir, ...args], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stdout + r.stderr);
    }
  });

  it('renders what deploy/helm/rendered holds', { skip }, () => {
    for (const c of cases) {
      const args = c.name === 'gpu' ? ['-f', path.join(chartDir, 'ci/gpu-values.yaml')] : [];
      const r = spawnSync(helm!, ['template', 'mop-serve', chartDir, '--namespace', 'mop', ...args], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const live = splitHelmOutput(r.stdout);
      const stored = splitHelmOutput(fs.readFileSync(path.join(renderedDir, `${c.name}.yaml`), 'utf8'));
      assert.ok(isDeepStrictEqual(live, stored), `${c.name}: deploy/helm/rendered is stale; run deploy/helm/render.sh`);
    }
  });
});
