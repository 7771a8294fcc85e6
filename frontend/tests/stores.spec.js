import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'

import { normaliseIdentity, useAuthStore } from '@/stores/auth'
import { useChatStore } from '@/stores/chat'

import { film, jsonResponse, mockFetch } from './helpers'

beforeEach(() => setActivePinia(createPinia()))
afterEach(() => vi.unstubAllGlobals())

const CLIENT = { id: 944, username: 'alice', source: 'registered', is_active: true }

describe('auth store', () => {
  it('logs a client in with the role and keeps the user', async () => {
    const calls = mockFetch({
      'POST /api/auth/login': [200, { msg: '登录成功', role: 'client', user: CLIENT }],
    })
    const auth = useAuthStore()

    await auth.login('alice', 'secret-pass')

    expect(calls[0].body).toEqual({ username: 'alice', password: 'secret-pass', role: 'client' })
    expect(auth.isClient).toBe(true)
    expect(auth.isAdmin).toBe(false)
    expect(auth.username).toBe('alice')
  })

  it('logs an admin in as an admin', async () => {
    mockFetch({
      'POST /api/auth/login': [200, { msg: '登录成功', role: 'admin', user: { id: 1, username: 'root' } }],
    })
    const auth = useAuthStore()

    await auth.login('root', 'admin-pass', 'admin')

    expect(auth.isAdmin).toBe(true)
    expect(auth.isClient).toBe(false)
  })

  it('keeps the visitor state and passes the error on after a failed login', async () => {
    mockFetch({
      'POST /api/auth/login': [401, { error: { code: 'invalid_credentials', message: '用户名或密码错误' } }],
    })
    const auth = useAuthStore()

    const error = await auth.login('alice', 'wrong').catch((e) => e)

    expect(error.message).toBe('用户名或密码错误')
    expect(auth.isLoggedIn).toBe(false)
  })

  it('treats a 401 from /me as a visitor', async () => {
    mockFetch({ 'GET /api/auth/me': [401, { error: { code: 'login_required', message: '请先登录' } }] })
    const auth = useAuthStore()

    await auth.fetchMe()

    expect(auth.loaded).toBe(true)
    expect(auth.isLoggedIn).toBe(false)
  })

  it('asks the server only once in ensureLoaded', async () => {
    const calls = mockFetch({ 'GET /api/auth/me': [200, { role: 'client', user: CLIENT }] })
    const auth = useAuthStore()

    await auth.ensureLoaded()
    await auth.ensureLoaded()

    expect(calls).toHaveLength(1)
    expect(auth.isClient).toBe(true)
  })

  it('does not block navigation when the server is down', async () => {
    mockFetch({ 'GET /api/auth/me': [503, { error: { code: 'database_unavailable', message: '数据库暂时不可用' } }] })
    const auth = useAuthStore()

    await auth.ensureLoaded()

    expect(auth.loaded).toBe(true)
    expect(auth.isLoggedIn).toBe(false)
  })

  it('forgets the user on logout', async () => {
    mockFetch({
      'GET /api/auth/me': [200, { role: 'client', user: CLIENT }],
      'POST /api/auth/logout': [200, { msg: '已退出登录' }],
    })
    const auth = useAuthStore()
    await auth.fetchMe()

    await auth.logout()

    expect(auth.isLoggedIn).toBe(false)
  })

  it('reads identities of either shape', () => {
    expect(normaliseIdentity({ role: 'admin', user: { username: 'root' } })).toEqual({
      role: 'admin',
      user: { username: 'root' },
    })
    expect(normaliseIdentity({ username: 'bob' })).toEqual({ role: 'client', user: { username: 'bob' } })
    expect(normaliseIdentity(null)).toEqual({ role: null, user: null })
  })
})

function sseResponse(events) {
  const text = events.map(([event, data]) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`).join('')
  return new Response(text, { status: 200, headers: { 'Content-Type': 'text/event-stream' } })
}

describe('chat store', () => {
  it('streams the reply and then shows the film cards', async () => {
    const heat = film(6, { title: 'Heat (1995)' })
    const calls = mockFetch({
      'POST /api/ai/chat/stream': () =>
        sseResponse([
          ['delta', { content: '推荐你看' }],
          ['delta', { content: '《Heat》。' }],
          ['done', { reply: '推荐你看《Heat》。', movies: [heat], offline: false }],
        ]),
    })
    const chat = useChatStore()

    await chat.ask('  类似 Heat 的电影  ')

    expect(calls[0].body).toEqual({ message: '类似 Heat 的电影', history: [] })
    expect(chat.messages).toHaveLength(2)
    expect(chat.messages[0]).toEqual({ role: 'user', content: '类似 Heat 的电影' })
    const reply = chat.messages[1]
    expect(reply.content).toBe('推荐你看《Heat》。')
    expect(reply.movies.map((m) => m.id)).toEqual([6])
    expect(reply.pending).toBe(false)
    expect(reply.offline).toBe(false)
    expect(chat.sending).toBe(false)
  })

  it('sends the earlier turns as history, at most ten', async () => {
    const calls = mockFetch({
      'POST /api/ai/chat/stream': () => sseResponse([['done', { reply: '好的', movies: [] }]]),
    })
    const chat = useChatStore()
    for (let i = 0; i < 6; i += 1) await chat.ask(`问题 ${i}`)

    const last = calls[calls.length - 1].body

    expect(last.message).toBe('问题 5')
    expect(last.history).toHaveLength(10)
    expect(last.history[0]).toEqual({ role: 'user', content: '问题 0' })
    expect(last.history[9]).toEqual({ role: 'assistant', content: '好的' })
  })

  it('shows the apology of an error event', async () => {
    mockFetch({
      'POST /api/ai/chat/stream': () =>
        sseResponse([
          ['delta', { content: '让我想想' }],
          ['error', { error: { code: 'llm_timeout', message: '服务超时' }, reply: '抱歉,我现在的思维有点混乱,请稍后再试。' }],
        ]),
    })
    const chat = useChatStore()

    await chat.ask('你好')

    expect(chat.messages[1].error).toBe(true)
    expect(chat.messages[1].content).toBe('抱歉,我现在的思维有点混乱,请稍后再试。')
  })

  it('shows the server message when the stream is refused', async () => {
    mockFetch({
      'POST /api/ai/chat/stream': () =>
        jsonResponse(429, { error: { code: 'rate_limited', message: '请求过于频繁,请稍后再试' } }),
    })
    const chat = useChatStore()

    await chat.ask('你好')

    expect(chat.messages[1]).toMatchObject({ error: true, content: '请求过于频繁,请稍后再试', pending: false })
    // A failed turn is not sent back as history.
    expect(chat.history).toEqual([{ role: 'user', content: '你好' }])
  })

  it('ignores empty questions', async () => {
    const calls = mockFetch({})
    const chat = useChatStore()

    await chat.ask('   ')

    expect(calls).toHaveLength(0)
    expect(chat.messages).toHaveLength(0)
  })
})
