import type { ServiceDefinition } from '@btt/node'
import { seedingService } from '@btt/service-seeding/service'
import { proxyService } from '@btt/service-proxy/service'
import { storageService } from '@btt/service-storage/service'

/**
 * The services this build of btt-node sells. This is the composition root: the only place that
 * imports concrete services. Storage and proxy are added here as they land.
 */
export const SERVICES: readonly ServiceDefinition[] = [seedingService as unknown as ServiceDefinition, storageService as unknown as ServiceDefinition, proxyService as unknown as ServiceDefinition]
