/**
 * .ci/apt-archive-uri.sh: CI takes the bookworm-backports mirror from the machine's own apt
 * sources. The bash function runs on sample /etc/apt trees in a temp dir (never on this machine's).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { repoRoot } from './queried-metrics.ts';

const script = path.join(repoRoot, '.ci/apt-archive-uri.sh');
const dirs: string[] = [];
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Writes `files` (paths relative to a fresh root) and returns the root. */
function tree(files: Record<string, string>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'apt-uri-'));
  dirs.push(root);
  fs.mkdirSync(path.join(root, 'etc/sources.list.d'), { recursive: true });
  fs.mkdirSync(path.join(root, 'lists'), { recursive: true });
  for (const [rel, text] of Object.entries(files)) fs.writeFileSync(path.join(root, rel), text);
  return root;
}

function archiveUri(root: string, suite = 'bookworm'): { status: number | null; stdout: string } {
  const r = spawnSync('bash', ['-c', 'set -euo pipefail; source "$1"; debian_archive_uri "$2" "$3/etc" "$3/lists"', 'test', script, suite, root], { encoding: 'utf8' });
  assert.equal(r.stderr, '', 'no bash errors');
  return { status: r.status, stdout: r.stdout.trim() };
}

const deb822 = `Types: deb
# a comment inside the stanza
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
`;

describe('debian_archive_uri (.ci/apt-archive-uri.sh)', () => {
  it('finds the bookworm URI in a deb822 .sources file, without its trailing slash', () => {
    assert.deepEqual(archiveUri(tree({ 'etc/sources.list.d/debian.sources': deb822 })), { status: 0, stdout: 'http://mirror.example/debian' });
  });

  it('reads one-line entries with bracketed options and ignores deb-src, comments and other suites', () => {
    const list = [
      '# deb http://commented.example/debian bookworm main',
      'deb-src http://source.example/debian bookworm main',
      'deb http://other.example/debian bookworm-security main',
      'deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] https://one-line.example/debian bookworm main contrib # trailing',
    ].join('\n');
    assert.deepEqual(archiveUri(tree({ 'etc/sources.list': list })), { status: 0, stdout: 'https://one-line.example/debian' });
  });

  it('skips a disabled deb822 stanza and one without the main component', () => {
    const sources = 'Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\nTypes: deb\nURIs: http://stable.example/repo\nSuites: bookworm\nComponents: stable\n\nTypes: deb deb-src\nURIs: http://on.example/debian\nSuites: bookworm\nComponents: main\n';
    assert.deepEqual(archiveUri(tree({ 'etc/sources.list.d/x.sources': sources })), { status: 0, stdout: 'http://on.example/debian' });
  });

  it('prefers the source whose downloaded Release file says Origin: Debian over a third-party bookworm', () => {
    const root = tree({
      'etc/sources.list.d/a-thirdparty.list': 'deb http://thirdparty.example/apt bookworm main\n',
      'etc/sources.list.d/debian.sources': deb822,
      'lists/thirdparty.example_apt_dists_bookworm_InRelease': 'Origin: Third Party\nSuite: bookworm\n',
      'lists/mirror.example_debian_dists_bookworm_InRelease': 'Origin: Debian\nLabel: Debian\nSuite: stable\n',
    });
    assert.deepEqual(archiveUri(root), { status: 0, stdout: 'http://mirror.example/debian' });
  });

  it('without downloaded lists, takes the first source in apt order (sources.list, then parts by name)', () => {
    const root = tree({
      'etc/sources.list.d/b.sources': deb822,
      'etc/sources.list.d/a.list': 'deb http://a-list.example/debian bookworm main\n',
    });
    assert.deepEqual(archiveUri(root), { status: 0, stdout: 'http://a-list.example/debian' });
  });

  it('fails (exit 1, no output) when no source serves the suite', () => {
    const root = tree({ 'etc/sources.list.d/node.sources': 'Types: deb\nURIs: https://node.example/node_20.x\nSuites: nodistro\nComponents: main\n' });
    assert.deepEqual(archiveUri(root), { status: 1, stdout: '' });
    assert.deepEqual(archiveUri(tree({})), { status: 1, stdout: '' });
  });

  it('is what .ci/run uses for the backports entry, with no archive host written into it', () => {
    const run = fs.readFileSync(path.join(repoRoot, '.ci/run'), 'utf8');
    assert.match(run, /source \.ci\/apt-archive-uri\.sh/);
    assert.match(run, /echo "deb \$archive bookworm-backports main"/);
    assert.doesNotMatch(run, /deb https?:\/\//);
  });
});
