/**
 * Static checks of the Dockerfile and .dockerignore (no Docker engine here, and hadolint is in
 * neither Debian bookworm nor npm): multi-stage, pinned base images, non-root numeric USER,
 * HEALTHCHECK on /health with node (the images have no curl), tini as PID 1 in front of node
 * (test/server/shutdown.test.ts runs node as PID 1 without it), the CUDA target's provider install,
 * and a build context that holds what the COPY lines need and nothing else. The HEALTHCHECK
 * command itself is run against a live server.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { defaultServerConfig } from '../../src/server/config.ts';
import { type RunningServer, startServer } from '../../src/server/main.ts';
import { repoRoot } from './queried-metrics.ts';

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped, split into stages. */
function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = [];
  let pending = '';
  let startLine = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd();
    if (!pending && (/^\s*#/.test(line) || line.trim() === '')) return;
    if (pending && /^\s*#/.test(line)) return; // comments inside a continued instruction
    if (!pending) startLine = i + 1;
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' ';
      return;
    }
    const full = (pending + line).trim();
    pending = '';
    const m = /^(\w+)\s+([\s\S]*)$/.exec(full);
    assert.ok(m, `Dockerfile line ${startLine}: cannot parse '${full}'`);
    instructions.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: startLine });
  });
  assert.equal(pending, '', 'Dockerfile ends inside a continued line');
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      assert.ok(m, `line ${ins.line}: FROM ${ins.args}`);
      stages.push({ image: m[1]!, name: m[2]?.toLowerCase(), instructions: [] });
    } else {
      assert.ok(stages.length > 0 || ins.keyword === 'ARG', `line ${ins.line}: ${ins.keyword} before FROM`);
      stages.at(-1)?.instructions.push(ins);
    }
  }
  return stages;
}

const execForm = (args: string): string[] | undefined => (args.startsWith('[') ? (JSON.parse(args) as string[]) : undefined);

/** An image reference pinned to an exact version tag (x.y.z…) or a digest, never latest. */
function pinned(image: string): boolean {
  if (/@sha256:[0-9a-f]{64}$/.test(image)) return true;
  const tag = /:([^/:@]+)$/.exec(image)?.[1];
  return tag !== undefined && tag !== 'latest' && /\d+\.\d+\.\d+/.test(tag);
}

/** .dockerignore semantics (the subset it uses): last matching pattern wins, `!` re-includes, a match on a parent directory covers its contents. */
function dockerIgnored(patterns: string[], file: string): boolean {
  const toRegex = (pattern: string) => {
    const p = pattern.replace(/^\/+|\/+$/g, '');
    let re = '';
    for (let i = 0; i < p.length; i++) {
      const c = p[i]!;
      if (c === '*' && p[i + 1] === '*') {
        // `**/` matches any number of directories, none included.
        if (p[i + 2] === '/') {
          re += '(?:.*/)?';
          i += 2;
        } else {
          re += '.*';
          i += 1;
        }
      } else if (c === '*') re += '[^/]*';
      else if (c === '?') re += '[^/]';
      else re += /[.+^${}()|[\]\\]/.test(c) ? '\\' + c : c;
    }
    return new RegExp(`^${re}$`);
  };
  const parts = file.split('/');
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const re = toRegex(negate ? raw.slice(1) : raw);
    if (candidates.some((c) => re.test(c))) ignored = !negate;
  }
  return ignored;
}

const dockerfile = fs.readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
const stages = parseDockerfile(dockerfile);
const stageNames = new Set(stages.map((s) => s.name).filter(Boolean));
const stage = (name: string) => stages.find((s) => s.name === name);
const last = <T>(xs: T[]) => xs[xs.length - 1];
const instr = (s: Stage, keyword: string) => s.instructions.filter((i) => i.keyword === keyword);
/** Final images: the default (last) stage and the CUDA target. */
const finals = [stages.at(-1)!, stage('cuda')].filter((s): s is Stage => s !== undefined);

describe('Dockerfile', () => {
  it('is multi-stage, with the CPU runtime as the last (default) stage and a cuda target', () => {
    assert.ok(stages.length >= 3, `${stages.length} stages`);
    assert.equal(stages.at(-1)!.name, 'runtime');
    assert.ok(stage('cuda'), 'a stage named cuda (docker build --target cuda)');
    assert.equal(stageNames.size, stages.filter((s) => s.name).length, 'stage names are unique');
  });

  it('pins every external base image to an exact version tag or digest, never latest', () => {
    for (const s of stages) {
      if (stageNames.has(s.image.toLowerCase())) continue; // FROM <earlier stage>
      assert.ok(pinned(s.image), `FROM ${s.image} is not pinned to an exact version`);
    }
    for (const s of stages) {
      for (const c of instr(s, 'COPY')) {
        const from = /--from=(\S+)/.exec(c.args)?.[1];
        if (from && !stageNames.has(from.toLowerCase())) assert.ok(pinned(from), `COPY --from=${from} (line ${c.line}) is not pinned`);
      }
    }
  });

  it('copies only from earlier stages', () => {
    stages.forEach((s, i) => {
      for (const c of instr(s, 'COPY')) {
        const from = /--from=(\S+)/.exec(c.args)?.[1]?.toLowerCase();
        if (from && stageNames.has(from)) assert.ok(stages.slice(0, i).some((e) => e.name === from), `line ${c.line}: --from=${from} is not an earlier stage`);
      }
    });
  });

  for (const s of finals) {
    describe(`final image '${s.name}'`, () => {
      it('runs as a non-root numeric user (so Kubernetes runAsNonRoot can verify it)', () => {
        const user = last(instr(s, 'USER'));
        assert.ok(user, 'has a USER');
        const [uid] = user.args.split(':');
        assert.match(uid!, /^\d+$/, `USER ${user.args} is not numeric`);
        assert.notEqual(Number(uid), 0, 'USER is root');
      });

      it('has a HEALTHCHECK on /health that uses node, not curl or wget', () => {
        const hc = last(instr(s, 'HEALTHCHECK'));
        assert.ok(hc, 'has a HEALTHCHECK');
        assert.match(hc.args, /--interval=\d+s/);
        assert.match(hc.args, /--start-period=\d+s/);
        const cmd = execForm(hc.args.replace(/^(--\S+\s+)*CMD\s+/, ''));
        assert.ok(cmd, 'HEALTHCHECK CMD in exec form');
        assert.equal(cmd[0], 'node');
        assert.match(cmd.join(' '), /\/health/);
        assert.doesNotMatch(hc.args, /\bcurl\b|\bwget\b/);
      });

      it('starts `node bin/mop.js serve` under tini and exposes 8000, with settings from the environment', () => {
        assert.deepEqual(execForm(last(instr(s, 'ENTRYPOINT'))!.args), ['tini', '--', 'node', 'bin/mop.js']);
        assert.equal(execForm(last(instr(s, 'CMD'))!.args)![0], 'serve');
        assert.ok(instr(s, 'EXPOSE').some((e) => e.args.split(/\s+/).includes('8000')));
        const env = instr(s, 'ENV').map((e) => e.args).join(' ');
        assert.match(env, /NODE_ENV=production/);
        assert.match(env, /PORT=8000/);
      });

      it("installs the distribution's tini for PID 1 (it forwards SIGTERM to node and reaps zombies), without apt lists left behind", () => {
        const install = instr(s, 'RUN').find((r) => /\bapt-get install\b[^&]*\btini\b/.test(r.args));
        assert.ok(install, 'a RUN that apt-get installs tini');
        assert.match(install.args, /apt-get update/);
        assert.match(install.args, /--no-install-recommends/);
        assert.match(install.args, /rm -rf \/var\/lib\/apt\/lists\/\*/);
        const user = last(instr(s, 'USER'))!;
        assert.ok(install.line < user.line, 'installed before USER drops root');
      });

      it('holds the built app, production node_modules, the bundled model and calibration data', () => {
        const copies = instr(s, 'COPY').map((c) => c.args);
        for (const want of [/--from=build \/app\/dist /, /--from=deps(-cuda)? \/app\/node_modules /, /^models /, /^data /, /^bin /, /^package\.json /]) {
          assert.ok(copies.some((c) => want.test(c)), `no COPY matching ${want}`);
        }
        assert.ok(!copies.some((c) => /^src\b|--from=build \/app\/node_modules/.test(c)), 'no sources or dev dependencies in the final image');
      });
    });
  }

  it('builds the CUDA image on a CUDA 12 + cuDNN runtime base with the CUDA provider installed at build time', () => {
    const cuda = stage('cuda')!;
    assert.match(cuda.image, /^nvidia\/cuda:12\.\d+\.\d+-cudnn[0-9]*-runtime-ubuntu\d+\.\d+$/);
    const depsCuda = stage('deps-cuda');
    assert.ok(depsCuda, 'a deps-cuda stage');
    assert.ok(
      instr(depsCuda, 'ENV').some((e) => /ONNXRUNTIME_NODE_INSTALL=cuda12/.test(e.args)) || instr(depsCuda, 'RUN').some((r) => /ONNXRUNTIME_NODE_INSTALL=cuda12|--onnxruntime-node-install=cuda12/.test(r.args)),
      'ONNXRUNTIME_NODE_INSTALL=cuda12',
    );
    assert.ok(
      instr(depsCuda, 'RUN').some((r) => /node node_modules\/onnxruntime-node\/script\/install\.js/.test(r.args) && /libonnxruntime_providers_cuda\.so/.test(r.args)),
      'runs the install script with node (npm >= 11 skips it: allowScripts denies it) and checks the provider library',
    );
    assert.ok(instr(cuda, 'COPY').some((c) => /--from=deps-cuda /.test(c.args)), 'the cuda image takes node_modules from deps-cuda');
    assert.ok(!instr(stages.at(-1)!, 'COPY').some((c) => /--from=deps-cuda/.test(c.args)), 'the CPU image has no CUDA provider');
    assert.deepEqual(execForm(last(instr(cuda, 'CMD'))!.args), ['serve', '--device', 'cuda']);
  });

  it('never runs the CUDA download in the CPU path (install scripts off; no ONNXRUNTIME_NODE_INSTALL)', () => {
    for (const name of ['build', 'deps', 'runtime']) {
      const s = stage(name)!;
      for (const i of s.instructions) assert.doesNotMatch(i.args, /ONNXRUNTIME_NODE_INSTALL|onnxruntime-node-install|script\/install/, `${name} line ${i.line}`);
      for (const r of instr(s, 'RUN').filter((x) => /\bnpm (ci|install|rebuild)\b/.test(x.args))) assert.match(r.args, /--ignore-scripts/, `${name} line ${r.line}`);
    }
  });

  it("denies onnxruntime-node's install script in package.json (npm >= 11) and allows esbuild's", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8'));
    assert.deepEqual(pkg.allowScripts, { esbuild: true, 'onnxruntime-node': false });
    const npmrc = path.join(repoRoot, '.npmrc');
    if (fs.existsSync(npmrc)) assert.doesNotMatch(fs.readFileSync(npmrc, 'utf8'), /onnxruntime-node-install/, 'npm 11 warns on every command about this .npmrc key');
  });
});

describe('.dockerignore', () => {
  const patterns = fs
    .readFileSync(path.join(repoRoot, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

  it('lets in every path the Dockerfile copies from the build context', () => {
    for (const s of stages) {
      for (const c of instr(s, 'COPY')) {
        if (/--from=/.test(c.args)) continue;
        const parts = (execForm(c.args) ?? c.args.split(/\s+/)).filter((p) => !p.startsWith('--'));
        for (const src of parts.slice(0, -1)) {
          assert.ok(fs.existsSync(path.join(repoRoot, src)), `COPY ${src}: not in the repository`);
          assert.ok(!dockerIgnored(patterns, src), `COPY ${src} (line ${c.line}) is excluded by .dockerignore`);
        }
      }
    }
  });

  it('keeps out dependencies, build output, VCS data, tests and local secrets', () => {
    for (const p of ['node_modules', 'node_modules/onnxruntime-node/package.json', 'dist/cli/mop.js', '.git/config', 'test/deploy/dockerfile.test.ts', 'deploy/helm/mop-serve/values.yaml', '.env', 'tmp/x', 'src/server/debug.log']) {
      assert.ok(dockerIgnored(patterns, p), `${p} would be sent to the build`);
    }
    assert.ok(!dockerIgnored(patterns, 'src/server/main.ts'));
    assert.ok(!dockerIgnored(patterns, 'models/stories260K/stories260K.bin'));
  });
});

describe('the HEALTHCHECK command', () => {
  let server: RunningServer;
  before(async () => {
    server = await startServer({ ...defaultServerConfig, port: 0, host: '127.0.0.1', threads: 1, maxBatch: 1 }, { log: () => {} });
  });
  after(async () => {
    await server?.close();
  });

  const healthcheck = () => {
    const hc = last(instr(stages.at(-1)!, 'HEALTHCHECK'))!;
    return execForm(hc.args.replace(/^(--\S+\s+)*CMD\s+/, ''))!;
  };
  /** Exit status of the HEALTHCHECK command (asynchronously: the server runs in this process). */
  const run = (port: number) =>
    new Promise<number | null>((resolve, reject) => {
      const [cmd, ...args] = healthcheck();
      assert.equal(cmd, 'node');
      const child = spawn(process.execPath, args, { env: { ...process.env, PORT: String(port) }, stdio: 'ignore', timeout: 10_000 });
      child.on('error', reject);
      child.on('close', (code) => resolve(code));
    });

  it('exits 0 against a serving server', async () => {
    assert.equal(await run(server.port), 0);
  });

  it('exits 1 when nothing answers', async () => {
    const { port } = server;
    await server.close();
    assert.equal(await run(port), 1);
  });

  it('is the same command in both final images', () => {
    assert.deepEqual(last(instr(stage('cuda')!, 'HEALTHCHECK'))!.args, last(instr(stages.at(-1)!, 'HEALTHCHECK'))!.args);
  });
});

describe('a Dockerfile linter, where one is installed', () => {
  // dockerfile-utils (the linter of the VS Code Docker extension) is on npm but not a dependency
  // of this project; DOCKERFILE_UTILS=/path/to/node_modules/dockerfile-utils points at a copy.
  it('dockerfile-utils reports no problem, with every optional check as an error', (t) => {
    type Linter = { validate(content: string, settings?: Record<string, number>): { message: string; range: { start: { line: number } } }[] };
    let linter: Linter;
    try {
      linter = createRequire(import.meta.url)(process.env.DOCKERFILE_UTILS ?? 'dockerfile-utils') as Linter;
    } catch {
      t.skip('dockerfile-utils is not installed (npm i -D dockerfile-utils, or set DOCKERFILE_UTILS)');
      return;
    }
    const error = 2;
    const settings = Object.fromEntries(
      ['deprecatedMaintainer', 'directiveCasing', 'emptyContinuationLine', 'instructionCasing', 'instructionCmdMultiple', 'instructionEntrypointMultiple', 'instructionHealthcheckMultiple', 'instructionJSONInSingleQuotes', 'instructionWorkdirRelative'].map((k) => [k, error]),
    );
    const problems = linter.validate(dockerfile, settings).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
    assert.deepEqual(problems, []);
    assert.ok(linter.validate('FROM a\nUSER\n', settings).length > 0, 'the linter does find problems');
  });
});
