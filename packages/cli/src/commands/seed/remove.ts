import { Args, Flags } from '@oclif/core'
import { BaseCommand } from '../../base.js'
import { INFOHASH } from '../../seed-format.js'

export default class SeedRemove extends BaseCommand {
  static override description = 'Remove a torrent from the node (its data stays unless --delete-data)'
  static override enableJsonFlag = true

  static override args = {
    infohash: Args.string({ description: '40 hex digits', required: true })
  }

  static override flags = {
    'delete-data': Flags.boolean({ description: 'also delete the downloaded or seeded files', default: false })
  }

  async run (): Promise<{ removed: string, deletedData: boolean }> {
    const { args, flags } = await this.parse(SeedRemove)
    if (!INFOHASH.test(args.infohash)) this.error(`"${args.infohash}" is not an infohash (40 hex digits)`, { exit: 2 })
    const client = await this.client(this.homeFrom(flags))
    const res = await client.serviceRequest<{ removed: string, deletedData: boolean }>('seeding', 'DELETE',
      `/torrents/${args.infohash.toLowerCase()}${flags['delete-data'] ? '?delete_data=true' : ''}`)
    this.log(`removed ${res.removed}${res.deletedData ? ' and deleted its data' : ''}`)
    return res
  }
}
