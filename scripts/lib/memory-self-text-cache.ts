import type { SelfTextCache } from '../../src/mop/self-text.ts';

/**
 * Recovery text sampled from a model, kept in memory for one benchmark run, so its many prunes of
 * the same dense model sample once per recipe (the server keeps it in the model store). Keyed by
 * the sampling recipe alone: use one cache per model.
 */
export function memorySelfTextCache(): SelfTextCache {
  const kept = new Map<string, number[]>();
  return {
    load: async (recipe) => kept.get(JSON.stringify(recipe)),
    save: async (recipe, tokens) => void kept.set(JSON.stringify(recipe), [...tokens]),
  };
}
