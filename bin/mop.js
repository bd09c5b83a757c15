#!/usr/bin/env node
// Entry point of the `mop` command: runs the compiled CLI (built by `npm run build` / on install).
import('../dist/cli/mop.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli')) {
    console.error('mop: the CLI is not built yet; run `npm run build` (npm install does it for you)');
    process.exit(1);
  }
  throw err;
});
