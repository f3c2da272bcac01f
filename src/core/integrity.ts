/**
 * The DR site's integrity policy shared by the configuration (`integrity.recheck`) and the stores
 * (store/common/checked.ts): how long a generation's whole-image check stays good before a commit
 * that builds on it reads it again. A day, as a daily scrub would: damage younger than that is
 * found by the first check after it (docs/store-format.md, "Bit rot never spreads").
 */
export const DEFAULT_RECHECK_AFTER_MS = 24 * 3600_000;
