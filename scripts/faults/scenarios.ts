/** Every bench:faults scenario, in the order a run takes them (--scenarios picks among their ids). */
import type { ScenarioDef } from './harness.ts';
import { disconnectsScenario, stalledReadersScenario } from './scenario-clients.ts';
import { crashScenario, restartScenario, stallScenario } from './scenario-engine.ts';
import { generationFloodScenario, scoringFloodScenario } from './scenario-floods.ts';
import { badCalibrationScenario } from './scenario-prune-input.ts';
import { sigtermLoadScenario, sigtermStartupScenario } from './scenario-signals.ts';
import { manifestWriteFailureScenario } from './scenario-store.ts';
import { unloadGenerationScenario, unloadScoringScenario } from './scenario-unload.ts';

export const allScenarios: readonly ScenarioDef[] = [
  crashScenario,
  restartScenario,
  stallScenario,
  scoringFloodScenario,
  generationFloodScenario,
  stalledReadersScenario,
  disconnectsScenario,
  unloadGenerationScenario,
  unloadScoringScenario,
  badCalibrationScenario,
  sigtermStartupScenario,
  sigtermLoadScenario,
  manifestWriteFailureScenario,
];
