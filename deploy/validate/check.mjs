// Strict check of dnnd's deployment manifests, run by validate.sh.
//
//   node check.mjs k8s   --dnnd BIN --file rendered.yaml --name NAME [--external-secret NAME]...
//   node check.mjs swarm --dnnd BIN --file stack-config.yaml --name NAME
//
// k8s: the output of `kubectl kustomize` for one overlay. Every object must
//   - be a kind both kubernetes-models (types, required fields, formats) and
//     @kubernetes/client-node (the known fields of every nested type) know, and
//     pass both: a misspelt or unknown field anywhere is an error;
//   - follow dnnd's rules: security context, requests and limits, probes on
//     /healthz and /readyz at the http.listen port, Prometheus annotations,
//     app.kubernetes.io/* labels, the token from a mounted Secret, writable
//     volumes under every checkpoint directory;
//   - run dnnd as it would: the command passes only --config (one entrypoint
//     for every manifest), the config names a built role ([node] role,
//     `dnnd roles`), and the config the pod would see (the mounted
//     ConfigMaps, the DNND_* env for every replica index, --set args) must
//     pass `dnnd config check`;
//   - agree across objects: servers and workers on the number of servers,
//     workers and ports, the workers' server names with the StatefulSet and
//     its headless Service, a PodDisruptionBudget and PVCs for the servers.
// swarm: the output of `docker stack config` (which already enforces the
//   compose schema) for one stack file, with the same dnnd rules adapted.
//
// Prints every problem found (not only the first) and exits 1 if there was any.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import YAML from "yaml";
// Only the generated models of client-node (its package root also loads the
// whole API client, three times slower to import).
import * as k8s from "@kubernetes/client-node/dist/gen/models/all.js";

// ---------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------
const argv = process.argv.slice(2);
const mode = argv.shift();
const opts = { externalSecrets: [] };
while (argv.length) {
  const a = argv.shift();
  const take = () => {
    if (!argv.length) usage(`${a} needs a value`);
    return argv.shift();
  };
  if (a === "--dnnd") opts.dnnd = take();
  else if (a === "--file") opts.file = take();
  else if (a === "--name") opts.name = take();
  else if (a === "--external-secret") opts.externalSecrets.push(take());
  else usage(`unknown argument ${a}`);
}
function usage(msg) {
  console.error(`check.mjs: ${msg}\nusage: node check.mjs k8s|swarm --dnnd BIN --file FILE --name NAME [--external-secret NAME]...`);
  process.exit(2);
}
if (mode !== "k8s" && mode !== "swarm") usage("the first argument is k8s or swarm");
if (!opts.dnnd || !opts.file) usage("--dnnd and --file are required");
opts.name ??= opts.file;

const errors = [];
const err = (where, msg) => errors.push(`${opts.name}: ${where}: ${msg}`);

// ---------------------------------------------------------------------------
// dnnd itself: version, roles, config check
// ---------------------------------------------------------------------------
function run(args, env = {}) {
  const r = spawnSync(opts.dnnd, args, { encoding: "utf8", env: { PATH: process.env.PATH, ...env } });
  if (r.error) throw new Error(`cannot run ${opts.dnnd}: ${r.error.message}`);
  return r;
}
const versionOut = run(["version"]).stdout;
const VERSION = (versionOut.match(/^dnnd (\S+)/) || [])[1];
if (!VERSION) throw new Error(`cannot read the version from '${versionOut.trim()}'`);
const ROLES = new Map();  // name -> built?
for (const line of run(["roles"]).stdout.split("\n")) {
  const m = line.match(/^(\S+)\s+(built|not built)\s/);
  if (m) ROLES.set(m[1], m[2] === "built");
}
if (!ROLES.size) throw new Error("`dnnd roles` listed no roles");
const IMAGE_NAMES = new Set(["dnnd", "dnnd-fashion-mnist"]);
const DATA_IN_IMAGE = { "dnnd-fashion-mnist": "/usr/share/datasets/fashion-mnist/" };
const WORKDIR = "/var/lib/dnnd";  // the image's working directory
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "dnnd-check-"));
process.on("exit", () => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let tmpCount = 0;

// Parses one TOML value at the start of `s` (the subset `dnnd config check`
// prints: strings, numbers, booleans, arrays of them, inline tables);
// returns [value, rest].
function parseTomlValue(s) {
  s = s.trimStart();
  if (s[0] === "{") {
    const table = {};
    s = s.slice(1).trimStart();
    while (s[0] !== "}") {
      const k = s.match(/^([A-Za-z0-9_-]+)\s*=\s*/);
      if (!k) throw new Error(`cannot parse the inline table at '${s.slice(0, 40)}'`);
      const [v, rest] = parseTomlValue(s.slice(k[0].length));
      table[k[1]] = v;
      s = rest.trimStart();
      if (s[0] === ",") s = s.slice(1).trimStart();
    }
    return [table, s.slice(1)];
  }
  if (s[0] === "'") {
    const end = s.indexOf("'", 1);
    return [s.slice(1, end), s.slice(end + 1)];
  }
  if (s[0] === '"') {
    let out = "", i = 1;
    for (; s[i] !== '"'; i++) {
      if (s[i] === "\\") {
        const c = s[++i];
        out += { n: "\n", t: "\t", r: "\r", '"': '"', "\\": "\\" }[c] ?? c;
      } else out += s[i];
    }
    return [out, s.slice(i + 1)];
  }
  if (s[0] === "[") {
    const arr = [];
    s = s.slice(1).trimStart();
    while (s[0] !== "]") {
      const [v, rest] = parseTomlValue(s);
      arr.push(v);
      s = rest.trimStart();
      if (s[0] === ",") s = s.slice(1).trimStart();
    }
    return [arr, s.slice(1)];
  }
  const m = s.match(/^[^\s,\]#]+/);
  const tok = m[0];
  if (tok === "true" || tok === "false") return [tok === "true", s.slice(tok.length)];
  return [Number(tok), s.slice(tok.length)];
}

// `dnnd config check` -> { ok, message, values: {"ps.index": 0, ...} }
function configCheck(configPath, env, sets, root = null) {
  const args = ["config", "check", configPath];
  for (const s of sets) args.push("--set", s);
  const r = run(args, env);
  // Messages name the file as the container sees it, not the temporary copy.
  if (r.status !== 0) return { ok: false, message: (r.stderr + r.stdout).trim().split(root ?? "\0").join("") };
  const values = {};
  let section = "";
  for (const line of r.stdout.split("\n")) {
    const h = line.match(/^\[([a-z_]+)\]$/);
    if (h) { section = h[1]; continue; }
    const kv = line.match(/^([a-z_]+) = (.*)$/);
    if (!kv || !section || section === "model") continue;
    values[`${section}.${kv[1]}`] = parseTomlValue(kv[2])[0];
  }
  return { ok: true, values };
}

// Parses the command line given to dnnd: role, config, --set values. A
// command line that starts with `wait` is `dnnd wait` (its files and
// --json-key in .wait), and what follows its "--" is parsed as dnnd's.
function parseDnndArgs(args, where) {
  args = args.map(String);
  if (args[0] === "wait") {
    const sep = args.indexOf("--");
    const wait = parseWaitArgs(sep < 0 ? args.slice(1) : args.slice(1, sep), where);
    return { ...parseDnndArgs(sep < 0 ? [] : args.slice(sep + 1), where), wait };
  }
  const out = { role: null, config: null, sets: [], wait: null };
  for (let i = 0; i < args.length; i++) {
    const a = String(args[i]);
    for (const [flag, key] of [["--role", "role"], ["--config", "config"], ["--set", "set"]]) {
      let v;
      if (a === flag) v = args[++i];
      else if (a.startsWith(flag + "=")) v = a.slice(flag.length + 1);
      else continue;
      if (v === undefined) err(where, `${flag} has no value`);
      else if (key === "set") out.sets.push(String(v));
      else out[key] = String(v);
    }
  }
  return out;
}

function parseWaitArgs(args, where) {
  const out = { files: [], jsonKey: "" };
  for (let i = 0; i < args.length; i++) {
    const m = args[i].match(/^(--[a-z-]+)(?:=(.*))?$/);
    if (!m) { err(where, `dnnd wait: unexpected argument '${args[i]}'`); continue; }
    const v = m[2] ?? args[++i];
    if (v === undefined) { err(where, `dnnd wait: ${m[1]} has no value`); continue; }
    if (m[1] === "--file") out.files.push(v);
    else if (m[1] === "--files") out.files.push(...v.split(",").filter(Boolean));
    else if (m[1] === "--json-key") out.jsonKey = v;
    else if (!["--timeout", "--interval-ms"].includes(m[1])) err(where, `dnnd wait: unknown option ${m[1]}`);
  }
  if (!out.files.length) err(where, "dnnd wait without --file: it would wait for nothing");
  return out;
}

// Kubernetes' $(NAME) references in args, from the container's env.
const expandRefs = (s, vars) => s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, n) => (n in vars ? vars[n] : m));

// The role a container runs: the one its config names ([node] role, which
// `dnnd config check` has already checked against `dnnd roles`). One image
// entrypoint serves every manifest, so the command passes only --config; a
// --role there is refused (dnnd itself would accept one that agrees).
function resolveRole(args, v, where) {
  const role = v["node.role"] || "";
  if (args.role) err(where, `--role=${args.role} on the command line: the config names the role ([node] role), manifests pass only --config`);
  if (!role) { err(where, `${args.config} names no role: add [node] role = "<role>" to it`); return args.role; }
  if (!ROLES.has(role)) err(where, `unknown role '${role}' (dnnd roles: ${[...ROLES.keys()].join(", ")})`);
  else if (!ROLES.get(role)) err(where, `role '${role}' is not built in dnnd ${VERSION}`);
  return role;
}

function imageInfo(image, where) {
  const m = String(image).match(/^(?:(.*)\/)?([^/:@]+)(?::([^@]+))?(?:@.*)?$/);
  if (!m) { err(where, `cannot parse image '${image}'`); return null; }
  const [, , name, tag] = m;
  if (!IMAGE_NAMES.has(name)) return null;  // not a dnnd container
  if (tag !== VERSION) err(where, `image ${image}: tag must be dnnd's version ${VERSION}`);
  return { name, tag };
}

const hostPort = (s) => {
  const m = String(s).match(/^(\[[^\]]*\]|[^:]*):(\d+)$/);
  return m ? { host: m[1], port: Number(m[2]) } : null;
};
const under = (p, dir) => p === dir || p.startsWith(dir.endsWith("/") ? dir : dir + "/");
const absPath = (p) => (path.isAbsolute(p) ? path.normalize(p) : path.join(WORKDIR, p));

function parseQuantity(q) {
  const m = String(q).match(/^([0-9.]+)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$/);
  if (!m) return NaN;
  const mult = { m: 1e-3, k: 1e3, Ki: 1024, M: 1e6, Mi: 2 ** 20, G: 1e9, Gi: 2 ** 30, T: 1e12, Ti: 2 ** 40 };
  return Number(m[1]) * (m[2] ? mult[m[2]] : 1);
}

function closest(word, candidates) {
  let best = null, bestD = Infinity;
  for (const c of candidates) {
    const d = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) { best = c; bestD = d; }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : null;
}
function levenshtein(a, b) {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

function readDocuments(file) {
  const text = fs.readFileSync(file, "utf8");
  const docs = [];
  for (const doc of YAML.parseAllDocuments(text, { uniqueKeys: true })) {
    for (const e of doc.errors) err("yaml", e.message);
    const v = doc.toJS();
    if (v !== null && v !== undefined) docs.push(v);
  }
  return docs;
}

// ---------------------------------------------------------------------------
// Kubernetes: schema
// ---------------------------------------------------------------------------
async function kubernetesModel(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const mod = group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
  try {
    return (await import(mod))[kind] ?? null;
  } catch {
    return null;
  }
}

function clientNodeClass(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const v = version[0].toUpperCase() + version.slice(1);
  const g = group ? group.split(".")[0] : "";
  const prefixed = g ? g[0].toUpperCase() + g.slice(1) + v + kind : null;
  if (prefixed && k8s[prefixed]?.attributeTypeMap) return prefixed;
  if (k8s[v + kind]?.attributeTypeMap) return v + kind;
  return null;
}

// Walks `value` against client-node's type `type`, reporting every field the
// type does not have (with the nearest known name) and every structural
// mismatch (an object where a list belongs, ...).
function walkType(value, type, where, at = "") {
  if (value === null || value === undefined) return;
  if (type === "any" || type === "object") return;
  if (type === "string" || type === "Date") {
    if (typeof value !== "string") err(where, `${at}: expected a string, found ${JSON.stringify(value)}`);
    return;
  }
  if (type === "number") {
    if (typeof value !== "number") err(where, `${at}: expected a number, found ${JSON.stringify(value)}`);
    return;
  }
  if (type === "boolean") {
    if (typeof value !== "boolean") err(where, `${at}: expected true or false, found ${JSON.stringify(value)}`);
    return;
  }
  if (type === "IntOrString") {
    if (typeof value !== "string" && typeof value !== "number") err(where, `${at}: expected a number or a string`);
    return;
  }
  let m = type.match(/^Array<(.+)>$/);
  if (m) {
    if (!Array.isArray(value)) return err(where, `${at}: expected a list, found ${typeof value}`);
    value.forEach((v, i) => walkType(v, m[1], where, `${at}[${i}]`));
    return;
  }
  m = type.match(/^\{ \[key: string\]: (.+); \}$/);
  if (m) {
    if (typeof value !== "object" || Array.isArray(value)) return err(where, `${at}: expected a map`);
    for (const [k, v] of Object.entries(value)) walkType(v, m[1], where, `${at}.${k}`);
    return;
  }
  const cls = k8s[type];
  if (!cls?.attributeTypeMap) throw new Error(`client-node has no type ${type} (at ${where}: ${at})`);
  if (typeof value !== "object" || Array.isArray(value)) return err(where, `${at}: expected an object (${type})`);
  const attrs = cls.attributeTypeMap;
  for (const [k, v] of Object.entries(value)) {
    const a = attrs.find((x) => x.baseName === k);
    if (!a) {
      const near = closest(k, attrs.map((x) => x.baseName));
      const field = at ? `${at}.${k}` : k;
      err(where, `${field}: unknown field${near ? ` (did you mean ${near}?)` : ""} in ${type}`);
      continue;
    }
    walkType(v, a.type, where, at ? `${at}.${k}` : k);
  }
}

async function checkSchema(obj, where) {
  if (typeof obj !== "object" || Array.isArray(obj)) return err(where, "a document is not an object");
  if (!obj.apiVersion || !obj.kind) return err(where, "apiVersion and kind are required");
  const Model = await kubernetesModel(obj.apiVersion, obj.kind);
  const cls = clientNodeClass(obj.apiVersion, obj.kind);
  if (!Model || !cls) return err(where, `unknown kind ${obj.kind} in ${obj.apiVersion} (not served by current Kubernetes)`);
  try {
    new Model(obj).validate();
  } catch (e) {
    for (const line of String(e.message).split(/,\s*(?=data)|\n/)) err(where, `schema: ${line.trim()}`);
  }
  walkType(obj, cls, where);
}

// ---------------------------------------------------------------------------
// Kubernetes: dnnd rules
// ---------------------------------------------------------------------------
const REQUIRED_LABELS = ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                         "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"];
const WORKLOADS = new Set(["StatefulSet", "Deployment", "Job", "DaemonSet", "ReplicaSet"]);

function podSpecOf(obj) {
  if (WORKLOADS.has(obj.kind)) return obj.spec?.template;
  if (obj.kind === "CronJob") return obj.spec?.jobTemplate?.spec?.template;
  if (obj.kind === "Pod") return { metadata: obj.metadata, spec: obj.spec };
  return null;
}

const selects = (selector, labels) =>
  selector && Object.entries(selector).every(([k, v]) => labels?.[k] === v);

async function checkKubernetes(docs) {
  const byKind = (kind) => docs.filter((d) => d?.kind === kind);
  const configMaps = new Map(byKind("ConfigMap").map((c) => [c.metadata?.name, c]));
  const secrets = new Set([...byKind("Secret").map((s) => s.metadata?.name), ...opts.externalSecrets]);
  const services = byKind("Service");
  const names = new Set();

  for (const obj of docs) {
    const where = `${obj?.kind}/${obj?.metadata?.name}`;
    await checkSchema(obj, where);
    if (!obj?.metadata?.name) continue;
    if (names.has(where)) err(where, "defined twice");
    names.add(where);
    const labels = obj.metadata.labels ?? {};
    for (const l of REQUIRED_LABELS) if (!labels[l]) err(where, `label ${l} is missing`);
    if (labels["app.kubernetes.io/version"] && labels["app.kubernetes.io/version"] !== VERSION)
      err(where, `label app.kubernetes.io/version is ${labels["app.kubernetes.io/version"]}, dnnd is ${VERSION}`);
    if (obj.kind !== "ConfigMap" && obj.kind !== "Secret" && !labels["app.kubernetes.io/component"])
      err(where, "label app.kubernetes.io/component is missing");
    for (const t of obj.spec?.volumeClaimTemplates ?? [])
      if (t.metadata?.labels?.["app.kubernetes.io/version"])
        err(`${where}: volumeClaimTemplates ${t.metadata.name}`,
            "carries app.kubernetes.io/version: volumeClaimTemplates are immutable, so every upgrade would fail");
  }

  const workloads = [];  // { obj, where, container, role, indexes, configs: [values per index] }
  for (const obj of docs) {
    const tpl = podSpecOf(obj);
    if (!tpl?.spec) continue;
    const where = `${obj.kind}/${obj.metadata?.name}`;
    const spec = tpl.spec;
    const waits = [];
    for (const c of spec.initContainers ?? []) {
      const cw = `${where}: init container ${c.name}`;
      if (!imageInfo(c.image, cw)) continue;
      const w = checkKubernetesInit(obj, tpl, c, cw);
      if (w) waits.push(w);
    }
    for (const c of spec.containers ?? []) {
      const cw = `${where}: container ${c.name}`;
      const img = imageInfo(c.image, cw);
      if (!img) continue;
      const w = checkKubernetesContainer(obj, tpl, c, img, cw, { configMaps, secrets });
      if (w) workloads.push({ ...w, waits });
    }
  }
  checkKubernetesTopology(docs, workloads, services);
}

function replicaIndexes(obj) {
  if (obj.kind === "StatefulSet") return [...Array(obj.spec.replicas ?? 1).keys()];
  if (obj.kind === "Job" && obj.spec.completionMode === "Indexed") return [...Array(obj.spec.completions ?? 1).keys()];
  return [0];
}

// What every dnnd container needs, init containers too: the security
// context and requests and limits.
function checkHardening(spec, c, where) {
  const psc = spec.securityContext ?? {};
  const sc = c.securityContext ?? {};
  // Security context.
  if (!(sc.runAsNonRoot ?? psc.runAsNonRoot)) err(where, "runAsNonRoot must be true (pod or container securityContext)");
  if ((sc.runAsUser ?? psc.runAsUser) === 0) err(where, "runAsUser 0");
  if (sc.readOnlyRootFilesystem !== true) err(where, "securityContext.readOnlyRootFilesystem must be true");
  if (sc.allowPrivilegeEscalation !== false) err(where, "securityContext.allowPrivilegeEscalation must be false");
  if (!(sc.capabilities?.drop ?? []).includes("ALL")) err(where, "securityContext.capabilities.drop must include ALL");
  if (sc.privileged) err(where, "privileged");
  if (spec.automountServiceAccountToken !== false) err(where, "automountServiceAccountToken must be false (dnnd never calls the API server)");
  if (spec.enableServiceLinks !== false)
    err(where, "enableServiceLinks must be false (Service variables would share dnnd's DNND_ environment prefix)");
  // Requests and limits.
  for (const kind of ["requests", "limits"])
    for (const r of ["cpu", "memory"])
      if (!c.resources?.[kind]?.[r]) err(where, `resources.${kind}.${r} is missing`);
  for (const r of ["cpu", "memory"]) {
    const req = parseQuantity(c.resources?.requests?.[r]), lim = parseQuantity(c.resources?.limits?.[r]);
    if (req > lim) err(where, `resources.requests.${r} exceeds the limit`);
  }
  if (c.command && !(c.command.length === 1 && c.command[0] === "/usr/local/bin/dnnd"))
    err(where, "command must be unset (the image's entrypoint is dnnd) or [/usr/local/bin/dnnd]");
}

const mountsOf = (spec, c) => (c.volumeMounts ?? []).map((m) => ({ ...m, volume: (spec.volumes ?? []).find((v) => v.name === m.name) }));

// The PVC (name) and the path inside it where a container sees `p`, or null.
function claimOf(p, mounts, obj) {
  const m = mounts.filter((x) => under(p, x.mountPath)).sort((a, b) => b.mountPath.length - a.mountPath.length)[0];
  if (!m) return null;
  const vct = (obj.spec?.volumeClaimTemplates ?? []).some((t) => t.metadata?.name === m.name);
  const claim = m.volume?.persistentVolumeClaim?.claimName ?? (vct ? `${m.name} (volumeClaimTemplate)` : null);
  return claim ? { store: claim, rel: path.relative(m.mountPath, p) || "." } : null;
}

// An init container running `dnnd wait`: its files, as PVC paths.
function checkKubernetesInit(obj, tpl, c, where) {
  checkHardening(tpl.spec, c, where);
  const args = parseDnndArgs(c.args ?? [], where);
  if (!args.wait) { err(where, "a dnnd init container must run `dnnd wait` (it orders the stages)"); return null; }
  const mounts = mountsOf(tpl.spec, c);
  const files = args.wait.files.map((f) => {
    const at = claimOf(absPath(f), mounts, obj);
    if (!at) err(where, `dnnd wait --file ${f} is not on a mounted PVC: no other pod can write it`);
    return at && { ...at, path: f };
  }).filter(Boolean);
  return { files, jsonKey: args.wait.jsonKey, where };
}

function checkKubernetesContainer(obj, tpl, c, img, where, { configMaps, secrets }) {
  const spec = tpl.spec;
  checkHardening(spec, c, where);
  // Restart policy per kind.
  const restart = spec.restartPolicy ?? "Always";
  if (obj.kind === "Job" || obj.kind === "CronJob") {
    if (restart === "Always") err(where, "a Job's pods need restartPolicy OnFailure or Never (finished workers must stay finished)");
    if (obj.kind === "Job" && obj.spec.backoffLimit === undefined) err(where, "the Job needs an explicit backoffLimit");
  } else if (restart !== "Always") err(where, `restartPolicy ${restart} in a ${obj.kind}`);

  // The command line and the files the container sees.
  const args = parseDnndArgs(c.args ?? [], where);
  if (args.wait) err(where, "`dnnd wait` belongs in an init container (Kubernetes orders those)");
  if (!args.config) { err(where, "dnnd is started without --config"); return null; }
  const mounts = mountsOf(spec, c);
  for (const m of mounts) if (!m.volume && !(obj.spec?.volumeClaimTemplates ?? []).some((t) => t.metadata?.name === m.name))
    err(where, `volumeMount ${m.name} has no volume`);
  const root = path.join(tmpRoot, String(tmpCount++));
  materializeConfigMaps(mounts, configMaps, root, where);
  const configFile = path.join(root, args.config);
  if (!fs.existsSync(configFile)) {
    err(where, `--config ${args.config} is not in a mounted ConfigMap`);
    return null;
  }
  const writable = (p) => mounts.some((m) => under(p, m.mountPath) && !m.readOnly &&
    (m.volume?.emptyDir || m.volume?.persistentVolumeClaim || m.volume?.ephemeral ||
     (obj.spec?.volumeClaimTemplates ?? []).some((t) => t.metadata?.name === m.name)));

  // Environment: DNND_* for each replica index.
  const indexes = replicaIndexes(obj);
  const configs = [];
  for (const i of indexes) {
    const env = {}, vars = {};
    for (const e of c.env ?? []) {
      if (!e.name?.startsWith("DNND_")) {
        const v = e.name && envValue(obj, c, e, i, where);
        if (v !== undefined) vars[e.name] = v;
        continue;
      }
      if (!e.name.includes("__")) { if (i === 0) err(where, `env ${e.name}: not a config key (DNND_<SECTION>__<KEY>): dnnd ignores it`); continue; }
      const v = envValue(obj, c, e, i, where);
      if (v !== undefined) env[e.name] = vars[e.name] = v;
    }
    const sets = args.sets.map((s) => expandRefs(s, vars));
    for (const s of sets) {
      const ref = s.match(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/);
      if (ref && i === 0) err(where, `--set ${s}: $(${ref[1]}) is not an env variable of the container`);
    }
    const r = configCheck(configFile, env, sets, root);
    if (!r.ok) {
      err(`${where} (index ${i})`, `dnnd config check ${args.config} fails:\n    ${r.message.split("\n").join("\n    ")}`);
      return null;
    }
    configs.push(r.values);
  }
  const v0 = configs[0];
  args.role = resolveRole(args, v0, where);

  // Model file next to the config, as the worker would open it.
  const modelFile = modelFileOf(configFile);
  if (modelFile) {
    if (!fs.existsSync(modelFile)) err(where, `model.file ${path.relative(root, modelFile)} is not in a mounted ConfigMap`);
    else {
      const r = configCheck(modelFile, {}, [], root);
      if (!r.ok) err(where, `model file ${path.relative(root, modelFile)}: ${r.message}`);
    }
  }

  // Control plane: http.listen, probes, scrape annotations.
  const http = hostPort(v0["http.listen"]);
  if (!http) err(where, "http.listen must be set (probes and /metrics need the control plane)");
  else {
    if (!["0.0.0.0", "[::]"].includes(http.host)) err(where, `http.listen ${v0["http.listen"]} is not reachable by the kubelet (use 0.0.0.0)`);
    const portOf = (p) => (typeof p === "number" ? p : (c.ports ?? []).find((x) => x.name === p)?.containerPort);
    for (const [probe, pathWanted] of [["readinessProbe", "/readyz"], ["livenessProbe", "/healthz"]]) {
      const g = c[probe]?.httpGet;
      if (!g) { err(where, `${probe} must be an httpGet of ${pathWanted}`); continue; }
      if (g.path !== pathWanted) err(where, `${probe} path ${g.path}, expected ${pathWanted}`);
      if (portOf(g.port) !== http.port) err(where, `${probe} port ${g.port} is not http.listen's ${http.port}`);
    }
    const ann = tpl.metadata?.annotations ?? {};
    if (ann["prometheus.io/scrape"] !== "true") err(where, `pod annotation prometheus.io/scrape must be "true"`);
    if (ann["prometheus.io/port"] !== String(http.port)) err(where, `pod annotation prometheus.io/port must be "${http.port}" (http.listen)`);
    if (ann["prometheus.io/path"] !== "/metrics") err(where, "pod annotation prometheus.io/path must be /metrics");
  }
  const tplLabels = tpl.metadata?.labels ?? {};
  for (const l of REQUIRED_LABELS.filter((x) => x !== "app.kubernetes.io/version").concat("app.kubernetes.io/component"))
    if (!tplLabels[l]) err(where, `pod template label ${l} is missing`);

  // Token: the networked roles take it from a file in a mounted Secret.
  if (isNetworked(args.role, v0)) {
    if (v0["transport.token"]) err(where, "transport.token is set inline; use transport.token_file from a Secret");
    const tf = v0["transport.token_file"];
    const m = tf && mounts.find((x) => under(tf, x.mountPath) && x.volume?.secret);
    if (!tf) err(where, "transport.token_file is empty: the token must come from a mounted Secret");
    else if (!m) err(where, `transport.token_file ${tf} is not in a mounted Secret`);
    else {
      const s = m.volume.secret;
      if (!secrets.has(s.secretName)) err(where, `Secret ${s.secretName} is neither rendered nor a known external Secret`);
      const rel = path.relative(m.mountPath, tf);
      const item = (s.items ?? []).find((it) => it.path === rel);
      if (!item) err(where, `Secret volume ${m.name} has no item with path ${rel} (list the key in items)`);
      // Secret files belong to root and, with fsGroup, to that group: a
      // non-root dnnd reads the token through the group or the world bits.
      const mode = item?.mode ?? s.defaultMode ?? 0o644;
      if (!(mode & 0o004) && !((mode & 0o040) && spec.securityContext?.fsGroup !== undefined))
        err(where, `the token file (mode ${mode.toString(8).padStart(4, "0")}) is unreadable for uid ${c.securityContext?.runAsUser ?? spec.securityContext?.runAsUser ?? "of the image"}: set the pod's fsGroup or a readable mode`);
    }
  }

  // Files the role writes need a writable volume (the root is read-only).
  for (const key of ["ps.checkpoint_dir", "train.checkpoint_dir"]) {
    const dir = v0[key];
    const writes = key === "ps.checkpoint_dir" ? ["parameter-server", "standalone"].includes(args.role)
                                               : ["worker", "standalone"].includes(args.role) && !isPoolWorker(args.role, v0);
    if (writes && dir && !writable(absPath(dir)))
      err(where, `${key} ${dir} is not on a writable volume (readOnlyRootFilesystem)`);
  }
  if (isPoolWorker(args.role, v0)) {
    const tmp = (c.env ?? []).find((e) => e.name === "TMPDIR")?.value ?? "/tmp";
    if (!writable(tmp)) err(where, `a pool worker's temp directory ${tmp} (TMPDIR) is not on a writable volume: worker 0 writes the model there before uploading it`);
  }
  // Training data: in the image, or on a mounted volume.
  if (needsData(args.role, v0)) {
    for (const key of ["data.train_images", "data.train_labels", "data.test_images", "data.test_labels", "data.train_file", "data.test_file"]) {
      const f = v0[key];
      if (!f || v0["data.builtin"] !== "none") continue;
      const p = absPath(f);
      const inImage = DATA_IN_IMAGE[img.name] && under(p, DATA_IN_IMAGE[img.name]);
      if (!inImage && !mounts.some((m) => under(p, m.mountPath)))
        err(where, `${key} ${f} is neither in image ${img.name} nor on a mounted volume`);
    }
  }
  const ports = new Set((c.ports ?? []).map((p) => p.containerPort));
  if (args.role === "parameter-server") {
    const listen = hostPort(v0["ps.listen"]);
    if (!listen) err(where, `ps.listen ${v0["ps.listen"]} is not host:port`);
    else if (!ports.has(listen.port)) err(where, `ps.listen port ${listen.port} is not a containerPort`);
  }
  if (http && !ports.has(http.port)) err(where, `http.listen port ${http.port} is not a containerPort`);
  if (args.role === "layer-server") {
    const listen = hostPort(v0["layer.listen"]);
    if (!listen) err(where, `layer.listen ${v0["layer.listen"]} is not host:port`);
    else if (!ports.has(listen.port)) err(where, `layer.listen port ${listen.port} is not a containerPort`);
  }
  return { obj, where, container: c, role: args.role, indexes, configs, tpl, mounts };
}

// Roles that talk the wire protocol to other pods need the token.
function isNetworked(role, v) {
  if (["parameter-server", "layer-server"].includes(role)) return true;
  if (role === "controller") return Boolean(v["controller.wire_listen"]);
  return role === "worker" && Boolean((v["worker.parameter_servers"] ?? []).length || (v["worker.placement"] ?? []).length ||
                                      v["worker.controller"]);
}
// A pool worker takes its jobs (model, data, where results go) from the controller.
const isPoolWorker = (role, v) => role === "worker" && Boolean(v["worker.controller"]);
// Roles that read the training or test set themselves (pool workers get
// theirs from the controller).
const needsData = (role, v) =>
  ["worker", "standalone", "splitter", "aggregator"].includes(role) && !(role === "worker" && v["worker.controller"]);

function envValue(obj, c, e, index, where) {
  if (e.value !== undefined) return String(e.value);
  const f = e.valueFrom?.fieldRef?.fieldPath;
  if (f === "metadata.labels['apps.kubernetes.io/pod-index']") {
    if (obj.kind !== "StatefulSet") err(where, `env ${e.name}: the pod-index label exists only on StatefulSet pods`);
    return String(index);
  }
  if (f === "metadata.annotations['batch.kubernetes.io/job-completion-index']") {
    if (obj.kind !== "Job" || obj.spec.completionMode !== "Indexed")
      err(where, `env ${e.name}: the completion index exists only in Indexed Jobs`);
    return String(index);
  }
  if (f === "metadata.name") return obj.kind === "StatefulSet" ? `${obj.metadata.name}-${index}` : `${obj.metadata.name}-x`;
  if (f === "metadata.namespace") return "default";
  const rf = e.valueFrom?.resourceFieldRef;
  if (rf) {
    const q = c.resources?.[rf.resource.split(".")[0]]?.[rf.resource.split(".")[1]];
    if (q === undefined) { err(where, `env ${e.name}: ${rf.resource} is not set`); return undefined; }
    return String(Math.ceil(parseQuantity(q) / parseQuantity(rf.divisor ?? "1")));
  }
  err(where, `env ${e.name}: cannot evaluate ${JSON.stringify(e.valueFrom)} (use a value, a fieldRef to the pod index or name, or a resourceFieldRef)`);
  return undefined;
}

function modelFileOf(configFile) {
  const text = fs.readFileSync(configFile, "utf8");
  const m = text.match(/^\[model\][^[]*?^file\s*=\s*["']([^"']+)["']/m);
  if (!m) return null;
  return path.isAbsolute(m[1]) ? null : path.join(path.dirname(configFile), m[1]);
}

function materializeConfigMaps(mounts, configMaps, root, where) {
  for (const m of mounts) {
    const v = m.volume;
    if (!v) continue;
    const sources = v.configMap ? [{ configMap: v.configMap }] : v.projected ? v.projected.sources ?? [] : [];
    for (const s of sources) {
      if (!s.configMap) continue;
      const cm = configMaps.get(s.configMap.name);
      if (!cm) {
        if (!s.configMap.optional) err(where, `ConfigMap ${s.configMap.name} (volume ${m.name}) is not rendered`);
        continue;
      }
      const data = cm.data ?? {};
      const items = s.configMap.items ?? Object.keys(data).map((k) => ({ key: k, path: k }));
      for (const it of items) {
        if (!(it.key in data)) { err(where, `ConfigMap ${cm.metadata.name} has no key ${it.key}`); continue; }
        const dest = path.join(root, m.mountPath, it.path);
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        fs.writeFileSync(dest, data[it.key]);
      }
    }
  }
}

// Servers and workers must agree with each other and with the objects that
// connect them.
function checkKubernetesTopology(docs, workloads, services) {
  const servers = workloads.filter((w) => w.role === "parameter-server");
  const workers = workloads.filter((w) => w.role === "worker" && (w.configs[0]["worker.parameter_servers"] ?? []).length);
  for (const s of servers) {
    const { obj, where } = s;
    if (obj.kind !== "StatefulSet") { err(where, "parameter servers must be a StatefulSet (stable names, one PVC each)"); continue; }
    const replicas = obj.spec.replicas ?? 1;
    s.configs.forEach((v, i) => {
      if (v["ps.index"] !== i) err(`${where} (index ${i})`, `ps.index is ${v["ps.index"]}; set it from the pod-index label`);
      if (v["ps.servers"] !== replicas) err(`${where} (index ${i})`, `ps.servers is ${v["ps.servers"]}, replicas ${replicas}`);
    });
    if (obj.spec.podManagementPolicy !== "Parallel")
      err(where, "podManagementPolicy must be Parallel (a server is not ready before the workers start)");
    const svc = services.find((x) => x.metadata?.name === obj.spec.serviceName);
    const podLabels = s.tpl.metadata?.labels ?? {};
    if (!svc) err(where, `serviceName ${obj.spec.serviceName} is not a rendered Service`);
    else {
      if (svc.spec?.clusterIP !== "None") err(`Service/${svc.metadata.name}`, "must be headless (clusterIP: None)");
      if (svc.spec?.publishNotReadyAddresses !== true)
        err(`Service/${svc.metadata.name}`, "publishNotReadyAddresses must be true (servers are not ready until workers reach them)");
      if (!selects(svc.spec?.selector, podLabels)) err(`Service/${svc.metadata.name}`, `its selector does not match ${where}'s pods`);
      const listen = hostPort(s.configs[0]["ps.listen"]);
      if (listen && !(svc.spec?.ports ?? []).some((p) => p.port === listen.port))
        err(`Service/${svc.metadata.name}`, `does not expose ps.listen's port ${listen.port}`);
    }
    if (!docs.some((d) => d.kind === "PodDisruptionBudget" && selects(d.spec?.selector?.matchLabels, podLabels)))
      err(where, "no PodDisruptionBudget selects the parameter servers");
    const ckpt = s.configs[0]["ps.checkpoint_dir"];
    const vct = (obj.spec.volumeClaimTemplates ?? []).map((t) => t.metadata?.name);
    if (!ckpt) err(where, "ps.checkpoint_dir is empty: a restarted server would lose the model");
    else if (!(s.container.volumeMounts ?? []).some((m) => vct.includes(m.name) && under(absPath(ckpt), m.mountPath)))
      err(where, `ps.checkpoint_dir ${ckpt} is not on a volumeClaimTemplates PVC`);
  }
  for (const w of workers) {
    const { obj, where } = w;
    if (obj.kind !== "Job" || obj.spec.completionMode !== "Indexed") {
      err(where, "data-parallel workers must be an Indexed Job (they finish; each index is one part of the data)");
      continue;
    }
    const completions = obj.spec.completions ?? 1;
    w.configs.forEach((v, i) => {
      const at = `${where} (index ${i})`;
      if (v["worker.index"] !== i) err(at, `worker.index is ${v["worker.index"]}; set it from the job-completion-index annotation`);
      if (v["worker.count"] !== completions) err(at, `worker.count is ${v["worker.count"]}, completions ${completions}`);
    });
    const list = w.configs[0]["worker.parameter_servers"];
    // Each entry must name server j of one StatefulSet: <sts>-<j>.<service>[.<namespace>[.svc...]]:<port>
    let target = null;
    list.forEach((entry, j) => {
      const hp = hostPort(entry);
      const m = hp && hp.host.match(/^(.+)-(\d+)\.([^.]+)(\.[^.]+(\.svc(\..+)?)?)?$/);
      const s = m && servers.find((x) => x.obj.metadata.name === m[1] && x.obj.spec.serviceName === m[3]);
      if (!s) return err(where, `parameter_servers[${j}] ${entry} is not <statefulset>-<ordinal>.<headless service>:<port> of a rendered parameter-server StatefulSet`);
      if (Number(m[2]) !== j) err(where, `parameter_servers[${j}] ${entry} names ordinal ${m[2]}: the list must be in server order`);
      const listen = hostPort(s.configs[0]["ps.listen"]);
      if (listen && hp.port !== listen.port) err(where, `parameter_servers[${j}] ${entry}: the servers listen on port ${listen.port}`);
      if (target && target !== s) err(where, "parameter_servers names servers of different StatefulSets");
      target = s;
    });
    if (target) {
      const n = target.obj.spec.replicas ?? 1;
      if (list.length !== n) err(where, `parameter_servers lists ${list.length} servers, ${target.where} has ${n}`);
      const pw = target.configs[0]["ps.workers"], mode = target.configs[0]["ps.mode"];
      if (pw !== completions)
        err(where, `${completions} workers, but the servers' ps.workers is ${pw} (the servers admit ranks below ps.workers; a sync or kavg step waits for ps.workers)`);
      if (mode !== "async" && (obj.spec.parallelism ?? 1) !== completions)
        err(where, `parallelism ${obj.spec.parallelism ?? 1} != completions ${completions}: a ${mode} step waits for every worker at once`);
    }
  }

  // Units and addresses for the topologies shared with Swarm.
  const units = [];
  for (const w of workloads) {
    const replicas = ["Deployment", "StatefulSet", "ReplicaSet"].includes(w.obj.kind) ? w.obj.spec.replicas ?? 1 : 1;
    w.indexes.forEach((i, k) => units.push({
      role: w.role, v: w.configs[k], where: w.indexes.length > 1 ? `${w.where} (index ${i})` : w.where, workload: w,
      store: (p) => claimOf(p, w.mounts, w.obj), waits: w.waits, replicas }));
  }
  // <service>[.<namespace>[.svc...]]:<port> -> the one workload the Service selects, at the container port.
  const resolve = (addr, where, what) => {
    const hp = hostPort(addr);
    const name = hp?.host.split(".")[0];
    const svc = services.find((s) => s.metadata?.name === name);
    if (!svc) { err(where, `${what}: ${name} is not a rendered Service`); return null; }
    const selected = workloads.filter((w) => selects(svc.spec?.selector, w.tpl.metadata?.labels));
    if (selected.length !== 1) {
      err(`Service/${name}`, `selects ${selected.length} dnnd workloads (${selected.map((w) => w.where).join(", ")}); ${what} needs exactly one`);
      return null;
    }
    const w = selected[0];
    const sp = (svc.spec?.ports ?? []).find((p) => p.port === hp.port);
    if (!sp) { err(where, `${what}: Service/${name} has no port ${hp.port}`); return null; }
    const target = sp.targetPort ?? sp.port;
    const port = typeof target === "number" ? target : (w.container.ports ?? []).find((p) => p.name === target)?.containerPort;
    if (port === undefined) { err(`Service/${name}`, `targetPort ${target} is no port of ${w.where}`); return null; }
    return { unit: units.find((u) => u.workload === w), port, replicas: units.find((u) => u.workload === w).replicas };
  };
  for (const h of docs.filter((d) => d.kind === "HorizontalPodAutoscaler")) {
    const ref = h.spec?.scaleTargetRef ?? {};
    const w = workloads.find((x) => x.obj.kind === ref.kind && x.obj.metadata?.name === ref.name);
    if (!w) err(`HorizontalPodAutoscaler/${h.metadata?.name}`, `scaleTargetRef ${ref.kind}/${ref.name} is not a rendered dnnd workload`);
    else if (w.role !== "worker" || !w.configs[0]["worker.controller"])
      err(`HorizontalPodAutoscaler/${h.metadata?.name}`, `scales ${w.where} (role ${w.role}): only a controller's pool can change size under a running job`);
  }
  for (const u of units.filter((x) => x.role === "controller"))
    if (u.workload.obj.kind === "Deployment" && u.workload.obj.spec.strategy?.type !== "Recreate")
      err(u.where, "strategy must be Recreate: a rolling update would open the store from two pods at once");
  checkConnectedTopologies(units, resolve);
}

// ---------------------------------------------------------------------------
// Topologies that connect roles by address or by files, for Kubernetes and
// Swarm alike. A unit is one running dnnd (one index of a workload):
//   { role, v (its config values), where, store(path) -> {store, rel} | null,
//     waits: [{ files: [{store, rel, path}], jsonKey, where }], replicas }
// and resolve(host:port, where) finds the unit an address reaches and the
// port it reaches there ({ unit, port, replicas } or null after an error).
// ---------------------------------------------------------------------------
function checkConnectedTopologies(units, resolve) {
  // Layer servers: every placement names one layer server, on its layer.listen port.
  for (const u of units.filter((x) => x.role === "worker")) {
    (u.v["worker.placement"] ?? []).forEach((p, j) => {
      const at = `worker.placement[${j}] server ${p.server}`;
      const target = resolve(p.server, u.where, at);
      if (!target) return;
      if (target.unit.role !== "layer-server") return err(u.where, `${at} reaches role ${target.unit.role}, not a layer server`);
      const listen = hostPort(target.unit.v["layer.listen"]);
      if (listen && target.port !== listen.port) err(u.where, `${at} reaches port ${target.port}; ${target.unit.where} listens on ${listen.port}`);
      if (target.replicas !== 1)
        err(target.unit.where, `${target.replicas} replicas: a layer server's sessions live in one process (one replica per layer group)`);
    });
  }
  // Controller and pool: the workers reach the controller's API; the
  // controller's wire port and parameter-server ports are reachable too.
  for (const c of units.filter((x) => x.role === "controller")) {
    if (c.replicas !== 1) err(c.where, `${c.replicas} replicas: the controller's store is one SQLite database`);
    const dir = c.v["controller.data_dir"];
    if (!c.store(absPath(dir))) err(c.where, `controller.data_dir ${dir} is not on a persistent volume: a restart would lose every job`);
  }
  for (const u of units.filter((x) => x.role === "worker" && x.v["worker.controller"])) {
    const at = `worker.controller ${u.v["worker.controller"]}`;
    const target = resolve(u.v["worker.controller"], u.where, at);
    if (!target) continue;
    const c = target.unit;
    if (c.role !== "controller") { err(u.where, `${at} reaches role ${c.role}, not the controller`); continue; }
    const http = hostPort(c.v["http.listen"]);
    if (http && target.port !== http.port) err(u.where, `${at} reaches port ${target.port}; the controller's API (http.listen) is on ${http.port}`);
    const host = hostPort(u.v["worker.controller"]).host;
    const wire = hostPort(c.v["controller.wire_listen"]);
    if (!wire) err(c.where, "controller.wire_listen must be a fixed host:port: the pool fetches its data there");
    const range = String(c.v["controller.ps_ports"] ?? "").match(/^(\d+)-(\d+)$/);
    if (!range) err(c.where, "controller.ps_ports must be a fixed range first-last: the pool reaches the jobs' parameter servers there");
    const needed = [...(wire ? [["controller.wire_listen", wire.port]] : []),
                    ...(range ? Array.from({ length: Number(range[2]) - Number(range[1]) + 1 }, (_, k) => ["controller.ps_ports", Number(range[1]) + k]) : [])];
    for (const [key, port] of needed) {
      const r = resolve(`${host}:${port}`, u.where, `${key} port ${port} through ${host}`);
      if (r && (r.unit !== c || r.port !== port)) err(u.where, `${key} port ${port} through ${host} does not reach the controller's port ${port}`);
    }
  }
  checkPipeline(units);
}

// Split -> train -> aggregate: the stages share a volume, each reads what the
// previous one writes, and each waits for it (dnnd wait) instead of sleeping.
function checkPipeline(units) {
  const splitters = units.filter((u) => u.role === "splitter");
  const aggregators = units.filter((u) => u.role === "aggregator");
  if (!splitters.length && !aggregators.length) return;
  const same = (a, b) => a && b && a.store === b.store && path.normalize(a.rel) === path.normalize(b.rel);
  const show = (a) => `${a.store}:${a.rel}`;
  const waitsFor = (u, file, jsonKey) =>
    u.waits.some((w) => w.files.some((f) => same(f, file)) && (!jsonKey || w.jsonKey === jsonKey));
  const shards = [];  // { at, splitter, manifest }
  for (const s of splitters) {
    const dir = s.store(absPath(s.v["splitter.output_dir"]));
    if (!dir) { err(s.where, `splitter.output_dir ${s.v["splitter.output_dir"]} is not on a shared volume: the workers cannot read the shards`); continue; }
    const manifest = { store: dir.store, rel: path.join(dir.rel, "manifest.json") };
    for (let i = 0; i < s.v["splitter.shards"]; i++)
      shards.push({ at: { store: dir.store, rel: path.join(dir.rel, `shard-${String(i).padStart(3, "0")}.npz`) }, splitter: s, manifest });
  }
  const checkpoints = [];  // { at, worker }
  for (const w of units.filter((u) => u.role === "worker" && u.v["data.train_file"])) {
    const file = w.store(absPath(w.v["data.train_file"]));
    const shard = file && shards.find((x) => same(x.at, file));
    if (!file || (!shard && !splitters.length)) continue;  // a worker of some other topology
    if (!shard) { err(w.where, `data.train_file ${w.v["data.train_file"]} is none of the splitter's shards (${shards.map((x) => show(x.at)).join(", ")})`); continue; }
    if (!waitsFor(w, shard.manifest, "shards"))
      err(w.where, `does not wait for the splitter's manifest ${show(shard.manifest)} (dnnd wait --file ... --json-key shards): it could read a shard before it is written`);
    const ckpt = w.store(absPath(w.v["train.checkpoint_dir"]));
    if (!ckpt) err(w.where, `train.checkpoint_dir ${w.v["train.checkpoint_dir"]} is not on the shared volume: the aggregator cannot read it`);
    else if (checkpoints.some((c) => same(c.at, ckpt))) err(w.where, `train.checkpoint_dir ${show(ckpt)} is another worker's too`);
    else checkpoints.push({ at: ckpt, worker: w, shard });
  }
  for (const s of shards)
    if (!checkpoints.some((c) => c.shard === s)) err(s.splitter.where, `shard ${show(s.at)} is trained by no worker`);
  for (const a of aggregators) {
    const out = a.store(absPath(a.v["aggregator.output_dir"]));
    if (!out) err(a.where, `aggregator.output_dir ${a.v["aggregator.output_dir"]} is not on a persistent volume: the averaged model would be lost`);
    const inputs = (a.v["aggregator.inputs"] ?? []).map((p) => ({ p, at: a.store(absPath(p)) }));
    for (const { p, at } of inputs) {
      if (!at) { err(a.where, `aggregator.inputs ${p} is not on the shared volume`); continue; }
      if (!checkpoints.some((c) => same(c.at, at))) err(a.where, `aggregator.inputs ${p} (${show(at)}) is no worker's train.checkpoint_dir`);
      const model = { store: at.store, rel: p.endsWith(".safetensors") ? at.rel : path.join(at.rel, "model.safetensors") };
      if (!waitsFor(a, model)) err(a.where, `does not wait for ${show(model)} (dnnd wait --file): it could start before that worker finished`);
    }
    for (const c of checkpoints)
      if (!inputs.some(({ at }) => same(at, c.at))) err(a.where, `aggregator.inputs leaves out ${show(c.at)} (${c.worker.where})`);
  }
}

// ---------------------------------------------------------------------------
// Swarm (the output of `docker stack config`)
// ---------------------------------------------------------------------------
// Options `docker stack deploy` ignores: a manifest that relies on them does
// not do what it says.
const SWARM_IGNORED = ["build", "cgroup_parent", "container_name", "devices", "external_links", "links",
                       "network_mode", "restart", "security_opt", "userns_mode"];

function checkSwarm(stack) {
  const services = stack.services ?? {};
  const configs = stack.configs ?? {};
  const secretsDef = stack.secrets ?? {};
  const networks = stack.networks ?? {};
  const checked = [];
  for (const [name, svc] of Object.entries(services)) {
    const where = `service ${name}`;
    for (const k of SWARM_IGNORED) if (k in svc) err(where, `${k} is ignored by docker stack deploy`);
    const img = imageInfo(svc.image, where);
    if (!img) continue;
    const deploy = svc.deploy ?? {};
    if (!/^[1-9][0-9]*(:[0-9]+)?$/.test(String(svc.user ?? ""))) err(where, "user must be a numeric non-root uid (e.g. 65532:65532)");
    if (svc.read_only !== true) err(where, "read_only must be true");
    if (!(svc.cap_drop ?? []).includes("ALL")) err(where, "cap_drop must include ALL");
    for (const kind of ["limits", "reservations"])
      for (const r of ["cpus", "memory"])
        if (!deploy.resources?.[kind]?.[r]) err(where, `deploy.resources.${kind}.${r} is missing`);
    if (!deploy.restart_policy?.condition) err(where, "deploy.restart_policy.condition is missing");
    const nets = Array.isArray(svc.networks) ? svc.networks : Object.keys(svc.networks ?? {});
    if (!nets.some((n) => networks[n]?.driver === "overlay")) err(where, "not on an overlay network of the stack");
    if (svc.entrypoint) err(where, "entrypoint must be unset (the image's entrypoint is dnnd)");

    const args = parseDnndArgs(svc.command ?? [], where);
    if (!args.config) { err(where, "dnnd is started without --config"); continue; }
    const root = path.join(tmpRoot, String(tmpCount++));
    for (const c of svc.configs ?? []) {
      const def = configs[c.source];
      if (!def?.file) { err(where, `config ${c.source} has no file in the stack`); continue; }
      if (!c.target?.startsWith("/")) { err(where, `config ${c.source} needs an absolute target`); continue; }
      if (!fs.existsSync(def.file)) { err(where, `config ${c.source}: ${def.file} does not exist`); continue; }
      const dest = path.join(root, c.target);
      fs.mkdirSync(path.dirname(dest), { recursive: true });
      fs.copyFileSync(def.file, dest);
    }
    const configFile = path.join(root, args.config);
    if (!fs.existsSync(configFile)) { err(where, `--config ${args.config} is not a config target of the service`); continue; }
    const env = {};
    for (const [k, v] of Object.entries(svc.environment ?? {})) {
      if (!k.startsWith("DNND_")) continue;
      if (!k.includes("__")) { err(where, `environment ${k}: not a config key (DNND_<SECTION>__<KEY>): dnnd ignores it`); continue; }
      if (String(v).includes("{{")) { err(where, `environment ${k}: Swarm templates cannot be checked here`); continue; }
      env[k] = String(v ?? "");
    }
    const r = configCheck(configFile, env, args.sets, root);
    if (!r.ok) { err(where, `dnnd config check ${args.config} fails:\n    ${r.message.split("\n").join("\n    ")}`); continue; }
    const v = r.values;
    args.role = resolveRole(args, v, where);
    if (args.role === "parameter-server" && deploy.restart_policy?.condition === "none")
      err(where, "a parameter server must be restarted when it fails");
    // A job's worker ends for good; a pool worker serves until it is removed.
    if (args.role === "worker" && !v["worker.controller"] && deploy.restart_policy?.condition !== "on-failure")
      err(where, "workers need restart_policy condition on-failure (a finished worker must not start again)");
    if (args.role === "worker" && v["worker.controller"] && deploy.restart_policy?.condition !== "any")
      err(where, "pool workers need restart_policy condition any (they serve until removed)");
    const modelFile = modelFileOf(configFile);
    if (modelFile && !fs.existsSync(modelFile)) err(where, `model.file ${path.relative(root, modelFile)} is not a config target of the service`);

    const http = hostPort(v["http.listen"]);
    if (!http) err(where, "http.listen must be set (the healthcheck and /metrics need it)");
    else {
      if (!["0.0.0.0", "[::]"].includes(http.host)) err(where, `http.listen ${v["http.listen"]}: use 0.0.0.0 (scrapes come from the network)`);
      const t = svc.healthcheck?.test ?? [];
      const urlAt = t.indexOf("probe") + 1;
      if (svc.healthcheck?.disable || t[0] !== "CMD" || t[1] !== "/usr/local/bin/dnnd" || urlAt === 0)
        err(where, "healthcheck.test must be [CMD, /usr/local/bin/dnnd, probe, http://127.0.0.1:<http port>/healthz] (the image has no shell)");
      else if (t[urlAt] !== `http://127.0.0.1:${http.port}/healthz`)
        err(where, `healthcheck probes ${t[urlAt]}, expected http://127.0.0.1:${http.port}/healthz (http.listen)`);
    }
    if (isNetworked(args.role, v)) {
      if (v["transport.token"]) err(where, "transport.token is set inline; use transport.token_file from a secret");
      const tf = v["transport.token_file"];
      const s = (svc.secrets ?? []).find((x) => tf === (x.target?.startsWith("/") ? x.target : `/run/secrets/${x.target ?? x.source}`));
      if (!tf) err(where, "transport.token_file is empty: the token must come from a secret");
      else if (!s) err(where, `transport.token_file ${tf} is not one of the service's secrets`);
      else if (!secretsDef[s.source]) err(where, `secret ${s.source} is not defined in the stack`);
      else {
        // Swarm mounts a secret as root:root 0444 unless told otherwise.
        const uid = String(svc.user ?? "").split(":")[0], mode = s.mode ?? 0o444;
        if (!(mode & 0o004) && String(s.uid ?? "0") !== uid)
          err(where, `secret ${s.source} (mode ${mode.toString(8).padStart(4, "0")}, uid ${s.uid ?? 0}) is unreadable for user ${uid}`);
      }
    }
    const writable = (p) => (svc.volumes ?? []).some((m) => under(p, m.target) && !m.read_only && (m.type === "volume" || m.type === "tmpfs"));
    for (const key of ["ps.checkpoint_dir", "train.checkpoint_dir"]) {
      const writes = key === "ps.checkpoint_dir" ? ["parameter-server", "standalone"].includes(args.role)
                                                 : ["worker", "standalone"].includes(args.role) && !isPoolWorker(args.role, v);
      if (writes && v[key] && !writable(absPath(v[key]))) err(where, `${key} ${v[key]} is not on a writable volume (read_only)`);
    }
    if (isPoolWorker(args.role, v)) {
      const tmp = String(svc.environment?.TMPDIR ?? "/tmp");
      if (!writable(tmp)) err(where, `a pool worker's temp directory ${tmp} (TMPDIR) is not on a writable volume: worker 0 writes the model there before uploading it`);
    }
    if (needsData(args.role, v))
      for (const key of ["data.train_images", "data.train_labels", "data.test_images", "data.test_labels", "data.train_file", "data.test_file"]) {
        const f = v[key];
        if (!f || v["data.builtin"] !== "none") continue;
        const p = absPath(f);
        if (!(DATA_IN_IMAGE[img.name] && under(p, DATA_IN_IMAGE[img.name])) && !(svc.volumes ?? []).some((m) => under(p, m.target)))
          err(where, `${key} ${f} is neither in image ${img.name} nor on a mounted volume`);
      }
    checked.push({ name, svc, role: args.role, v, where, wait: args.wait });
  }

  // Servers and workers agree.
  const servers = checked.filter((s) => s.role === "parameter-server");
  const workers = checked.filter((w) => w.role === "worker" && (w.v["worker.parameter_servers"] ?? []).length);
  const replicas = (s) => (s.svc.deploy?.mode === "global" ? NaN : s.svc.deploy?.replicas ?? 1);
  for (const s of servers) {
    if (replicas(s) !== 1) err(s.where, "a parameter server service must have exactly 1 replica (each server has its own index)");
    if (s.v["ps.index"] >= s.v["ps.servers"]) err(s.where, `ps.index ${s.v["ps.index"]} >= ps.servers ${s.v["ps.servers"]}`);
  }
  const nServers = servers.length ? servers[0].v["ps.servers"] : 0;
  for (const s of servers) if (s.v["ps.servers"] !== nServers) err(s.where, "the servers disagree on ps.servers");
  if (servers.length && servers.length !== nServers) err("stack", `${servers.length} parameter-server services, ps.servers ${nServers}`);
  const seen = new Set();
  for (const s of servers) {
    if (seen.has(s.v["ps.index"])) err(s.where, `ps.index ${s.v["ps.index"]} is used twice`);
    seen.add(s.v["ps.index"]);
  }
  for (const w of workers) {
    if (replicas(w) !== 1) err(w.where, "a worker service must have exactly 1 replica (each worker has its own index)");
    const list = w.v["worker.parameter_servers"];
    if (list.length !== nServers) err(w.where, `parameter_servers lists ${list.length} servers, the stack has ${nServers}`);
    list.forEach((entry, j) => {
      const hp = hostPort(entry);
      const host = hp?.host.replace(/^tasks\./, "");
      const s = servers.find((x) => x.name === host);
      if (!s) return err(w.where, `parameter_servers[${j}] ${entry} is not <service>:<port> or tasks.<service>:<port> of a parameter-server service`);
      if (s.v["ps.index"] !== j) err(w.where, `parameter_servers[${j}] ${entry} has ps.index ${s.v["ps.index"]}: the list must be in server order`);
      const listen = hostPort(s.v["ps.listen"]);
      if (listen && listen.port !== hp.port) err(w.where, `parameter_servers[${j}] ${entry}: ${s.name} listens on port ${listen.port}`);
    });
  }
  if (workers.length) {
    const count = workers[0].v["worker.count"];
    const idx = new Set();
    for (const w of workers) {
      if (w.v["worker.count"] !== count) err(w.where, "the workers disagree on worker.count");
      if (idx.has(w.v["worker.index"])) err(w.where, `worker.index ${w.v["worker.index"]} is used twice`);
      idx.add(w.v["worker.index"]);
    }
    if (workers.length !== count) err("stack", `${workers.length} worker services, worker.count ${count}`);
    for (const s of servers)
      if (s.v["ps.workers"] !== count)
        err(s.where, `ps.workers ${s.v["ps.workers"]}, but ${count} workers (the servers admit ranks below ps.workers; a sync or kavg step waits for ps.workers)`);
  }

  // Units and addresses for the topologies shared with Kubernetes: files on
  // named volumes, services by name (or tasks.<name>) at the container's port.
  const storeOf = (svc) => (p) => {
    const m = (svc.volumes ?? []).filter((x) => x.type === "volume" && under(p, x.target))
      .sort((a, b) => b.target.length - a.target.length)[0];
    return m ? { store: m.source, rel: path.relative(m.target, p) || "." } : null;
  };
  const units = checked.map((c) => {
    const store = storeOf(c.svc);
    const waits = [];
    if (c.wait) {
      const files = c.wait.files.map((f) => {
        const at = store(absPath(f));
        if (!at) err(c.where, `dnnd wait --file ${f} is not on a named volume: no other service can write it`);
        return at && { ...at, path: f };
      }).filter(Boolean);
      waits.push({ files, jsonKey: c.wait.jsonKey, where: c.where });
    }
    return { name: c.name, role: c.role, v: c.v, where: c.where, store, waits, replicas: replicas(c) };
  });
  const resolve = (addr, where, what) => {
    const hp = hostPort(addr);
    const name = hp?.host.replace(/^tasks\./, "");
    const unit = units.find((u) => u.name === name);
    if (!unit) { err(where, `${what}: ${name} is not a dnnd service of the stack`); return null; }
    return { unit, port: hp.port, replicas: unit.replicas };
  };
  checkConnectedTopologies(units, resolve);
}

// ---------------------------------------------------------------------------
try {
  const docs = readDocuments(opts.file);
  if (mode === "k8s") {
    if (!docs.length) err("render", "no objects");
    await checkKubernetes(docs);
  } else {
    if (docs.length !== 1) err("stack", "expected one YAML document");
    else checkSwarm(docs[0]);
  }
} catch (e) {
  errors.push(`${opts.name}: internal error of the checker: ${e.stack}`);
}
for (const e of errors) console.error(e);
if (errors.length) {
  console.error(`${opts.name}: ${errors.length} problem(s)`);
  process.exit(1);
}
console.log(`${opts.name}: ok`);
