/**
 * llama.cpp for this project's benchmarks and tests, through the `node-llama-cpp` package.
 *
 * node-llama-cpp is NOT a dependency of this project (it is large and pulls GPU builds): it is
 * installed on demand into an ignored side folder (default `.peer/`) with its prebuilt CPU binary
 * (`@node-llama-cpp/<platform>`), from the npm registry this machine is configured for,
 * `--ignore-scripts` so its postinstall never downloads or compiles llama.cpp, and loaded with
 * `build: 'never'`, `gpu: false`. It is imported dynamically from that folder, so nothing here
 * needs its types: the few used are declared below.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

export const PEER_VERSION = '3.22.1';

/** The side folder node-llama-cpp is installed into (ignored by git). */
export const DEFAULT_PEER_DIR = '.peer';

/** The prebuilt-binary package of this platform, or null when node-llama-cpp ships none we know. */
export function binaryPackage(platform = process.platform, arch = process.arch): string | null {
  const table: Record<string, string> = {
    'linux-x64': '@node-llama-cpp/linux-x64',
    'linux-arm64': '@node-llama-cpp/linux-arm64',
    'darwin-arm64': '@node-llama-cpp/mac-arm64-metal',
    'darwin-x64': '@node-llama-cpp/mac-x64',
    'win32-x64': '@node-llama-cpp/win-x64',
  };
  return table[`${platform}-${arch}`] ?? null;
}

/** node-llama-cpp's entry point inside the side folder. */
export function peerEntry(dir: string): string {
  return path.resolve(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
}

/**
 * Make sure node-llama-cpp and its prebuilt binary are in `dir` (installing them with npm from the
 * registry when missing). Returns the entry point; throws with the reason when it cannot.
 */
export function ensurePeer(dir: string, version: string, log: (line: string) => void): string {
  const entry = peerEntry(dir);
  const bin = binaryPackage();
  if (!bin) throw new Error(`node-llama-cpp ships no prebuilt CPU binary known to this script for ${process.platform}-${process.arch}`);
  const binDir = path.resolve(dir, 'node_modules', ...bin.split('/'));
  if (fs.existsSync(entry) && fs.existsSync(binDir)) return entry;
  fs.mkdirSync(dir, { recursive: true });
  const args = ['install', '--prefix', dir, '--no-save', '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund', `node-llama-cpp@${version}`, `${bin}@${version}`];
  log(`installing the peer: npm ${args.join(' ')}`);
  const r = spawnSync('npm', args, { encoding: 'utf8', timeout: 600_000, env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' } });
  if (r.status !== 0 || !fs.existsSync(entry) || !fs.existsSync(binDir)) {
    const why = r.error ? r.error.message : `npm exited with ${r.status}: ${(r.stderr || r.stdout || '').trim().split('\n').slice(-5).join(' | ')}`;
    throw new Error(`could not install node-llama-cpp@${version} into ${dir}: ${why}`);
  }
  return entry;
}

// The few node-llama-cpp types used here (it is imported from a path at run time).
/** One input token of controlledEvaluate: plain, or asking for the next token's logits / greedy pick. */
export type NlcControlledInput = number | [number, { generateNext: { token?: boolean; logits?: boolean; options?: { temperature?: number } } }];
export interface NlcSequence {
  evaluate(tokens: number[], options?: { temperature?: number }): AsyncGenerator<number, void, unknown>;
  /** Per input token, what was asked for it: the next token and the raw logits of the whole vocabulary. */
  controlledEvaluate(input: NlcControlledInput[]): Promise<({ next: { token?: number | null; logits?: Map<number, number> } } | undefined)[]>;
  clearHistory(): Promise<void>;
}
export interface NlcContext {
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
}
export interface NlcModel {
  /** Token ids of `text` as llama.cpp's tokenizer encodes it (no BOS added here). */
  tokenize(text: string, specialTokens?: boolean): number[];
  createContext(o: { contextSize: number; batchSize: number; threads: number; sequences: number; flashAttention: boolean }): Promise<NlcContext>;
  dispose(): Promise<void>;
}
export interface NlcLlama {
  loadModel(o: { modelPath: string; gpuLayers: number }): Promise<NlcModel>;
  dispose(): Promise<void>;
  readonly buildType: string;
  readonly systemInfo: string;
  readonly llamaCppRelease: { repo: string; release: string };
}
export interface NlcModule {
  getLlama(o: Record<string, unknown>): Promise<NlcLlama>;
}

export async function loadPeer(entry: string, threads: number): Promise<NlcLlama> {
  const mod = (await import(pathToFileURL(entry).href)) as NlcModule;
  return mod.getLlama({ gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false, logLevel: 'error', maxThreads: threads });
}
