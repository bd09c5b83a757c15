import { defaultModelPath, loadModel } from '../../src/runtime/model/load.ts';
import type { LoadedModel } from '../../src/runtime/model/loaded-model.ts';
import { createTokenizer } from '../../src/runtime/tokenizer/create.ts';
import type { Tokenizer } from '../../src/runtime/tokenizer/types.ts';
import { type CalibrationSet, loadCalibration } from '../../src/mop/calibration.ts';

/** The bundled stories260K, its tokenizer and a small calibration set (small keeps the suite fast). */
export interface Bundled {
  model: LoadedModel;
  tokenizer: Tokenizer;
  calibration: CalibrationSet;
}

let cached: Promise<Bundled> | undefined;

export function bundled(): Promise<Bundled> {
  cached ??= (async () => {
    const model = await loadModel(defaultModelPath());
    const tokenizer = createTokenizer(model.tokenizer);
    const calibration = await loadCalibration(tokenizer, { samples: 8, seqLen: 64, seed: 1 });
    return { model, tokenizer, calibration };
  })();
  return cached;
}
