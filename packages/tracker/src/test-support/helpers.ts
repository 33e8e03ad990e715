import { createSocket, type Socket } from 'node:dgram'
import { request } from 'node:http'
import { decode, isDict, type BDict } from '@btt/wire'

export function h20 (n: number, tag = 0): Buffer {
  const b = Buffer.alloc(20, tag)
  b.writeUInt32BE(n, 16)
  return b
}

export function esc (b: Uint8Array): string {
  return [...b].map(c => '%' + c.toString(16).padStart(2, '0')).join('')
}

export async function rawGet (port: number, path: string, method = 'GET'): Promise<{ status: number, body: BDict }> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, agent: false }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        try {
          const v = decode(Buffer.concat(chunks))
          if (!isDict(v)) throw new Error('not a dict')
          resolve({ status: res.statusCode ?? 0, body: v })
        } catch (err) { reject(err as Error) }
      })
    })
    req.on('error', reject)
    req.end()
  })
}

export function failureOf (body: BDict): string | undefined {
  const f = body.get('failure reason')
  return f instanceof Uint8Array ? Buffer.from(f).toString() : undefined
}

export function announcePath (o: { ih: Buffer, pid: Buffer, port?: number, left?: number, extra?: string }): string {
  return `/announce?info_hash=${esc(o.ih)}&peer_id=${esc(o.pid)}&port=${o.port ?? 6881}&uploaded=0&downloaded=0&left=${o.left ?? 100}${o.extra ?? ''}`
}

export class UdpClient {
  readonly sock: Socket
  private waiters: Array<(b: Buffer) => void> = []
  private queue: Buffer[] = []

  private constructor (sock: Socket) {
    this.sock = sock
    sock.on('message', m => {
      const w = this.waiters.shift()
      if (w !== undefined) w(m)
      else this.queue.push(m)
    })
  }

  static async open (host = '127.0.0.1'): Promise<UdpClient> {
    const s = createSocket(host.includes(':') ? 'udp6' : 'udp4')
    await new Promise<void>(resolve => { s.bind(0, host, () => { resolve() }) })
    return new UdpClient(s)
  }

  async send (port: number, b: Buffer, host = '127.0.0.1', timeoutMs = 1000): Promise<Buffer | undefined> {
    this.sock.send(b, port, host)
    const q = this.queue.shift()
    if (q !== undefined) return q
    return await new Promise(resolve => {
      const t = setTimeout(() => { this.waiters = this.waiters.filter(w => w !== done); resolve(undefined) }, timeoutMs)
      const done = (m: Buffer): void => { clearTimeout(t); resolve(m) }
      this.waiters.push(done)
    })
  }

  async connect (port: number, host = '127.0.0.1'): Promise<Buffer> {
    const req = Buffer.alloc(16)
    req.writeBigUInt64BE(0x41727101980n, 0)
    req.writeUInt32BE(0, 8)
    req.writeUInt32BE(7, 12)
    const r = await this.send(port, req, host)
    if (r === undefined || r.readUInt32BE(0) !== 0) throw new Error('connect failed')
    return r.subarray(8, 16)
  }

  close (): void { this.sock.close() }
}

export function udpAnnounce (cid: Buffer, o: { ih: Buffer, pid: Buffer, port: number, left?: bigint, event?: number, numwant?: number, tid?: number }): Buffer {
  const b = Buffer.alloc(98)
  cid.copy(b, 0)
  b.writeUInt32BE(1, 8)
  b.writeUInt32BE(o.tid ?? 42, 12)
  o.ih.copy(b, 16)
  o.pid.copy(b, 36)
  b.writeBigUInt64BE(o.left ?? 100n, 64)
  b.writeUInt32BE(o.event ?? 0, 80)
  b.writeInt32BE(o.numwant ?? -1, 92)
  b.writeUInt16BE(o.port, 96)
  return b
}

export function udpError (b: Buffer | undefined): string | undefined {
  if (b === undefined || b.readUInt32BE(0) !== 3) return undefined
  return b.subarray(8).toString()
}
