#!/usr/bin/env -S node --max-semi-space-size=4
// --max-semi-space-size=4 (MiB): V8's young generation otherwise grows to 2 × 16 MiB while
// modules load and never shrinks back, adding ~20 MB to an idle node's RSS (bench: start.idle_rss).
// Bulk data lives in Buffers outside the V8 heap, so a smaller young generation costs little.
import { execute } from '@oclif/core'

await execute({ dir: import.meta.url })
