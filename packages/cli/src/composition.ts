import type { ServiceDefinition } from '@btt/node'

/**
 * The services this build of btt-node sells. This is the composition root: the only place that
 * imports concrete services. Seeding, storage and proxy are added here as they land.
 */
export const SERVICES: readonly ServiceDefinition[] = []
