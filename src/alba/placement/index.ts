// Public face of alba/placement/: the pure placement of fragments on ASDs and the policy choice.
// Imported by alba/client/ (and later maintenance) through this file.
export {
  checkPlacement, chooseFirstSatisfiable, placeableCount, placeChunk, placeMore, seededRandom, validatePolicy,
  type PlacementCandidate, type PlacementResult, type Policy, type RandomSource,
} from "./placement.js";
