/** Recorded in every backup's metadata; bump with package.json. */
export const TOOL_VERSION = '0.1.0';
