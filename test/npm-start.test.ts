import { spawn } from 'node:child_process'
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { AdminClient, homePaths, readApiToken } from '@btt/node'
import { describe, expect, it } from 'vitest'
import { cleanEnv, collect, REPO_ROOT, tempHome, waitForRuntime } from './helpers/cli.js'

describe('the README start command', () => {
  it('`npm start` initialises a home with the defaults and runs a node on Node 24 that stops on SIGTERM', async () => {
    const home = await tempHome()
    // the README's command, with the home and ports moved to loopback/temporary ones through the environment
    const child = spawn('npm', ['start'], {
      cwd: REPO_ROOT,
      env: cleanEnv({ BTT_NODE_HOME: home, BTT_NODE_API_PORT: '0', BTT_NODE_P2P_LISTEN: '/ip4/127.0.0.1/tcp/0' }),
      stdio: ['ignore', 'pipe', 'pipe']
    })
    const done = collect(child)
    const info = await waitForRuntime(home, child, undefined, 120_000)

    const paths = homePaths(home)
    const status = await new AdminClient({ url: info.apiUrl, token: await readApiToken(paths) }).status()
    expect(status.nodeVersion).toMatch(/^v24\./)
    expect(status.home).toBe(home)
    await access(join(home, 'keys', 'wallet.key'))

    process.kill(info.pid, 'SIGTERM')
    const { code, stdout, stderr } = await done
    expect(code, stdout + stderr).toBe(0)
    expect(stderr).toContain(`initialised a new node home at ${home}`)
    expect(stderr).toContain(`admin API ${info.apiUrl} (token in ${paths.apiToken})`)
  })
})
