/**
 * The container and deployment files (docker/, deploy/) checked against the real tools and the
 * real node, so they cannot drift from the code:
 *
 * - deploy/btt-node.service: the hardening directives are there; `systemd-analyze verify` accepts
 *   it (on a copy whose /opt/btt-node is this checkout, so ExecStart names an existing binary);
 *   `systemd-analyze security --offline` rates it; its ExecStart with its Environment= runs Node 24.
 * - docker/compose.yaml: `docker compose config` or `docker-compose config` accepts it.
 * - docker/prometheus.yml: parses as YAML (python3-yaml) and scrapes the admin API's /metrics on
 *   the default port with a bearer token file the compose file provides.
 * - docker/Dockerfile: exposes the ports the config schema defaults to, runs as a fixed non-root
 *   uid, keeps the API on loopback, health-checks through `btt-node status`.
 * - deploy/config.example.toml: holds every key of the effective config with its default (the
 *   real `btt-node config get` of a fresh home), and a node starts with it.
 * - deploy/grafana-dashboard.json: parses, and every metric it queries is exported by a real
 *   node started on loopback with every service enabled (and, for the node's own metrics, is
 *   named in the source).
 *
 * Missing tools (systemd-analyze: Debian `systemd`; compose: `docker-compose`; python3-yaml) skip
 * locally with the reason, and FAIL with CI=true (.ci/run installs them). Only loopback is used.
 */
import { spawnSync } from 'node:child_process'
import { copyFile, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { homePaths, readApiToken, readConfigFile } from '@btt/node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { REPO_ROOT, runCli, SEEDING_LOOPBACK_ENV, startNodeProcess, tempHome, type NodeProcess } from './helpers/cli.js'

const CI = process.env.CI === 'true'
const file = (rel: string): string => join(REPO_ROOT, rel)
const read = async (rel: string): Promise<string> => await readFile(file(rel), 'utf8')

/** Where a command lives on PATH, or undefined. */
function which (bin: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' })
  return r.status === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : undefined
}

/** A tool the test needs: locally its absence skips (with the reason printed); in CI it fails. */
function tool (what: string, found: boolean, debianPackage: string): boolean {
  if (found) return true
  const reason = `${what} is not available: install the Debian package "${debianPackage}" (APT_PACKAGES in .ci/run)`
  if (CI) {
    // registered as a failing test, so CI can never pass by skipping
    it(`needs ${what}`, () => { throw new Error(reason) })
  } else {
    console.warn(`deploy.test.ts: skipping — ${reason}`)
  }
  return false
}

/** The lines `Key=value` of a unit's [Service] section, in order (repeated keys kept). */
function unitDirectives (text: string): Array<[string, string]> {
  const out: Array<[string, string]> = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';') || line.startsWith('[')) continue
    const eq = line.indexOf('=')
    if (eq > 0) out.push([line.slice(0, eq), line.slice(eq + 1)])
  }
  return out
}

/** Effective config of a freshly initialised home: the defaults, as `btt-node config get --json` prints them. */
let defaults: Record<string, any>
beforeAll(async () => {
  const home = await tempHome('btt-deploy-defaults-')
  const init = await runCli(['init', '--home', home])
  expect(init.code, init.stderr).toBe(0)
  const got = await runCli(['config', 'get', '--home', home, '--json'])
  expect(got.code, got.stderr).toBe(0)
  // --json prints { key, value }; without a key, value is the whole config
  defaults = (JSON.parse(got.stdout) as { value: Record<string, any> }).value
})

/** A file without its comment lines (Dockerfile, YAML): comments may name what the code must not do. */
const withoutComments = (text: string): string => text.split('\n').filter(l => !/^\s*#/.test(l)).join('\n')

const portOf = (multiaddr: string): number => Number(/\/tcp\/(\d+)/.exec(multiaddr)?.[1])

describe('deploy/btt-node.service', () => {
  it('runs a dedicated user with the hardening directives and an absolute ExecStart', async () => {
    const d = new Map<string, string[]>()
    for (const [k, v] of unitDirectives(await read('deploy/btt-node.service'))) d.set(k, [...(d.get(k) ?? []), v])
    const one = (k: string): string | undefined => d.get(k)?.at(-1)
    expect(one('User')).toBe('btt-node')
    expect(d.get('Environment')).toContain('BTT_NODE_HOME=/var/lib/btt-node')
    expect(one('ExecStart')).toMatch(/^\/opt\/btt-node\/node_modules\/\.bin\/btt-node start\b/)
    expect(one('ProtectSystem')).toBe('strict')
    expect(one('ReadWritePaths')).toBe('/var/lib/btt-node')
    expect(one('NoNewPrivileges')).toBe('yes')
    expect(one('PrivateTmp')).toBe('yes')
    expect(one('ProtectHome')).toBe('yes')
    for (const k of ['ProtectKernelTunables', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups']) expect(one(k), k).toBe('yes')
    expect(Number(one('LimitNOFILE'))).toBeGreaterThanOrEqual(65536)
    expect(one('RestrictAddressFamilies')?.split(/\s+/).sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX'])
    expect(one('CapabilityBoundingSet')).toBe('')
    expect(one('Restart')).toBe('on-failure')
    // an invalid config exits 78 (EX_CONFIG): restarting cannot fix it
    expect(one('RestartPreventExitStatus')).toBe('78')
    // V8's JIT needs writable+executable memory: this one would crash the node
    expect(d.has('MemoryDenyWriteExecute')).toBe(false)
  })

  it('its ExecStart, with the unit\'s Environment= and nothing else, runs the CLI on Node 24', async () => {
    const directives = unitDirectives(await read('deploy/btt-node.service'))
    const env: Record<string, string> = {}
    for (const [k, v] of directives) {
      if (k !== 'Environment') continue
      const [name, ...rest] = v.split('=')
      env[name as string] = rest.join('=').replaceAll('/opt/btt-node', REPO_ROOT.replace(/\/$/, ''))
    }
    const exec = (directives.find(([k]) => k === 'ExecStart')?.[1] ?? '').split(' ')[0] as string
    const r = spawnSync(exec.replace('/opt/btt-node', REPO_ROOT.replace(/\/$/, '')), ['--version'], { env, encoding: 'utf8' })
    expect(r.status, r.stderr).toBe(0)
    // the machine's node may be 18 or 20: the unit's PATH must pick the project's Node 24
    expect(r.stdout).toMatch(/node-v24\./)
  })

  const systemdAnalyze = which('systemd-analyze')
  if (tool('systemd-analyze', systemdAnalyze !== undefined, 'systemd')) {
    describe('systemd-analyze', () => {
      let unit: string
      beforeAll(async () => {
        // The unit names /opt/btt-node, which does not exist here, and verify refuses a missing
        // ExecStart binary: check a copy that points at this checkout (the same layout) instead.
        const dir = await mkdtemp(join(tmpdir(), 'btt-unit-'))
        unit = join(dir, 'btt-node.service')
        await writeFile(unit, (await read('deploy/btt-node.service')).replaceAll('/opt/btt-node', REPO_ROOT.replace(/\/$/, '')))
      })

      it('verify accepts the unit', () => {
        const r = spawnSync(systemdAnalyze as string, ['verify', unit], { encoding: 'utf8' })
        expect(r.status, r.stdout + r.stderr).toBe(0)
        // verify exits 0 on unknown keys (it only warns): a typo in a hardening directive must fail too
        expect(r.stderr, r.stderr).not.toMatch(/Unknown (key|section)|Failed to parse|ignoring/i)
      })

      it('security --offline rates its exposure 2.0 or lower ("OK")', () => {
        const r = spawnSync(systemdAnalyze as string, ['security', '--offline=true', '--no-pager', unit], { encoding: 'utf8' })
        expect(r.status, r.stdout + r.stderr).toBe(0)
        const m = /Overall exposure level for btt-node\.service: ([\d.]+)/.exec(r.stdout)
        expect(m, r.stdout).not.toBeNull()
        expect(Number(m?.[1])).toBeLessThanOrEqual(2.0)
      })
    })
  }
})

describe('docker/Dockerfile', () => {
  it('builds on node:24-slim, runs as a fixed non-root uid with the home as a volume, and starts with --init', async () => {
    const df = await read('docker/Dockerfile')
    const froms = [...df.matchAll(/^FROM\s+(\S+)/gm)].map(m => m[1])
    expect(froms.length).toBeGreaterThanOrEqual(2)
    expect(df).toMatch(/^ARG NODE_IMAGE=node:24-slim$/m)
    expect(froms.every(f => f === '${NODE_IMAGE}')).toBe(true)
    expect(df).toMatch(/^RUN npm ci$/m)
    expect(df).toMatch(/npx turbo run build --filter=btt-node\.\.\./)
    expect(df).toMatch(/^ARG BTT_UID=10001$/m)
    expect(df).toMatch(/^USER btt$/m)
    expect(df).toMatch(/^VOLUME \["\/home\/btt\/\.btt-node"\]$/m)
    expect(df).toMatch(/BTT_NODE_HOME=\/home\/btt\/\.btt-node/)
    expect(df).toMatch(/^HEALTHCHECK [^\n]*\\\n\s+CMD \["btt-node", "status", "--json"\]$/m)
    expect(df).toMatch(/^ENTRYPOINT \["btt-node"\]$/m)
    expect(df).toMatch(/^CMD \["start", "--init"\]$/m)
    // the admin API controls money: the image must not move it off loopback
    expect(withoutComments(df)).not.toMatch(/BTT_NODE_API_HOST|--api-host|api-host/)
    expect(defaults.api.host).toBe('127.0.0.1')
  })

  it('exposes exactly the ports the config defaults to', async () => {
    const exposed = new Set((/^EXPOSE (.+)$/m.exec(await read('docker/Dockerfile'))?.[1] ?? '').split(/\s+/))
    const p2p = portOf(defaults.p2p.listen[0])
    const bt = defaults.services.seeding.listen_port
    expect(new Set([`${p2p}/tcp`, `${defaults.discovery.port}/udp`, `${bt}/tcp`, `${bt}/udp`, `${defaults.api.port}/tcp`])).toEqual(exposed)
  })

  it('.dockerignore keeps host builds and dependencies out of the context but keeps the workspace manifests', async () => {
    const lines = (await read('.dockerignore')).split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#'))
    for (const l of ['node_modules', '**/node_modules', '**/dist', '.git', '!test/package.json', '!bench/package.json']) expect(lines).toContain(l)
  })
})

describe('docker/compose.yaml and docker/prometheus.yml', () => {
  it('wires ledger, tracker, node and prometheus, publishes the node\'s p2p and BitTorrent ports but never the API', async () => {
    const compose = await read('docker/compose.yaml')
    for (const s of ['ledger', 'tracker', 'node', 'metrics-token', 'prometheus']) expect(compose).toMatch(new RegExp(`^  ${s}:$`, 'm'))
    expect(compose).toContain('["ledger", "serve", "--host", "0.0.0.0", "--port", "7080"')
    expect(compose).toContain('["tracker", "serve", "--host", "0.0.0.0", "--port", "6969"')
    expect(compose).toContain('BTT_NODE_LEDGER_URL: "http://ledger:7080"')
    const p2p = portOf(defaults.p2p.listen[0])
    const bt = defaults.services.seeding.listen_port
    for (const p of [`"${p2p}:${p2p}/tcp"`, `"${defaults.discovery.port}:${defaults.discovery.port}/udp"`, `"${bt}:${bt}/tcp"`, `"${bt}:${bt}/udp"`]) expect(compose).toContain(p)
    expect(compose).not.toMatch(new RegExp(`^\\s*- "[^"]*${defaults.api.port}:`, 'm'))
    expect(withoutComments(compose)).not.toMatch(/BTT_NODE_API_HOST|--api-host/)
    // Prometheus reaches the loopback-only API by sharing the node's network namespace
    expect(compose).toContain('network_mode: "service:node"')
    expect(compose).toMatch(/^volumes:\n(  [a-z-]+:\n)+/m)
  })

  const dockerCompose = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' }).status === 0
    ? ['docker', 'compose']
    : which('docker-compose') !== undefined ? ['docker-compose'] : undefined
  if (tool('docker compose or docker-compose', dockerCompose !== undefined, 'docker-compose')) {
    it(`${(dockerCompose as string[]).join(' ')} config accepts the compose file`, () => {
      const [bin, ...pre] = dockerCompose as string[]
      const args = [...pre, '-p', 'btt-node', '-f', file('docker/compose.yaml')]
      const r = spawnSync(bin as string, [...args, 'config', '-q'], { encoding: 'utf8' })
      expect(r.status, r.stdout + r.stderr).toBe(0)
      const services = spawnSync(bin as string, [...args, 'config', '--services'], { encoding: 'utf8' })
      expect(services.status, services.stderr).toBe(0)
      expect(services.stdout.trim().split('\n').sort()).toEqual(['ledger', 'metrics-token', 'node', 'prometheus', 'tracker'])
      const volumes = spawnSync(bin as string, [...args, 'config', '--volumes'], { encoding: 'utf8' })
      expect(volumes.stdout.trim().split('\n').sort()).toEqual(['ledger-data', 'metrics-token', 'node-home', 'prometheus-data', 'tracker-data'])
    })
  }

  const python = which('python3')
  const yamlOk = python !== undefined && spawnSync(python, ['-c', 'import yaml'], { encoding: 'utf8' }).status === 0
  if (tool('python3 with PyYAML', yamlOk, 'python3-yaml')) {
    it('prometheus.yml parses and scrapes /metrics on the API\'s default port with the token the compose file provides', async () => {
      const r = spawnSync(python as string, ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', file('docker/prometheus.yml')], { encoding: 'utf8' })
      expect(r.status, r.stderr).toBe(0)
      const prom = JSON.parse(r.stdout) as { scrape_configs: Array<Record<string, any>> }
      const job = prom.scrape_configs.find(j => j.job_name === 'btt-node')
      expect(job).toBeDefined()
      expect(job?.metrics_path).toBe('/metrics')
      expect(job?.authorization?.type).toBe('Bearer')
      expect(job?.static_configs?.[0]?.targets).toEqual([`127.0.0.1:${defaults.api.port}`])
      // the credentials file lives in the volume the compose file mounts for Prometheus
      const credentials = job?.authorization?.credentials_file as string
      const dir = credentials.slice(0, credentials.lastIndexOf('/'))
      expect(await read('docker/compose.yaml')).toContain(`- metrics-token:${dir}:ro`)
      expect(await read('docker/compose.yaml')).toContain(`/metrics-token/${credentials.slice(dir.length + 1)}"]`)
    })
  }
})

describe('deploy/config.example.toml and deploy/grafana-dashboard.json against a real node', () => {
  let home: string
  let node: NodeProcess | undefined
  beforeAll(async () => {
    home = await tempHome('btt-deploy-example-')
    const init = await runCli(['init', '--home', home])
    expect(init.code, init.stderr).toBe(0)
    await copyFile(file('deploy/config.example.toml'), join(home, 'config.toml'))
  })
  afterAll(async () => {
    if (node !== undefined && node.child.exitCode === null) await node.signal('SIGTERM')
  })

  it('sets every key of the effective config, each to its default', async () => {
    // the file as written (no defaults filled in) equals the defaults: no key missing, none changed
    const raw = await readConfigFile(join(home, 'config.toml'))
    expect(raw).toEqual(defaults)
  })

  it('the real CLI accepts it: `btt-node config get` prints the defaults', async () => {
    const got = await runCli(['config', 'get', '--home', home, '--json'])
    expect(got.code, got.stderr).toBe(0)
    expect(JSON.parse(got.stdout)).toEqual({ key: '', value: defaults })
  })

  it('a node starts with it (every service enabled, on loopback) and exports every metric the dashboard queries', async () => {
    const dashboard = JSON.parse(await read('deploy/grafana-dashboard.json')) as { uid: string, title: string, panels: Array<{ type: string, targets?: Array<{ expr: string }> }>, templating: { list: Array<{ name: string }> } }
    expect(dashboard.uid).toBe('btt-node')
    expect(dashboard.templating.list.map(v => v.name)).toEqual(['datasource', 'instance'])
    const exprs = dashboard.panels.filter(p => p.type !== 'row').flatMap(p => {
      expect(p.targets?.length, JSON.stringify(p)).toBeGreaterThan(0)
      return (p.targets ?? []).map(t => t.expr)
    })
    const queried = new Set(exprs.flatMap(e => [...e.matchAll(/\bbtt_[a-z0-9_]+/g)].map(m => m[0])))
    // the panels the issue asks for
    for (const m of ['btt_seeding_earned_btt', 'btt_storage_earned_base_units_total', 'btt_proxy_earned_base_units_total', 'btt_proxy_bytes_total', 'btt_storage_retrieved_bytes_total', 'btt_seeding_upload_rate_bytes', 'btt_storage_proofs_total', 'btt_proxy_refusals_total', 'btt_process_cpu_seconds_total', 'btt_process_resident_memory_bytes', 'btt_api_requests_total']) {
      expect(queried, m).toContain(m)
    }

    node = await startNodeProcess(home, [], {
      ...SEEDING_LOOPBACK_ENV,
      BTT_NODE_SERVICES_STORAGE_ENABLED: 'true',
      BTT_NODE_SERVICES_PROXY_ENABLED: 'true'
    })
    const token = await readApiToken(homePaths(home))
    const res = await fetch(new URL('/metrics', node.apiUrl), { headers: { authorization: `Bearer ${token}` } })
    expect(res.status).toBe(200)
    const exposition = await res.text()
    const exported = new Set([...exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(m => {
      const name = m[1] as string
      // histograms and summaries are queried through their series
      return m[2] === 'histogram' ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : m[2] === 'summary' ? [name, `${name}_sum`, `${name}_count`] : [name]
    }))
    const missing = [...queried].filter(m => !exported.has(m))
    expect(missing, `not exported by the node:\n${missing.join('\n')}`).toEqual([])

    // The node's own metrics (not prom-client's process/nodejs defaults) are named in the source
    // too, so renaming one there fails here even before a dashboard shows nothing.
    const sources: string[] = []
    for (const dir of ['packages', 'services']) {
      for (const pkg of await readdir(file(dir))) {
        const src = join(file(dir), pkg, 'src')
        const walk = async (d: string): Promise<void> => {
          for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
            if (e.isDirectory()) await walk(join(d, e.name))
            else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) sources.push(await readFile(join(d, e.name), 'utf8'))
          }
        }
        await walk(src)
      }
    }
    const code = sources.join('\n').replaceAll('${METRICS_PREFIX}', 'btt_')
    for (const m of queried) {
      if (/^btt_(process|nodejs)_/.test(m)) continue
      expect(code.includes(`'${m}'`) || code.includes(`\`${m}\``), `${m} is not named in packages/*/src or services/*/src`).toBe(true)
    }
  })
})
